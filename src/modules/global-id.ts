import { decodeGlobalID } from '@pothos/plugin-relay';
import { NotFoundError } from '../errors.js';

/**
 * The stored id behind a global ID of type `typename`. Throws NotFoundError on `field` when the
 * ID is malformed or names another type, exactly as for an object that does not exist.
 */
export function decodeId(globalId: string, typename: string, field: string): string {
  try {
    const decoded = decodeGlobalID(globalId);
    if (decoded.typename === typename) return decoded.id;
  } catch {
    // A malformed ID is simply one that names nothing.
  }
  throw new NotFoundError(field, `No ${typename} with id "${globalId}".`);
}
