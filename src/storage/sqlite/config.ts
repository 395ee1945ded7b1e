import type { ActionStore, AutomationStore, SecretStore } from '../config.js';
import type { SqliteHandle } from './support.js';

export function createSecretStore(_h: SqliteHandle): SecretStore {
  return {};
}

export function createActionStore(_h: SqliteHandle): ActionStore {
  return {};
}

export function createAutomationStore(_h: SqliteHandle): AutomationStore {
  return {};
}
