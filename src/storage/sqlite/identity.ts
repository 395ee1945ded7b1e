import type { AuditStore, ContainerStore, EntityStore, UserStore } from '../identity.js';
import type { SqliteHandle } from './support.js';

export function createUserStore(_h: SqliteHandle): UserStore {
  return {};
}

export function createEntityStore(_h: SqliteHandle): EntityStore {
  return {};
}

export function createContainerStore(_h: SqliteHandle): ContainerStore {
  return {};
}

export function createAuditStore(_h: SqliteHandle): AuditStore {
  return {};
}
