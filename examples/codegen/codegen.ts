import type { CodegenConfig } from '@graphql-codegen/cli';

/**
 * Typed documents for the operations in `operations/`, and the `possibleTypes` Apollo Client's
 * cache needs to match fragments on interfaces and unions. Paths are relative to the directory
 * codegen runs in: the repository's root (`npx graphql-codegen --config examples/codegen/codegen.ts`).
 */
const config: CodegenConfig = {
  schema: 'schema.graphql',
  documents: ['examples/codegen/operations/*.graphql'],
  ignoreNoDocuments: false,
  generates: {
    'examples/codegen/src/gql/': {
      preset: 'client',
      presetConfig: {
        // Plain clients read every field of a result; masking serves component trees.
        fragmentMasking: false,
      },
      config: {
        // The examples compile as Node ESM (`NodeNext`) with `verbatimModuleSyntax`.
        importExtension: '.js',
        useTypeImports: true,
        enumsAsTypes: true,
        onlyOperationTypes: true,
        scalars: { DateTime: 'string', JSONObject: 'Record<string, unknown>' },
      },
    },
    'examples/codegen/src/gql/possible-types.ts': {
      plugins: ['fragment-matcher'],
      config: { deterministic: true },
    },
  },
};

export default config;
