import type { Context } from '../context.js';

/** What a subscription asks for, as sent: the document's text, its operation and variables. */
export interface SubscriptionRequest {
  query: string;
  operationName?: string | null;
  variables?: Record<string, unknown> | null;
}

/**
 * The key under which subscriptions share one execution: equal keys get equal results. It holds
 * the document and variables as sent, and the viewer's access: its key (a revoked key stops
 * only its own subscriptions) and its roles (a changed role starts a new execution).
 */
export function shareKey(request: SubscriptionRequest, context: Context): string {
  const { viewer } = context;
  const roles = [...viewer.roles].map(([entityId, role]) => `${entityId}=${role}`).sort();
  return [
    viewer.apiKeyId,
    roles.join(','),
    request.operationName ?? '',
    JSON.stringify(request.variables ?? null),
    request.query,
  ].join('\n');
}
