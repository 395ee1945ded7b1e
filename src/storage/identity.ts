/* Users, API keys, entities and memberships, projects and registries, the audit log. */

import type { AuditAction, AuditEntry, AuditRecord } from './audit.js';
import type { PageRequest } from './paging.js';

/** A member's role in an entity, from least to most allowed: VIEWER, MEMBER, ADMIN. */
export type Role = 'ADMIN' | 'MEMBER' | 'VIEWER';

/** A person, or a service account used by automation. */
export type UserKind = 'USER' | 'SERVICE_ACCOUNT';

export interface User {
  id: string;
  name: string;
  kind: UserKind;
  createdAt: Date;
}

/** A stored API key: never the key itself, only its hash and a prefix safe to show. */
export interface ApiKey {
  id: string;
  userId: string;
  name: string;
  /** The first characters of the key, so a person can tell keys apart. */
  prefix: string;
  /** SHA-256 of the whole key, hex. */
  hash: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  /** Set once; a revoked key authenticates nothing. */
  revokedAt: Date | null;
}

export interface Entity {
  id: string;
  name: string;
  createdAt: Date;
}

export interface Membership {
  entityId: string;
  userId: string;
  role: Role;
  createdAt: Date;
}

/** A member of an entity: the account and its membership there. */
export interface Member {
  user: User;
  membership: Membership;
}

/** Projects and registries share one shape and one set of rules; the kind says which. */
export type ContainerKind = 'project' | 'registry';

/** A project or a registry. */
export interface Container {
  id: string;
  entityId: string;
  name: string;
  description: string | null;
  createdAt: Date;
}

/** A named series of artifact versions, in exactly one project or one registry. */
export interface ArtifactCollection {
  id: string;
  entityId: string;
  projectId: string | null;
  registryId: string | null;
  name: string;
  artifactType: string;
  createdAt: Date;
}

/** A new account; the service picks its id. */
export interface NewUser {
  id: string;
  name: string;
  kind: UserKind;
}

/** A new API key; the service picks its id and computes prefix and hash. */
export interface NewApiKey {
  id: string;
  userId: string;
  name: string;
  prefix: string;
  hash: string;
}

/** A new entity; the service picks its id. */
export interface NewEntity {
  id: string;
  name: string;
}

/**
 * The audit entry of a change to an API key, written by the store into the log of every entity
 * the key's owner belongs to at that moment (a key opens all of them), or once with no entity
 * when the owner belongs to none.
 */
export type KeyAudit = Omit<AuditRecord, 'entityId' | 'action'> & {
  action: Extract<AuditAction, 'apiKey.created' | 'apiKey.revoked'>;
};

/**
 * A condition on who may give a service account more reach: the write happens only if
 * `administeredBy` is ADMIN of every entity the account belongs to, and it belongs to at least
 * one. Checked in the write's transaction, so a concurrent membership change cannot slip past it.
 */
export interface AdministeredBy {
  administeredBy: string;
}

/**
 * Operations on users and API keys.
 *
 * Lists: API keys of a user, newest first (`createdAt` descending, then `id` descending); a
 * position is `[createdAt as epoch ms, id]`.
 */
export interface UserStore {
  /** The unrevoked key with this hash and its account, or null. */
  authenticateKey(hash: string): Promise<{ key: ApiKey; user: User } | null>;
  /** Sets the key's `lastUsedAt`. Callers decide how often (once a minute per key). */
  recordKeyUse(keyId: string, at: Date): Promise<void>;
  /** Whether any account exists. */
  hasUsers(): Promise<boolean>;
  findUser(id: string): Promise<User | null>;
  findApiKey(id: string): Promise<ApiKey | null>;
  /**
   * Creates an account as a member of an entity, with its first key, and writes `audit`, in one
   * transaction.
   */
  createUser(
    input: { user: NewUser; membership: { entityId: string; role: Role }; key: NewApiKey },
    audit: readonly AuditRecord[],
    now: Date,
  ): Promise<{ user: User; membership: Membership; key: ApiKey }>;
  /**
   * On a database without accounts: creates the first person, an entity they administer and
   * their first key, and writes `audit`, in one transaction. Returns null and writes nothing
   * when an account exists already. Throws DuplicateError(`name`) when the entity name is taken.
   */
  bootstrap(
    input: { user: NewUser; entity: NewEntity; key: NewApiKey },
    audit: readonly AuditRecord[],
    now: Date,
  ): Promise<{ user: User; entity: Entity; key: ApiKey } | null>;
  /**
   * Stores a key with its audit entries (see {@link KeyAudit}). With `administeredBy`, only when
   * that holds (see {@link AdministeredBy}); null when it does not.
   */
  issueApiKey(
    key: NewApiKey,
    condition: AdministeredBy | null,
    audit: KeyAudit,
    now: Date,
  ): Promise<ApiKey | null>;
  /**
   * Revokes the key at `now` with its audit entries. A key revoked already stays as it is, with
   * no entry: `revoked` says whether this call revoked it. Null for an unknown key.
   */
  revokeApiKey(
    id: string,
    audit: KeyAudit,
    now: Date,
  ): Promise<{ key: ApiKey; revoked: boolean } | null>;
  pageApiKeys(userId: string, request: PageRequest): Promise<ApiKey[]>;
  countApiKeys(userId: string): Promise<number>;
}

/** The answer of a conditional change to a membership. */
export type MembershipChange =
  | { outcome: 'done'; membership: Membership }
  /** The user is not a member of the entity. */
  | { outcome: 'notMember' }
  /** The member's role is no longer the expected one; nothing was written. */
  | { outcome: 'stale'; membership: Membership }
  /** The change would leave the entity without an admin; nothing was written. */
  | { outcome: 'lastAdmin' };

/**
 * Operations on entities and memberships.
 *
 * Every entity keeps at least one admin: the operations that demote or remove an admin check it
 * in their own write, and an implementation must serialise writers of one entity's memberships
 * (SQLite's write transactions are serial; PostgreSQL locks the entity's row first).
 *
 * Lists: members of an entity, who joined first comes first (`createdAt` ascending, then
 * `userId`); a position is `[createdAt as epoch ms, userId]`.
 */
export interface EntityStore {
  findEntity(id: string): Promise<Entity | null>;
  findEntityByName(name: string): Promise<Entity | null>;
  /**
   * Creates an entity with `adminUserId` as its first ADMIN and writes `audit`, in one
   * transaction. Throws DuplicateError(`name`) when the name is taken.
   */
  createEntity(
    entity: NewEntity,
    adminUserId: string,
    audit: readonly AuditRecord[],
    now: Date,
  ): Promise<Entity>;
  findMembership(entityId: string, userId: string): Promise<Membership | null>;
  /** The user's memberships, oldest first. */
  membershipsOf(userId: string): Promise<Membership[]>;
  /**
   * Adds a member and writes `audit`. With a condition, only when it holds (see
   * {@link AdministeredBy}); null when it does not. Throws DuplicateError(`member`) when the user
   * is a member already.
   */
  addMember(
    membership: { entityId: string; userId: string; role: Role },
    condition: AdministeredBy | null,
    audit: AuditRecord,
    now: Date,
  ): Promise<Membership | null>;
  /**
   * Changes a member's role from `from` to `to` and writes `audit`, only while the role is still
   * `from` and, when an admin is demoted, another admin remains.
   */
  changeRole(
    entityId: string,
    userId: string,
    roles: { from: Role; to: Role },
    audit: AuditRecord,
    now: Date,
  ): Promise<MembershipChange>;
  /**
   * Removes a member whose role is still `role` and writes `audit`; an admin only while another
   * admin remains. `done` carries the removed membership.
   */
  removeMember(
    entityId: string,
    userId: string,
    role: Role,
    audit: AuditRecord,
    now: Date,
  ): Promise<MembershipChange>;
  pageMembers(entityId: string, request: PageRequest): Promise<Member[]>;
  countMembers(entityId: string): Promise<number>;
}

/**
 * Operations on projects, registries and artifact collections.
 *
 * Lists: projects or registries of an entity, and collections of a project or registry, by name
 * (unique there); a position is `[name]`.
 */
export interface ContainerStore {
  /** Throws DuplicateError(`name`) when the entity has one of this kind and name. */
  createContainer(
    kind: ContainerKind,
    input: { id: string; entityId: string; name: string; description: string | null },
  ): Promise<Container>;
  findContainer(kind: ContainerKind, id: string): Promise<Container | null>;
  findContainerByName(
    kind: ContainerKind,
    entityId: string,
    name: string,
  ): Promise<Container | null>;
  pageContainers(kind: ContainerKind, entityId: string, request: PageRequest): Promise<Container[]>;
  countContainers(kind: ContainerKind, entityId: string): Promise<number>;
  /**
   * Creates a collection in the project or registry `ownerId` of kind `kind`. Throws
   * DuplicateError(`name`) when it has a collection of this name.
   */
  createCollection(input: {
    id: string;
    entityId: string;
    kind: ContainerKind;
    ownerId: string;
    name: string;
    artifactType: string;
  }): Promise<ArtifactCollection>;
  findCollection(id: string): Promise<ArtifactCollection | null>;
  findCollectionByName(
    kind: ContainerKind,
    ownerId: string,
    name: string,
  ): Promise<ArtifactCollection | null>;
  pageCollections(
    kind: ContainerKind,
    ownerId: string,
    request: PageRequest,
  ): Promise<ArtifactCollection[]>;
  countCollections(kind: ContainerKind, ownerId: string): Promise<number>;
}

/** Conditions on a page of the audit log; each absent one matches everything. */
export interface AuditFilter {
  action?: string | null;
  targetType?: string | null;
  /** Only entries made at or after this time. */
  since?: Date | null;
}

/**
 * Operations on the audit log. Entries are written by the operation that makes the change they
 * record, in its transaction.
 *
 * Lists: an entity's entries, newest first, entries of one instant latest written first
 * (`createdAt` descending, then `sequence` descending); a position is
 * `[createdAt as epoch ms, sequence]`.
 */
export interface AuditStore {
  pageAuditEntries(
    entityId: string,
    filter: AuditFilter,
    request: PageRequest,
  ): Promise<AuditEntry[]>;
  countAuditEntries(entityId: string, filter: AuditFilter): Promise<number>;
}
