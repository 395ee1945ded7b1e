import { type APQStore, useAPQ } from '@graphql-yoga/plugin-apq';
import type { Plugin } from 'graphql-yoga';
import { LRUCache } from 'lru-cache';
import { type AppDeps, createContext } from '../context.js';

/**
 * Query texts by their SHA-256 hash, in memory, holding at most `maxBytes` of query text and
 * hashes; the least recently used are dropped first. A query larger than the whole store is
 * not kept, so its client keeps sending it in full.
 */
export function createPersistedQueryStore(maxBytes: number): APQStore {
  const queries = new LRUCache<string, string>({
    maxSize: maxBytes,
    sizeCalculation: (query, hash) => Buffer.byteLength(query) + hash.length,
  });
  return {
    get: (hash) => queries.get(hash),
    set: (hash, query) => {
      queries.set(hash, query);
    },
  };
}

/**
 * Automatic persisted queries in Apollo's protocol (`extensions.persistedQuery` with
 * `version: 1` and `sha256Hash`), over GET and POST. A hash the store does not know answers
 * `PERSISTED_QUERY_NOT_FOUND` (HTTP 404), and the client sends the query with its hash, which
 * registers it; a hash that is not the query's answers `PERSISTED_QUERY_MISMATCH` (400).
 *
 * The API key is checked before the store is read or written, as on every other request:
 * without a valid key the answer is `UNAUTHENTICATED` (401), so nobody outside can learn which
 * queries are stored or push others out of the store.
 */
export function usePersistedQueries(deps: AppDeps): Plugin {
  const apq = useAPQ({ store: createPersistedQueryStore(deps.config.persistedQueriesMaxBytes) });
  return {
    // Synchronous for the common request without a persisted query: an async hook costs every
    // request a promise and a turn through yoga's hook runner.
    onParams(payload) {
      if (payload.params.extensions?.persistedQuery === undefined) return;
      return (async () => {
        await createContext(deps, payload.request.headers.get('authorization'));
        await apq.onParams?.(payload);
      })();
    },
  };
}
