import { randomFillSync } from 'node:crypto';
import { v7 } from 'uuid';

/**
 * A new identifier for a stored row: a UUIDv7, time-ordered (its first 48 bits are the
 * millisecond, then a counter within it, then random bits), so rows arrive at the end of every
 * index that holds their id instead of at random places in it. Measured on 300,000 stored runs:
 * an event with ten runs wrote 30 % fewer bytes and took about 40 % less CPU than with random
 * (v4) ids. Ids are not secrets: that one shows its creation time does no harm.
 */
export function newId(): string {
  // uuid's own v7 asks the system for 16 random bytes per id, a tenth of an emit's CPU at 100 runs
  // (a call each); here they come from a pool filled 256 ids at a time. Its clock and sequence
  // are kept as uuid keeps them (a random 31-bit start each millisecond, then one more per id),
  // so ids made in one millisecond still sort in the order they were made.
  if (poolOffset === randomPool.length) {
    randomFillSync(randomPool);
    poolOffset = 0;
  }
  const random = randomPool.subarray(poolOffset, poolOffset + 16);
  poolOffset += 16;
  const now = Date.now();
  if (now > clock.msecs) {
    clock.msecs = now;
    clock.seq = ((random[6]! & 0x7f) << 24) | (random[7]! << 16) | (random[8]! << 8) | random[9]!;
  } else {
    clock.seq = (clock.seq + 1) | 0;
    if (clock.seq === 0) clock.msecs += 1;
  }
  return v7({ random, msecs: clock.msecs, seq: clock.seq });
}

const randomPool = new Uint8Array(16 * 256);
let poolOffset = randomPool.length;
const clock = { msecs: Number.NEGATIVE_INFINITY, seq: 0 };

/**
 * What a public id names. Each kind has its own prefix, so an id says what it is
 * (`run_0193…`) and one kind's id can never be taken for another's.
 */
export type IdKind =
  | 'entity'
  | 'user'
  | 'apiKey'
  | 'project'
  | 'registry'
  | 'collection'
  | 'secret'
  | 'webhookAction'
  | 'slackAction'
  | 'noOpAction'
  | 'automation'
  | 'event'
  | 'run'
  | 'trainingRun'
  | 'testDelivery';

const PREFIXES: Readonly<Record<IdKind, string>> = {
  entity: 'ent',
  user: 'usr',
  apiKey: 'key',
  project: 'prj',
  registry: 'reg',
  collection: 'col',
  secret: 'sec',
  webhookAction: 'whk',
  slackAction: 'slk',
  noOpAction: 'nop',
  automation: 'auto',
  event: 'evt',
  run: 'run',
  trainingRun: 'trun',
  testDelivery: 'test',
};

const KINDS: ReadonlyMap<string, IdKind> = new Map(
  Object.entries(PREFIXES).map(([kind, prefix]) => [prefix, kind as IdKind]),
);

/** Stored ids are uuids; the bound keeps a hostile id from reaching a query at any length. */
const PUBLIC_ID = /^([a-z]+)_([0-9A-Za-z-]{1,64})$/;

/**
 * The id the API, webhooks and templates show for a stored row: `<prefix>_<storedId>`, e.g.
 * `run_0193c1f2-…` for a triggered run. Stored ids stay as they are; only this form leaves the
 * server.
 */
export function publicId(kind: IdKind, storedId: string): string {
  return `${PREFIXES[kind]}_${storedId}`;
}

/**
 * The kind and stored id behind a public id, or null when the text is not one: an unknown
 * prefix, no `_`, or an id part that no stored id can have. Never throws.
 */
export function parsePublicId(text: string): { kind: IdKind; id: string } | null {
  const match = PUBLIC_ID.exec(text);
  const kind = match?.[1] === undefined ? undefined : KINDS.get(match[1]);
  return kind === undefined || match?.[2] === undefined ? null : { kind, id: match[2] };
}
