/* What the delivery engine needs: claims, leases, what an attempt needs, attempt results. */

/** Operations of the delivery engine. */
// biome-ignore lint/suspicious/noEmptyInterface: filled in as the engine moves onto the storage layer
export interface DeliveryStore {}
