/**
 * Expected failures. Services throw these; the GraphQL layer turns each into a typed result
 * (see modules/errors/schema.ts), so clients can branch on them. Anything else is a bug and is
 * masked.
 */
export class ValidationError extends Error {
  /** `field` is the input path of the offending value, e.g. `input.url`. */
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = 'ValidationError';
  }
}

export class NotFoundError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = 'NotFoundError';
  }
}

export class ConflictError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = 'ConflictError';
  }
}

export class PermissionDeniedError extends Error {
  constructor(
    readonly requiredRole: 'ADMIN' | 'MEMBER' | 'VIEWER',
    message: string,
  ) {
    super(message);
    this.name = 'PermissionDeniedError';
  }
}
