import {
  type DocumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLField,
  type GraphQLNamedType,
  type GraphQLSchema,
  getNamedType,
  getOperationAST,
  getVariableValues,
  isInterfaceType,
  isObjectType,
  Kind,
  type SelectionSetNode,
} from 'graphql';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from '../modules/connection.js';

/** What an object field costs before its children, and a scalar field in all. */
const OBJECT_COST = 2;
const SCALAR_COST = 1;
/** Each level of nesting weighs this much more than the one above it. */
const DEPTH_FACTOR = 1.5;

export interface CostedOperation {
  schema: GraphQLSchema;
  document: DocumentNode;
  operationName?: string | null | undefined;
  /** The request's variables, as sent; defaults of the operation fill the gaps. */
  variableValues?: Readonly<Record<string, unknown>> | null | undefined;
}

/**
 * The estimated cost of the operation a request runs: every scalar field costs 1 and every
 * object field 2 plus 1.5 times what its selection costs, so each level weighs 1.5 times the
 * one above; a paged field (one taking `first`/`last`) is multiplied by its page size, read
 * from literals or from the request's variables and the operation's defaults, at most
 * {@link MAX_PAGE_SIZE}, and as the {@link DEFAULT_PAGE_SIZE} results it serves when neither
 * `first` nor `last` is given: the largest page the field can return. Lists that are not paged
 * count once. Fragments count where they are spread, without a level of their own; `__schema`
 * and `__type` cost nothing.
 *
 * Returns 0 when there is no operation to run or the variables a page size is read from do not
 * fit it: execution refuses those without running anything.
 */
export function operationCost(op: CostedOperation): number {
  const known = costsOf(op);
  const cached = known.get(op.operationName ?? '');
  if (cached !== undefined) return cached;
  const operation = getOperationAST(op.document, op.operationName);
  const root = operation && op.schema.getRootType(operation.operation);
  if (!operation || !root) return 0;
  // The variables are coerced only when a page size is read from one; an operation none of whose
  // page sizes is a variable costs the same whatever its variables, and is measured once.
  let coerced: Record<string, unknown> | undefined;
  let fitting = true;
  const variable = (name: string): unknown => {
    if (coerced === undefined) {
      const variables = getVariableValues(
        op.schema,
        operation.variableDefinitions ?? [],
        op.variableValues ?? {},
      );
      fitting = variables.coerced !== undefined;
      coerced = variables.coerced ?? {};
    }
    return coerced[name];
  };

  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of op.document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) {
      fragments.set(definition.name.value, definition);
    }
  }
  // A fragment costs the same wherever it is spread: counting it once keeps documents that
  // spread fragments into fragments from costing exponential time to measure.
  const fragmentCosts = new Map<string, number>();

  const pageSize = (field: FieldNode, definition: GraphQLField<unknown, unknown>): number => {
    if (!definition.args.some((arg) => arg.name === 'first' || arg.name === 'last')) return 1;
    let size: number | undefined;
    for (const arg of field.arguments ?? []) {
      if (arg.name.value !== 'first' && arg.name.value !== 'last') continue;
      const value =
        arg.value.kind === Kind.INT
          ? Number.parseInt(arg.value.value, 10)
          : arg.value.kind === Kind.VARIABLE
            ? variable(arg.value.name.value)
            : undefined;
      if (typeof value === 'number') size = Math.max(size ?? 0, value);
    }
    // Without a size the field serves its default page; it never serves more than a full one.
    return size === undefined ? DEFAULT_PAGE_SIZE : Math.min(Math.max(size, 1), MAX_PAGE_SIZE);
  };

  const selectionCost = (set: SelectionSetNode, parent: GraphQLNamedType | undefined): number => {
    let cost = 0;
    for (const selection of set.selections) {
      if (selection.kind === Kind.INLINE_FRAGMENT) {
        const type = selection.typeCondition
          ? op.schema.getType(selection.typeCondition.name.value)
          : parent;
        cost += selectionCost(selection.selectionSet, type);
      } else if (selection.kind === Kind.FRAGMENT_SPREAD) {
        const name = selection.name.value;
        let spread = fragmentCosts.get(name);
        const fragment = fragments.get(name);
        if (spread === undefined && fragment) {
          fragmentCosts.set(name, 0);
          const type = op.schema.getType(fragment.typeCondition.name.value);
          spread = selectionCost(fragment.selectionSet, type);
          fragmentCosts.set(name, spread);
        }
        cost += spread ?? 0;
      } else {
        cost += fieldCost(selection, parent);
      }
    }
    return cost;
  };

  const fieldCost = (field: FieldNode, parent: GraphQLNamedType | undefined): number => {
    const name = field.name.value;
    if (name === '__schema' || name === '__type') return 0;
    if (!field.selectionSet) return SCALAR_COST;
    const definition =
      parent && (isObjectType(parent) || isInterfaceType(parent))
        ? parent.getFields()[name]
        : undefined;
    if (!definition) return OBJECT_COST;
    const children = selectionCost(field.selectionSet, getNamedType(definition.type));
    return pageSize(field, definition) * (OBJECT_COST + DEPTH_FACTOR * children);
  };

  const cost = selectionCost(operation.selectionSet, root);
  if (coerced === undefined) known.set(op.operationName ?? '', cost);
  return fitting ? cost : 0;
}

/**
 * Costs of the operations of a document that do not depend on variables, by operation name, per
 * schema: yoga's parser cache hands every request with the same text the same document.
 */
const knownCosts = new WeakMap<GraphQLSchema, WeakMap<DocumentNode, Map<string, number>>>();

function costsOf(op: CostedOperation): Map<string, number> {
  let bySchema = knownCosts.get(op.schema);
  if (!bySchema) {
    bySchema = new WeakMap();
    knownCosts.set(op.schema, bySchema);
  }
  let costs = bySchema.get(op.document);
  if (!costs) {
    costs = new Map();
    bySchema.set(op.document, costs);
  }
  return costs;
}
