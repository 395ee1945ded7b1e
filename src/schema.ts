import { lexicographicSortSchema } from 'graphql';
import { builder } from './builder.js';
import './modules/errors/schema.js';
import './modules/users/schema.js';
import './modules/entities/schema.js';
import './modules/projects/schema.js';
import './modules/events/schema.js';
import './modules/runs/schema.js';
import './modules/runs/subscription.js';
import './modules/secrets/schema.js';
import './modules/actions/schema.js';
import './modules/actions/test-action.js';
import './modules/automations/schema.js';
import './modules/training-runs/schema.js';
import './modules/audit/schema.js';

export const schema = lexicographicSortSchema(builder.toSchema());
