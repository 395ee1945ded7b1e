import { decodeGlobalID } from '@pothos/plugin-relay';
import { NotFoundError } from '../errors.js';

/**
 * The stored id behind a global ID of type `typename`, or null when the ID is malformed or
 * names another type.
 */
export function storedIdOf(globalId: string, typename: string): string | null {
  try {
    const decoded = decodeGlobalID(globalId);
    return decoded.typename === typename ? decoded.id : null;
  } catch {
    // A malformed ID is simply one that names nothing.
    return null;
  }
}

/**
 * The stored id behind a global ID of type `typename`. Throws NotFoundError on `field` when the
 * ID is malformed or names another type, exactly as for an object that does not exist.
 */
export function decodeId(globalId: string, typename: string, field: string): string {
  const id = storedIdOf(globalId, typename);
  if (id === null) throw new NotFoundError(field, `No ${typename} with id "${globalId}".`);
  return id;
}
