import { writeFileSync } from 'node:fs';
import { printSchema } from 'graphql';
import { schema } from '../schema.js';

// Regenerates schema.graphql from the code; test/schema.test.ts fails when it has drifted.
writeFileSync(new URL('../../schema.graphql', import.meta.url), `${printSchema(schema)}\n`);
