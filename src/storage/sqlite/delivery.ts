import type { DeliveryStore } from '../delivery.js';
import type { SqliteHandle } from './support.js';

export function createDeliveryStore(_h: SqliteHandle): DeliveryStore {
  return {};
}
