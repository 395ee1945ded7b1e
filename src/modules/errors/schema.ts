import { builder } from '../../builder.js';
import {
  ConflictError,
  NotFoundError,
  PermissionDeniedError,
  ValidationError,
} from '../../errors.js';
import { RoleEnum } from '../users/schema.js';

const ErrorInterface = builder.interfaceRef<Error>('Error').implement({
  description: 'An expected failure. `message` says what went wrong and how to fix it.',
  fields: (t) => ({
    message: t.exposeString('message', { description: 'What went wrong and how to fix it.' }),
  }),
});

builder.objectType(ValidationError, {
  name: 'ValidationError',
  description: 'An input value was refused.',
  interfaces: [ErrorInterface],
  isTypeOf: (value) => value instanceof ValidationError,
  fields: (t) => ({
    field: t.exposeString('field', {
      description: 'Path of the offending input value, such as `input.url`.',
    }),
  }),
});

builder.objectType(NotFoundError, {
  name: 'NotFoundError',
  description: 'A referenced object does not exist, or is not visible to the caller.',
  interfaces: [ErrorInterface],
  isTypeOf: (value) => value instanceof NotFoundError,
  fields: (t) => ({
    field: t.exposeString('field', { description: 'Path of the input that named it.' }),
  }),
});

builder.objectType(ConflictError, {
  name: 'ConflictError',
  description: 'The change clashes with existing state, such as a name already taken.',
  interfaces: [ErrorInterface],
  isTypeOf: (value) => value instanceof ConflictError,
  fields: (t) => ({
    field: t.exposeString('field', { description: 'Path of the input that clashes.' }),
  }),
});

builder.objectType(PermissionDeniedError, {
  name: 'PermissionDeniedError',
  description: "The caller's role in the entity does not allow this change.",
  interfaces: [ErrorInterface],
  isTypeOf: (value) => value instanceof PermissionDeniedError,
  fields: (t) => ({
    requiredRole: t.field({
      type: RoleEnum,
      description: 'The least role that may make this change.',
      resolve: (error) => error.requiredRole,
    }),
  }),
});
