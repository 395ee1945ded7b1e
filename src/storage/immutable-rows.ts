import type { Container, ContainerKind, ContainerStore, Entity, EntityStore } from './identity.js';

/**
 * Rows found by name or id on nearly every request, kept in memory by both engines: entities,
 * projects and registries are never renamed, changed or deleted once created (no store
 * operation does it), so a row read once stays true, on this instance and on every other. Only
 * rows that exist are kept: a name not found yet may be created at any moment, here or
 * elsewhere. Each cache holds at most `ROWS_KEPT` rows, dropping the oldest read first.
 *
 * An emit resolves its entity and its project by name before anything else; reading them from
 * the database was about 5 % of an emit that queues no run.
 */
const ROWS_KEPT = 10_000;

/** A map that forgets its oldest entry beyond `ROWS_KEPT`. */
class Kept<V> {
  readonly #rows = new Map<string, V>();

  get(key: string): V | undefined {
    return this.#rows.get(key);
  }

  set(key: string, value: V): void {
    this.#rows.delete(key);
    this.#rows.set(key, value);
    if (this.#rows.size > ROWS_KEPT) {
      const oldest = this.#rows.keys().next().value;
      if (oldest !== undefined) this.#rows.delete(oldest);
    }
  }
}

/** `store`, with entities read by id or name answered from memory after the first read. */
export function keepEntities(store: EntityStore): EntityStore {
  const byId = new Kept<Entity>();
  const byName = new Kept<Entity>();
  const keep = (entity: Entity | null): Entity | null => {
    if (entity) {
      byId.set(entity.id, entity);
      byName.set(entity.name, entity);
    }
    return entity;
  };
  return {
    ...store,
    async findEntity(id) {
      return byId.get(id) ?? keep(await store.findEntity(id));
    },
    async findEntityByName(name) {
      return byName.get(name) ?? keep(await store.findEntityByName(name));
    },
  };
}

/** `store`, with projects and registries read by id or name answered from memory after the first read. */
export function keepContainers(store: ContainerStore): ContainerStore {
  const byId = new Kept<Container>();
  const byName = new Kept<Container>();
  const nameKey = (kind: ContainerKind, entityId: string, name: string) =>
    `${kind}\u0000${entityId}\u0000${name}`;
  const keep = (kind: ContainerKind, container: Container | null): Container | null => {
    if (container) {
      byId.set(`${kind}\u0000${container.id}`, container);
      byName.set(nameKey(kind, container.entityId, container.name), container);
    }
    return container;
  };
  return {
    ...store,
    async findContainer(kind, id) {
      return byId.get(`${kind}\u0000${id}`) ?? keep(kind, await store.findContainer(kind, id));
    },
    async findContainerByName(kind, entityId, name) {
      return (
        byName.get(nameKey(kind, entityId, name)) ??
        keep(kind, await store.findContainerByName(kind, entityId, name))
      );
    },
  };
}
