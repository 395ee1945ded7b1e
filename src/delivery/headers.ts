/**
 * Headers an action may not set, and why. Tripline sets the first group on every delivery; the
 * rest govern the connection and the framing of the message, which the HTTP client owns (undici
 * refuses most of them outright, so a stored one could never be sent).
 */
const RESERVED_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'the body is always JSON, sent as application/json',
  'content-length': 'it is computed from the body',
  host: 'it comes from the URL',
  authorization: 'it carries the access token; name the token with `accessTokenSecret`',
  'user-agent': 'it identifies Tripline to the receiver',
  connection: 'the HTTP client manages the connection',
  'keep-alive': 'the HTTP client manages the connection',
  'proxy-connection': 'the HTTP client manages the connection',
  upgrade: 'the HTTP client manages the connection',
  'transfer-encoding': 'the HTTP client does the message framing',
  te: 'the HTTP client does the message framing',
  trailer: 'the HTTP client does the message framing',
  expect: 'the body is sent at once, without waiting for 100 Continue',
};

/**
 * Why an action may not set the header `name` (any case), or undefined when it may. The one rule
 * for extra headers: actions refuse such a header when saved, and delivery refuses to send an
 * action that somehow holds one, so what is stored is always what is sent.
 */
export function reservedHeaderReason(name: string): string | undefined {
  const lower = name.toLowerCase();
  if (lower.startsWith('webhook-')) {
    return 'webhook-* headers carry the Standard Webhooks id, timestamp and signature';
  }
  return Object.hasOwn(RESERVED_HEADERS, lower) ? RESERVED_HEADERS[lower] : undefined;
}
