import { type DestinationStream, type Logger, type LoggerOptions, pino } from 'pino';
import type { LogLevel } from './config.js';
import { publicId } from './ids.js';

export type { Logger };

export interface LoggerExtras {
  /**
   * Fields added to every line, such as the active trace's ids; called once per line written,
   * so it must be cheap.
   */
  mixin?: () => object;
}

/** A stored run id in its public form (`run_…`), the one the API and `webhook-id` show. */
const runIdSerializer = (id: unknown): unknown =>
  typeof id === 'string' && !id.startsWith('run_') ? publicId('run', id) : id;

/**
 * A structured logger writing one JSON object per line, with the level as a name (`"info"`).
 * Authorization headers and any field named like a secret value are redacted before a line is
 * written; a `runId` field is shown as the run's public id.
 */
export function createLogger(
  level: LogLevel,
  destination?: DestinationStream,
  extras: LoggerExtras = {},
): Logger {
  const options: LoggerOptions = {
    level,
    formatters: { level: (label) => ({ level: label }) },
    serializers: { runId: runIdSerializer },
    redact: {
      paths: [
        'req.headers.authorization',
        'headers.authorization',
        '*.authorization',
        'value',
        '*.value',
        'apiKey',
        '*.apiKey',
      ],
      censor: '[redacted]',
    },
  };
  if (extras.mixin) options.mixin = extras.mixin;
  return pino(options, destination);
}
