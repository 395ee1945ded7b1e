/* Secrets, actions and automations: what teams configure. */

/** Operations on secrets. */
// biome-ignore lint/suspicious/noEmptyInterface: filled in as services move onto the storage layer
export interface SecretStore {}

/** Operations on actions. */
// biome-ignore lint/suspicious/noEmptyInterface: filled in as services move onto the storage layer
export interface ActionStore {}

/** Operations on automations. */
// biome-ignore lint/suspicious/noEmptyInterface: filled in as services move onto the storage layer
export interface AutomationStore {}
