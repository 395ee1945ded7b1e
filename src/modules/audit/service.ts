/* The audit log's records live with the storage layer, which writes them with their changes. */
export {
  AUDIT_ACTIONS,
  type AuditAction,
  type AuditEntry,
  type AuditRecord,
} from '../../storage/audit.js';
export type { AuditFilter } from '../../storage/identity.js';
