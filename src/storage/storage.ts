import type { ActionStore, AutomationStore, SecretStore } from './config.js';
import type { DeliveryStore } from './delivery.js';
import type { EventStore, RunStore } from './events.js';
import type { AuditStore, ContainerStore, EntityStore, UserStore } from './identity.js';
import type { TrainingRunStore } from './training-runs.js';

/**
 * Every read and write of Tripline's data, as operations named for the domain. Services and the
 * delivery engine reach the database only through it, so a second engine (PostgreSQL) is a second
 * implementation of this interface and nothing above it changes.
 *
 * Contract for every implementation:
 * - Operations are asynchronous and take and return plain records (no engine handles, no
 *   GraphQL types or global ids); times are `Date`s.
 * - An operation that must be atomic is one operation: it opens and commits its own transaction.
 *   Nothing outside the layer holds a transaction.
 * - Races are settled by unique constraints and conditional updates inside the operation, never
 *   by a lookup before a write; a violated unique name surfaces as a `DuplicateError` naming the
 *   input field (see src/errors.ts).
 */
export interface Storage {
  readonly users: UserStore;
  readonly entities: EntityStore;
  readonly containers: ContainerStore;
  readonly audit: AuditStore;
  readonly secrets: SecretStore;
  readonly actions: ActionStore;
  readonly automations: AutomationStore;
  readonly events: EventStore;
  readonly runs: RunStore;
  readonly trainingRuns: TrainingRunStore;
  readonly delivery: DeliveryStore;
  /** Resolves when the database answers; rejects otherwise (the readiness check). */
  ping(): Promise<void>;
  /** Closes the database; every later operation fails. Idempotent. */
  close(): Promise<void>;
}
