import type { EventStore, RunStore } from '../events.js';
import type { SqliteHandle } from './support.js';

export function createEventStore(_h: SqliteHandle): EventStore {
  return {};
}

export function createRunStore(_h: SqliteHandle): RunStore {
  return {};
}
