import { performance } from 'node:perf_hooks';
import { type Dispatcher, request as httpRequest } from 'undici';
import type { DeliveryConfig } from '../config.js';
import { ValidationError } from '../errors.js';
import {
  renderPayload,
  renderText,
  type TemplateContext,
} from '../modules/automations/template.js';
import { unreachable } from '../storage/config.js';
import type { SlackSeverity } from '../storage/delivery.js';
import { reservedHeaderReason } from './headers.js';
import { parseRetryAfter } from './retry.js';
import { webhookSignatureHeaders } from './signing.js';
import { buildSlackMessage, type CollectionOwner, slackWebhookUrlProblem } from './slack.js';
import {
  type AddressGuard,
  createAddressGuard,
  createGuardedAgent,
  type Lookup,
  SsrfBlockedError,
} from './ssrf.js';

export const USER_AGENT = 'Tripline-Webhooks/0.1';
const REDACTED = '[redacted]';

/**
 * Why an attempt produced no usable HTTP answer:
 * - `NETWORK_ERROR`: DNS failure, refused or reset connection (retried);
 * - `TIMEOUT`: the attempt did not finish within its deadline of `timeoutMs`, counted from the
 *   start of the request and covering lookup, connect, sending, the response headers and the
 *   whole body; it was aborted then (retried);
 * - `SSRF_BLOCKED`: the destination is private, loopback, link-local… or not https when
 *   https is required;
 * - `PAYLOAD_TOO_LARGE`: the rendered body exceeds `maxPayloadBytes`; nothing was sent;
 * - `CONFIGURATION_ERROR`: the action or template cannot be delivered as configured (bad URL,
 *   missing secret, template that no longer renders, a reserved extra header or a Slack URL
 *   that breaks the rules actions are saved under); nothing was sent;
 * - `INVALID_REQUEST`: the HTTP client refused the request (e.g. an extra header with a
 *   newline); nothing was sent;
 * - `ABORTED`: the server stopped while the attempt was in flight.
 * Only the first two are retried.
 */
export type DeliveryErrorClass =
  | 'NETWORK_ERROR'
  | 'TIMEOUT'
  | 'SSRF_BLOCKED'
  | 'PAYLOAD_TOO_LARGE'
  | 'CONFIGURATION_ERROR'
  | 'INVALID_REQUEST'
  | 'ABORTED';

/** What one try produced: an HTTP status, or an error class; never both from the wire. */
export interface DeliveryOutcome {
  statusCode?: number;
  errorClass?: DeliveryErrorClass;
  errorMessage?: string;
  /**
   * The response body, at most `maxStoredResponseBytes` bytes of UTF-8, with every secret used in
   * the request and the Authorization and signature header values replaced by `[redacted]`;
   * null when no response arrived.
   */
  responseBody: string | null;
  /** Wall time of the attempt, measured with the monotonic clock. */
  durationMs: number;
  /** The receiver's `Retry-After`, in milliseconds, unbounded; absent when not sent. */
  retryAfterMs?: number;
  /**
   * True for a no-op action's attempt: no request was made (no status, no error, no body,
   * durationMs 0), and it counts as a success.
   */
  noOp?: true;
}

/** What every attempt of a no-op action produces, at once: success without a request. */
export const NO_OP_OUTCOME: Readonly<DeliveryOutcome> = Object.freeze({
  responseBody: null,
  durationMs: 0,
  noOp: true,
});

/** The run result and attempt summary of a no-op action's attempt. */
export const NO_OP_RESULT = 'No-op: nothing sent';

export interface WebhookTarget {
  kind: 'WEBHOOK';
  url: string;
  /** Plaintext of the access-token secret, sent as `Authorization: Bearer …`. */
  accessToken: string | null;
  /** Plaintext `whsec_…` signing secret; without it requests carry id and timestamp only. */
  signingSecret: string | null;
  headers: Readonly<Record<string, string>>;
}

export interface SlackTarget {
  kind: 'SLACK';
  /** Plaintext incoming-webhook URL, itself a secret. */
  url: string;
  channel: string | null;
}

/** A no-op action's target: nothing is sent, and the attempt succeeds. */
export interface NoOpTarget {
  kind: 'NO_OP';
}

export type DeliveryTarget = WebhookTarget | SlackTarget | NoOpTarget;

/** The per-automation part of a delivery: what to say, as templates. */
export interface DeliveryContent {
  /** Webhook JSON template; null sends the default envelope. */
  payloadTemplate: string | null;
  slackTitle: string | null;
  slackMessage: string | null;
  slackSeverity: SlackSeverity | null;
}

/** Everything needed to send one message, with secrets already decrypted. */
export interface DeliveryRequest {
  /** `webhook-id`: the run id, so retries and re-deliveries share it; any unique id for tests. */
  webhookId: string;
  target: DeliveryTarget;
  content: DeliveryContent;
  context: TemplateContext;
  collectionOwner: CollectionOwner;
  /** Plaintexts of the secrets the templates name, by secret name. */
  secrets: ReadonlyMap<string, string>;
}

export interface DeliverOptions {
  config: DeliveryConfig;
  /** `webhook-timestamp`, and the reference for a Retry-After date: the injected clock's now. */
  timestamp: Date;
  /**
   * A dispatcher built by `createGuardedAgent`, shared across attempts. Without one, a guarded
   * agent is made for this call and destroyed after it. Pass only guarded dispatchers: the SSRF
   * checks live in its connector.
   */
  dispatcher?: Dispatcher;
  /**
   * The outbound policy's checks, built once by the caller with `createAddressGuard(config)`;
   * absent, they are built from `config` for this call.
   */
  guard?: AddressGuard;
  /** DNS lookup for the agent made when `dispatcher` is absent. */
  lookup?: Lookup;
  /** Trusted TLS roots for the agent made when `dispatcher` is absent (see `createGuardedAgent`). */
  ca?: string | readonly string[];
  /** Aborting stops the attempt; the outcome is then `ABORTED`. */
  signal?: AbortSignal;
  /**
   * The attempt's own controller, instead of `signal`: aborting it stops the attempt (`ABORTED`),
   * and the deadline aborts it too, with a {@link DeadlineExceeded} reason. It spares every
   * attempt a second controller and a listener on the first (the engine makes one per attempt).
   */
  controller?: AbortController;
  /**
   * Headers added to the request after the action's own, such as the W3C `traceparent` of the
   * attempt's span. They are not signed (Standard Webhooks signs the id, timestamp and body).
   */
  headers?: Readonly<Record<string, string>>;
}

interface PreparedRequest {
  url: URL;
  headers: Record<string, string>;
  body: string;
}

const failure = (
  errorClass: DeliveryErrorClass,
  errorMessage: string,
  durationMs = 0,
): DeliveryOutcome => ({ errorClass, errorMessage, responseBody: null, durationMs });

/**
 * Renders and sends one message: a signed JSON webhook or a Slack incoming-webhook post; for a
 * no-op action, sends nothing and answers {@link NO_OP_OUTCOME} at once.
 *
 * Sends at most one HTTP request: POST, redirects not followed, through the SSRF guard, within
 * one deadline of `config.timeoutMs` for everything from the DNS lookup to the last byte of the
 * response body; at the deadline the request is aborted and the outcome is `TIMEOUT`, however
 * the receiver behaves (a status without the whole body is no answer). Never throws: every
 * failure is an outcome with an error class (see {@link DeliveryErrorClass}); a payload over
 * `maxPayloadBytes`, a template that fails to render, a reserved extra header, a Slack URL that
 * is not https or a refused destination send nothing. Used by the engine for runs and by
 * `testAction`, which sends without creating a run.
 */
export async function deliver(
  request: DeliveryRequest,
  options: DeliverOptions,
): Promise<DeliveryOutcome> {
  const { config } = options;
  const redactions = new Set<string>(request.secrets.values());
  const { target } = request;
  let prepared: PreparedRequest;
  try {
    switch (target.kind) {
      case 'WEBHOOK':
        prepared = prepareWebhook(request, target, options.timestamp, redactions);
        break;
      case 'SLACK':
        prepared = prepareSlack(request, target, options.timestamp, redactions);
        break;
      case 'NO_OP':
        return { ...NO_OP_OUTCOME };
      default:
        return unreachable(target);
    }
  } catch (error) {
    return failure('CONFIGURATION_ERROR', redact(describeUnexpected(error), redactions));
  }
  if (options.headers) Object.assign(prepared.headers, options.headers);
  const bytes = Buffer.byteLength(prepared.body, 'utf8');
  if (bytes > config.maxPayloadBytes) {
    return failure(
      'PAYLOAD_TOO_LARGE',
      `The rendered payload is ${bytes} bytes; the limit is ${config.maxPayloadBytes} bytes`,
    );
  }
  const guard = options.guard ?? createAddressGuard(config);
  try {
    guard.checkUrl(prepared.url);
  } catch (error) {
    return failure('SSRF_BLOCKED', (error as Error).message);
  }

  const ownDispatcher =
    options.dispatcher === undefined
      ? createGuardedAgent({
          policy: config,
          guard,
          timeoutMs: config.timeoutMs,
          lookup: options.lookup,
          ...(options.ca === undefined ? {} : { ca: options.ca }),
        })
      : undefined;
  // One deadline for the whole exchange. Per-phase timeouts cannot bound it: a receiver that
  // sends a byte now and then is never idle long enough to trip one.
  // The caller's abort is passed on to the same controller (cheaper than AbortSignal.any), or the
  // caller's controller is that controller; the reason tells the two apart.
  const controller = options.controller ?? new AbortController();
  const { signal } = controller;
  const timer = setTimeout(() => controller.abort(new DeadlineExceeded()), config.timeoutMs);
  const given = options.controller ? undefined : options.signal;
  const callerAborted = () => controller.abort(given?.reason);
  if (given?.aborted) callerAborted();
  else given?.addEventListener('abort', callerAborted, { once: true });
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const interrupted = (): DeliveryOutcome | undefined => {
    if (!signal.aborted) return undefined;
    return signal.reason instanceof DeadlineExceeded
      ? failure('TIMEOUT', `No response within the ${config.timeoutMs}ms deadline`, elapsed())
      : failure('ABORTED', 'The server stopped before the receiver answered', elapsed());
  };
  try {
    const response = await httpRequest(prepared.url, {
      method: 'POST',
      headers: prepared.headers,
      body: prepared.body,
      dispatcher: ownDispatcher ?? options.dispatcher,
      // The deadline bounds both; undici's own defaults (300 s) must not cut in first.
      headersTimeout: 0,
      bodyTimeout: 0,
      signal,
    });
    const forms = redactionForms(redactions);
    const longest = Math.max(0, ...forms.map((f) => Buffer.byteLength(f)));
    // Read past the stored limit by the longest secret, so one straddling the cut is still
    // found whole and redacted before truncation.
    const raw = await readLimited(response.body, config.maxStoredResponseBytes + longest);
    const responseBody = truncateUtf8(replaceForms(raw.text, forms), config.maxStoredResponseBytes);
    const cut = raw.broken ? interrupted() : undefined;
    if (cut) {
      // The status alone is no answer: a receiver that never finishes its body has not accepted
      // the delivery, and holding the attempt open is exactly what the deadline prevents.
      return {
        ...cut,
        errorMessage:
          cut.errorClass === 'TIMEOUT'
            ? `The receiver answered HTTP ${response.statusCode} but did not finish its body within the ${config.timeoutMs}ms deadline`
            : `The server stopped while the receiver was sending HTTP ${response.statusCode}`,
        responseBody,
      };
    }
    const retryAfterMs = parseRetryAfter(response.headers['retry-after'], options.timestamp);
    return {
      statusCode: response.statusCode,
      responseBody,
      durationMs: elapsed(),
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
    };
  } catch (error) {
    const cut = interrupted();
    if (cut) return cut;
    const { errorClass, message } = describeError(error, config.timeoutMs);
    return failure(errorClass, redact(message, redactions), elapsed());
  } finally {
    clearTimeout(timer);
    given?.removeEventListener('abort', callerAborted);
    // destroy, not close: close waits for keep-alive sockets and would hold the caller.
    await ownDispatcher?.destroy();
  }
}

/** The abort reason of an attempt's deadline, telling it apart from the caller's abort. */
class DeadlineExceeded extends Error {
  constructor() {
    super('The delivery deadline passed');
    this.name = 'DeadlineExceeded';
  }
}

function parseDestination(text: string, what: string): URL {
  try {
    return new URL(text);
  } catch {
    throw new ValidationError('url', `${what} is not a valid URL`);
  }
}

function prepareWebhook(
  request: DeliveryRequest,
  target: WebhookTarget,
  timestamp: Date,
  redactions: Set<string>,
): PreparedRequest {
  const url = parseDestination(target.url, "The action's URL");
  const body = renderPayload(request.content.payloadTemplate, request.context, request.secrets);
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(target.headers)) {
    // Saving an action refuses these; one stored before that rule is refused, not dropped, so
    // what is sent is always what the action says.
    const reason = reservedHeaderReason(name);
    if (reason !== undefined) {
      throw new ValidationError(
        'headers',
        `The action's ${name} header cannot be sent: ${reason}. Remove it with updateAction.`,
      );
    }
    headers[name.toLowerCase()] = value;
  }
  headers['content-type'] = 'application/json';
  headers['user-agent'] = USER_AGENT;
  if (target.accessToken !== null) {
    headers.authorization = `Bearer ${target.accessToken}`;
    redactions.add(target.accessToken).add(headers.authorization);
  }
  if (target.signingSecret !== null) {
    redactions.add(target.signingSecret);
    const signed = webhookSignatureHeaders(
      target.signingSecret,
      request.webhookId,
      timestamp,
      body,
    );
    Object.assign(headers, signed);
    redactions.add(signed['webhook-signature']).add(signed['webhook-signature'].slice(3));
  } else {
    headers['webhook-id'] = request.webhookId;
    headers['webhook-timestamp'] = String(Math.floor(timestamp.getTime() / 1000));
  }
  return { url, headers, body };
}

function prepareSlack(
  request: DeliveryRequest,
  target: SlackTarget,
  timestamp: Date,
  redactions: Set<string>,
): PreparedRequest {
  redactions.add(target.url);
  const problem = slackWebhookUrlProblem(target.url);
  if (problem !== undefined) {
    throw new ValidationError(
      'url',
      `The action's secret cannot be a Slack incoming-webhook URL: ${problem}. Store the URL in it with rotateSecret.`,
    );
  }
  const url = new URL(target.url);
  // The path carries Slack's token; an echo of the path alone must not leak it either.
  if (url.pathname.length > 1) redactions.add(url.pathname);
  const { content, context, secrets } = request;
  const message = buildSlackMessage({
    title: content.slackTitle === null ? null : renderText(content.slackTitle, context, secrets),
    message:
      content.slackMessage === null ? null : renderText(content.slackMessage, context, secrets),
    severity: content.slackSeverity ?? 'INFO',
    context,
    collectionOwner: request.collectionOwner,
  });
  return {
    url,
    headers: {
      'content-type': 'application/json',
      'user-agent': USER_AGENT,
      'webhook-id': request.webhookId,
      'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
    },
    body: JSON.stringify(message),
  };
}

/**
 * Reads at most `limit` bytes of a response body. `broken` is true when the body ended in an
 * error (a reset, or an abort) rather than at its end or at the limit.
 */
async function readLimited(
  body: AsyncIterable<Buffer>,
  limit: number,
): Promise<{ text: string; broken: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  let broken = false;
  try {
    for await (const chunk of body) {
      chunks.push(chunk);
      size += chunk.length;
      // Leaving the loop destroys the stream, so a huge body is never read to its end.
      if (size >= limit) break;
    }
  } catch {
    // The status already arrived; a body that breaks only shortens what is kept, unless the
    // break was our own abort (the caller asks the signal).
    broken = true;
  }
  return { text: Buffer.concat(chunks).subarray(0, limit).toString('utf8'), broken };
}

/** JSON string escaping applied this many times covers an echo of a body embedded in JSON. */
const ESCAPE_DEPTH = 3;

/**
 * Every written form of the values to hide: the value itself, its JSON-escaped forms up to
 * {@link ESCAPE_DEPTH} levels deep (a receiver echoing our JSON body inside its own JSON escapes
 * it twice) and its URL-encoded form. Longest first, so a secret containing another is not
 * half-replaced.
 */
function redactionForms(values: Iterable<string>): string[] {
  const forms = new Set<string>();
  for (const value of values) {
    if (value.length === 0) continue;
    let form = value;
    forms.add(form);
    for (let depth = 0; depth < ESCAPE_DEPTH; depth++) {
      form = JSON.stringify(form).slice(1, -1);
      forms.add(form);
    }
    forms.add(encodeURIComponent(value));
  }
  return [...forms].sort((a, b) => b.length - a.length);
}

/** Replaces every form (see {@link redactionForms}) of each value with `[redacted]`. */
export function redact(text: string, values: Iterable<string>): string {
  return replaceForms(text, redactionForms(values));
}

function replaceForms(text: string, forms: readonly string[]): string {
  let out = text;
  for (const form of forms) if (out.includes(form)) out = out.replaceAll(form, REDACTED);
  return out;
}

/** Cuts `text` to at most `maxBytes` of UTF-8 without splitting a character. */
export function truncateUtf8(text: string, maxBytes: number): string {
  const buffer = Buffer.from(text, 'utf8');
  if (buffer.length <= maxBytes) return text;
  let end = maxBytes;
  // Step back over continuation bytes (10xxxxxx) to the start of the cut character.
  while (end > 0 && ((buffer[end] ?? 0) & 0xc0) === 0x80) end--;
  return buffer.subarray(0, end).toString('utf8');
}

function describeUnexpected(error: unknown): string {
  if (error instanceof ValidationError) return error.message;
  return error instanceof Error ? error.message : String(error);
}

function describeError(
  error: unknown,
  timeoutMs: number,
): { errorClass: DeliveryErrorClass; message: string } {
  if (error instanceof SsrfBlockedError)
    return { errorClass: 'SSRF_BLOCKED', message: error.message };
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return { errorClass: 'TIMEOUT', message: `Could not connect within ${timeoutMs}ms` };
    case 'UND_ERR_SOCKET':
      return {
        errorClass: 'NETWORK_ERROR',
        message: `Connection closed by the receiver: ${message}`,
      };
    case 'UND_ERR_INVALID_ARG':
      return { errorClass: 'INVALID_REQUEST', message };
    default:
      return {
        errorClass: 'NETWORK_ERROR',
        message:
          typeof code === 'string' && !message.includes(code) ? `${code}: ${message}` : message,
      };
  }
}
