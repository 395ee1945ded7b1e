/**
 * A write refused because it would repeat a unique value (a name in its entity, an idempotency
 * key, …). Stores throw it instead of an engine's error; services turn it into a `ConflictError`
 * that names the input field.
 */
export class DuplicateError extends Error {
  constructor(
    /** What was repeated, in the store's words (`name`, `idempotencyKey`, …). */
    readonly what: string,
    message = `A record with this ${what} exists already.`,
  ) {
    super(message);
    this.name = 'DuplicateError';
  }
}
