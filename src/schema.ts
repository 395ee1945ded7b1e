import { lexicographicSortSchema } from 'graphql';
import { builder } from './builder.js';
import './modules/errors/schema.js';
import './modules/users/schema.js';
import './modules/entities/schema.js';
import './modules/projects/schema.js';

export const schema = lexicographicSortSchema(builder.toSchema());
