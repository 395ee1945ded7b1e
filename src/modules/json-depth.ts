import { ValidationError } from '../errors.js';

/**
 * How many levels of objects and arrays a JSON input may nest: `{}` is one level, `{"a": [1]}`
 * two. Real metadata and payload templates use a handful; the bound keeps every later recursive
 * step (JSON.stringify, storage, rendering, responses) far from the call-stack limit.
 */
export const MAX_JSON_DEPTH = 32;

/**
 * Throws `ValidationError(field, …)` when `value` nests objects and arrays more than
 * {@link MAX_JSON_DEPTH} levels deep. The one depth check for JSON inputs: event metadata and
 * webhook payload templates. Call it before anything recursive touches the value.
 *
 * Walks with an explicit stack, not recursion, so no input can overflow the check itself; it
 * stops at the first container past the limit.
 */
export function checkJsonDepth(value: unknown, field: string): void {
  const pending: { value: object; depth: number }[] = [];
  if (typeof value === 'object' && value !== null) pending.push({ value, depth: 1 });
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (next.depth > MAX_JSON_DEPTH) {
      throw new ValidationError(
        field,
        `Objects and arrays nest more than ${MAX_JSON_DEPTH} levels deep here; the limit is ${MAX_JSON_DEPTH}. Flatten the value.`,
      );
    }
    for (const child of Object.values(next.value)) {
      if (typeof child === 'object' && child !== null) {
        pending.push({ value: child, depth: next.depth + 1 });
      }
    }
  }
}
