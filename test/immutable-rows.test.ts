import { describe, expect, it } from 'vitest';
import type { Container, ContainerStore, Entity, EntityStore } from '../src/storage/identity.js';
import { keepContainers, keepEntities } from '../src/storage/immutable-rows.js';

const entity: Entity = { id: 'e1', name: 'ml', createdAt: new Date(0) };
const project: Container = {
  id: 'p1',
  entityId: 'e1',
  name: 'vision',
  description: null,
  createdAt: new Date(0),
};

/** A store that knows `rows` and counts the reads that reach it. */
function countingEntities(rows: Entity[]) {
  const reads = { byId: 0, byName: 0 };
  const store = {
    findEntity: async (id: string) => {
      reads.byId += 1;
      return rows.find((row) => row.id === id) ?? null;
    },
    findEntityByName: async (name: string) => {
      reads.byName += 1;
      return rows.find((row) => row.name === name) ?? null;
    },
  } as unknown as EntityStore;
  return { store, reads };
}

describe('rows kept in memory', () => {
  it('reads an entity from the store once, by name or id, and a missing one every time', async () => {
    const rows: Entity[] = [entity];
    const { store, reads } = countingEntities(rows);
    const kept = keepEntities(store);
    expect(await kept.findEntityByName('ml')).toEqual(entity);
    expect(await kept.findEntityByName('ml')).toEqual(entity);
    expect(await kept.findEntity('e1')).toEqual(entity);
    expect(reads).toEqual({ byId: 0, byName: 1 });

    expect(await kept.findEntityByName('later')).toBeNull();
    rows.push({ id: 'e2', name: 'later', createdAt: new Date(0) });
    expect((await kept.findEntityByName('later'))?.id).toBe('e2');
    expect(await kept.findEntity('e2')).toMatchObject({ name: 'later' });
    expect(reads).toEqual({ byId: 0, byName: 3 });
  });

  it('reads a project from the store once, and keeps projects and registries apart', async () => {
    let reads = 0;
    const store = {
      findContainer: async (kind: string, id: string) => {
        reads += 1;
        return kind === 'project' && id === 'p1' ? project : null;
      },
      findContainerByName: async (kind: string, entityId: string, name: string) => {
        reads += 1;
        return kind === 'project' && entityId === 'e1' && name === 'vision' ? project : null;
      },
    } as unknown as ContainerStore;
    const kept = keepContainers(store);
    expect(await kept.findContainerByName('project', 'e1', 'vision')).toEqual(project);
    expect(await kept.findContainer('project', 'p1')).toEqual(project);
    expect(reads).toBe(1);
    expect(await kept.findContainerByName('registry', 'e1', 'vision')).toBeNull();
    expect(await kept.findContainer('registry', 'p1')).toBeNull();
    expect(reads).toBe(3);
  });

  it('forgets the oldest rows beyond ten thousand', async () => {
    const rows = Array.from({ length: 10_001 }, (_, i) => ({
      id: `e${i}`,
      name: `n${i}`,
      createdAt: new Date(0),
    }));
    const { store, reads } = countingEntities(rows);
    const kept = keepEntities(store);
    for (const row of rows) await kept.findEntityByName(row.name);
    expect(reads.byName).toBe(10_001);
    await kept.findEntityByName('n10000');
    expect(reads.byName).toBe(10_001);
    await kept.findEntityByName('n0');
    expect(reads.byName).toBe(10_002);
  });
});
