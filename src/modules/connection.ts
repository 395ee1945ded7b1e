import { resolveOffsetConnection } from '@pothos/plugin-relay';

interface ConnectionArgs {
  first?: number | null;
  last?: number | null;
  before?: string | null;
  after?: string | null;
}

/**
 * Resolves a Relay connection from an offset query, with `totalCount`. `fetch` receives the
 * window to read (it must use a stable order); `total` counts every match.
 */
export async function offsetConnection<T>(
  args: ConnectionArgs,
  total: () => number,
  fetch: (page: { limit: number; offset: number }) => T[],
) {
  const totalCount = total();
  const connection = await resolveOffsetConnection({ args, totalCount }, fetch);
  return { ...connection, totalCount };
}
