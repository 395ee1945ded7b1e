/* Users, API keys, entities and memberships, projects and registries, the audit log. */

/** Operations on users and API keys. */
// biome-ignore lint/suspicious/noEmptyInterface: filled in as services move onto the storage layer
export interface UserStore {}

/** Operations on entities and memberships. */
// biome-ignore lint/suspicious/noEmptyInterface: filled in as services move onto the storage layer
export interface EntityStore {}

/** Operations on projects, registries and artifact collections. */
// biome-ignore lint/suspicious/noEmptyInterface: filled in as services move onto the storage layer
export interface ContainerStore {}

/** Operations on the audit log. */
// biome-ignore lint/suspicious/noEmptyInterface: filled in as services move onto the storage layer
export interface AuditStore {}
