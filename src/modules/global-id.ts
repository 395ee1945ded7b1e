import { NotFoundError } from '../errors.js';
import { type IdKind, parsePublicId, publicId } from '../ids.js';

/** The GraphQL node type of each kind of public id; test deliveries are no node. */
const TYPENAMES: Readonly<Record<Exclude<IdKind, 'testDelivery'>, string>> = {
  entity: 'Entity',
  user: 'User',
  apiKey: 'ApiKey',
  project: 'Project',
  registry: 'Registry',
  collection: 'ArtifactCollection',
  secret: 'Secret',
  webhookAction: 'WebhookAction',
  slackAction: 'SlackAction',
  noOpAction: 'NoOpAction',
  automation: 'Automation',
  event: 'ArtifactEvent',
  run: 'TriggeredRun',
  trainingRun: 'Run',
};

const KIND_OF_TYPENAME: ReadonlyMap<string, IdKind> = new Map(
  Object.entries(TYPENAMES).map(([kind, typename]) => [typename, kind as IdKind]),
);

/**
 * The ID of a node of GraphQL type `typename` (the relay plugin's `encodeGlobalID`): its public
 * id, e.g. `run_…` for a TriggeredRun. Throws for a type that has no kind of id, which is a bug.
 */
export function encodeGlobalId(typename: string, storedId: string): string {
  const kind = KIND_OF_TYPENAME.get(typename);
  if (kind === undefined) throw new Error(`No public id kind for GraphQL type ${typename}`);
  return publicId(kind, storedId);
}

/**
 * The GraphQL type and stored id behind an ID, or null when it is malformed or names something
 * that is not a node. Never throws.
 */
export function decodeGlobalId(globalId: string): { typename: string; id: string } | null {
  const parsed = parsePublicId(globalId);
  if (parsed === null || parsed.kind === 'testDelivery') return null;
  return { typename: TYPENAMES[parsed.kind], id: parsed.id };
}

/**
 * The stored id behind an ID of a node of type `typename` (one of `typenames`), or null when the
 * ID is malformed or names another type.
 */
export function storedIdOf(globalId: string, typename: string | readonly string[]): string | null {
  const decoded = decodeGlobalId(globalId);
  if (decoded === null) return null;
  const wanted = typeof typename === 'string' ? [typename] : typename;
  return wanted.includes(decoded.typename) ? decoded.id : null;
}

/**
 * The stored id behind an ID of type `typename`. Throws NotFoundError on `field` when the ID is
 * malformed or names another type, exactly as for an object that does not exist.
 */
export function decodeId(globalId: string, typename: string, field: string): string {
  const id = storedIdOf(globalId, typename);
  if (id === null) throw new NotFoundError(field, `No ${typename} with id "${globalId}".`);
  return id;
}
