import { promises as dns, type LookupAddress } from 'node:dns';
import { isIP, type Socket } from 'node:net';
import ipaddr from 'ipaddr.js';
import { Agent, buildConnector } from 'undici';

/**
 * Server-side request forgery protection. Outbound deliveries may only reach public unicast
 * addresses unless the operator's allow-list names the host or range. The check runs inside
 * the connector on the very address the socket connects to, so a name that resolves to a
 * public address when checked and a private one when connected (DNS rebinding) cannot slip by.
 */

/**
 * Resolves a host name to every address it has. Injected so tests can simulate DNS answers,
 * including rebinding; the default is `dns.lookup` with `all: true`.
 */
export type Lookup = (hostname: string) => Promise<readonly LookupAddress[]>;

export const systemLookup: Lookup = (hostname) => dns.lookup(hostname, { all: true });

export interface OutboundPolicy {
  /**
   * Host names (exact, or `*.example.com` for any subdomain), single addresses and CIDR ranges
   * that may be reached even though they are not public.
   */
  allowList: readonly string[];
  /** Refuse `http:` destinations. */
  httpsOnly: boolean;
}

/** Thrown (and passed through undici) when a destination is refused. Not worth retrying. */
export class SsrfBlockedError extends Error {
  readonly code = 'SSRF_BLOCKED';
  constructor(message: string) {
    super(message);
    this.name = 'SsrfBlockedError';
  }
}

/** Thrown when resolving a host name takes longer than the connect timeout. */
export class LookupTimeoutError extends Error {
  readonly code = 'UND_ERR_CONNECT_TIMEOUT';
  constructor(hostname: string, timeoutMs: number) {
    super(`Resolving ${hostname} took longer than ${timeoutMs}ms`);
    this.name = 'LookupTimeoutError';
  }
}

const RANGE_DESCRIPTIONS: Record<string, string> = {
  unspecified: 'an unspecified address',
  broadcast: 'the broadcast address',
  multicast: 'a multicast address',
  linkLocal: 'a link-local address (this includes cloud metadata at 169.254.169.254)',
  loopback: 'a loopback address',
  carrierGradeNat: 'a carrier-grade NAT address (100.64.0.0/10)',
  private: 'a private network address (RFC 1918)',
  reserved: 'a reserved address',
  uniqueLocal: 'a unique-local IPv6 address (fc00::/7)',
  ipv4Compatible: 'a deprecated IPv4-compatible IPv6 address',
  deprecatedSiteLocal: 'a site-local IPv6 address (fec0::/10)',
  teredo: 'a Teredo tunnel address',
};

function describeRange(range: string): string {
  return RANGE_DESCRIPTIONS[range] ?? `a special-purpose address (${range})`;
}

function ipv4FromParts(high: number, low: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([high >> 8, high & 0xff, low >> 8, low & 0xff]);
}

/**
 * Why `address` is not a public unicast address, as a range name ("loopback", "private", …),
 * or null when it is public. IPv6 forms that carry an IPv4 address (mapped, SIIT, NAT64, 6to4)
 * are judged by the IPv4 address inside, with the prefix `ipv4Mapped:` and the like. Throws for
 * text that is not an IP address.
 */
export function blockedRange(address: string): string | null {
  const ip = ipaddr.parse(address);
  if (ip.kind() === 'ipv4') {
    const range = (ip as ipaddr.IPv4).range();
    return range === 'unicast' ? null : range;
  }
  const v6 = ip as ipaddr.IPv6;
  const range = v6.range();
  const p = v6.parts;
  const embedded = (label: string, high: number, low: number): string | null => {
    const inner = blockedRange(ipv4FromParts(high, low).toString());
    return inner === null ? null : `${label}:${inner}`;
  };
  switch (range) {
    case 'ipv4Mapped':
    case 'rfc6145':
      return embedded(range, p[6]!, p[7]!);
    case 'rfc6052':
      // 64:ff9b::/96 embeds a public IPv4 address for NAT64; the /48 local-use prefix does not.
      return p[2] === 0 && p[3] === 0 && p[4] === 0 && p[5] === 0
        ? embedded(range, p[6]!, p[7]!)
        : range;
    case '6to4':
      return embedded(range, p[1]!, p[2]!);
    case 'unicast':
      // ::a.b.c.d (IPv4-compatible, deprecated) falls in no named range but is not public.
      return p.slice(0, 6).every((part) => part === 0) ? 'ipv4Compatible' : null;
    default:
      return range;
  }
}

/** A sentence saying why `address` was refused, for attempt rows and logs. */
function refusal(address: string, range: string, hostname: string): SsrfBlockedError {
  const [outer, inner] = range.includes(':') ? range.split(':') : [undefined, range];
  const kind = describeRange(inner ?? range);
  const via = outer ? ` (written as the ${outer} IPv6 form of one)` : '';
  const name = hostname === address ? address : `${hostname} (${address})`;
  return new SsrfBlockedError(
    `Refused to connect to ${name}: it is ${kind}${via}. Add the host or range to TRIPLINE_OUTBOUND_ALLOW to permit it.`,
  );
}

function normaliseHost(hostname: string): string {
  const bare =
    hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  return bare.toLowerCase().replace(/\.$/, '');
}

export interface AddressGuard {
  /**
   * Checks the parts of a URL known before connecting: scheme (`http:`/`https:`, and `https:`
   * only when `httpsOnly`). Throws SsrfBlockedError when refused.
   */
  checkUrl(url: URL): void;
  /** True when the operator allow-listed this host name, so any address it resolves to is fine. */
  isHostAllowed(hostname: string): boolean;
  /**
   * Checks one resolved or connected address reached through `hostname`. Throws
   * SsrfBlockedError unless the address is public or allow-listed.
   */
  checkAddress(address: string, hostname: string): void;
}

/**
 * Builds the checks from an operator policy. Throws an Error naming the entry when the
 * allow-list holds something that is neither a host name, an address nor a CIDR range.
 */
export function createAddressGuard(policy: OutboundPolicy): AddressGuard {
  const ranges: [ipaddr.IPv4 | ipaddr.IPv6, number][] = [];
  const hosts = new Set<string>();
  const suffixes: string[] = [];
  for (const raw of policy.allowList) {
    const entry = normaliseHost(raw.trim());
    if (entry === '') continue;
    if (ipaddr.isValidCIDR(entry)) {
      const [ip, bits] = ipaddr.parseCIDR(entry);
      ranges.push(
        ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress()
          ? [(ip as ipaddr.IPv6).toIPv4Address(), Math.max(0, bits - 96)]
          : [ip, bits],
      );
    } else if (isIP(entry)) {
      const ip = ipaddr.process(entry);
      ranges.push([ip, ip.kind() === 'ipv4' ? 32 : 128]);
    } else if (entry.startsWith('*.') && /^[a-z0-9.-]+$/.test(entry.slice(2))) {
      suffixes.push(entry.slice(1));
    } else if (/^[a-z0-9.-]+$/.test(entry)) {
      hosts.add(entry);
    } else {
      throw new Error(
        `Outbound allow-list entry "${raw}" is not a host name, address or CIDR range`,
      );
    }
  }

  const inAllowedRange = (address: string): boolean => {
    // process() turns ::ffff:a.b.c.d into a.b.c.d, so an IPv4 range also covers its mapped form.
    const ip = ipaddr.process(address);
    return ranges.some(([net, bits]) => net.kind() === ip.kind() && ip.match(net, bits));
  };

  const isHostAllowed = (hostname: string): boolean => {
    const host = normaliseHost(hostname);
    return hosts.has(host) || suffixes.some((suffix) => host.endsWith(suffix));
  };

  return {
    checkUrl(url) {
      if (url.protocol !== 'https:' && url.protocol !== 'http:') {
        throw new SsrfBlockedError(
          `Refused ${url.protocol} URL: only http and https are delivered`,
        );
      }
      if (policy.httpsOnly && url.protocol === 'http:') {
        throw new SsrfBlockedError(
          'Refused plain http:// destination: this server only delivers over https (TRIPLINE_OUTBOUND_HTTPS_ONLY)',
        );
      }
    },
    isHostAllowed,
    checkAddress(address, hostname) {
      if (isHostAllowed(hostname)) return;
      const bare = normaliseHost(address);
      if (!isIP(bare)) throw new SsrfBlockedError(`Refused to connect to ${hostname}: no address`);
      const range = blockedRange(bare);
      if (range !== null && !inAllowedRange(bare))
        throw refusal(bare, range, normaliseHost(hostname));
    },
  };
}

export interface GuardedConnectorOptions {
  policy: OutboundPolicy;
  /** The policy's checks when the caller built them already; absent, built from `policy`. */
  guard?: AddressGuard;
  /** Connect timeout, which also bounds the DNS lookup. */
  timeoutMs: number;
  lookup?: Lookup;
  /**
   * PEM certificates TLS trusts instead of Node's bundled roots; absent, the usual roots (and
   * NODE_EXTRA_CA_CERTS). Tests use it to reach a local https receiver.
   */
  ca?: string | readonly string[];
}

type Connector = buildConnector.connector;

/**
 * An undici connector that resolves the host itself with `lookup`, refuses the connection
 * unless *every* address is allowed (a name answering with one public and one private address
 * is refused), connects to the first checked address — never resolving again — and checks
 * `socket.remoteAddress` once connected. TLS still verifies the certificate against the host
 * name. Refusals reach the request as SsrfBlockedError.
 */
export function createGuardedConnector(options: GuardedConnectorOptions): Connector {
  const guard = options.guard ?? createAddressGuard(options.policy);
  const lookup = options.lookup ?? systemLookup;
  const connect = buildConnector({
    timeout: options.timeoutMs,
    ...(options.ca === undefined ? {} : { ca: [options.ca].flat() }),
  });

  const resolve = async (hostname: string): Promise<string> => {
    if (isIP(hostname)) {
      guard.checkAddress(hostname, hostname);
      return hostname;
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new LookupTimeoutError(hostname, options.timeoutMs)),
        options.timeoutMs,
      );
    });
    try {
      const answers = await Promise.race([lookup(hostname), timeout]);
      if (answers.length === 0) {
        throw Object.assign(new Error(`${hostname} has no addresses`), { code: 'ENOTFOUND' });
      }
      for (const answer of answers) guard.checkAddress(answer.address, hostname);
      return answers[0]!.address;
    } finally {
      clearTimeout(timer);
    }
  };

  return (connectOptions, callback) => {
    const { hostname } = connectOptions;
    resolve(hostname).then(
      (address) => {
        const servername = isIP(hostname) ? connectOptions.servername : hostname;
        connect({ ...connectOptions, hostname: address, servername }, (error, socket) => {
          if (error) {
            callback(error, null);
            return;
          }
          try {
            guard.checkAddress((socket as Socket).remoteAddress ?? '', hostname);
          } catch (refused) {
            socket.destroy();
            callback(refused as Error, null);
            return;
          }
          callback(null, socket);
        });
      },
      (error: Error) => callback(error, null),
    );
  };
}

/**
 * An undici Agent whose every connection goes through {@link createGuardedConnector}. It
 * follows no redirects (undici 7 only does so through an interceptor, which is not installed).
 * The caller owns it: `close()` or `destroy()` it when done.
 */
export function createGuardedAgent(options: GuardedConnectorOptions): Agent {
  return new Agent({
    connect: createGuardedConnector(options),
    // An idle pooled socket was checked when it connected; keep it briefly for bursts.
    keepAliveTimeout: 4_000,
  });
}
