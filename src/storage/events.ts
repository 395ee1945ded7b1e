/* Artifact events and the runs they trigger, as history. */

/** Operations on artifact events: recording one with its runs, reading them back. */
// biome-ignore lint/suspicious/noEmptyInterface: filled in as services move onto the storage layer
export interface EventStore {}

/** Operations on triggered runs and their attempts as history: paging, reading, re-queueing. */
// biome-ignore lint/suspicious/noEmptyInterface: filled in as services move onto the storage layer
export interface RunStore {}
