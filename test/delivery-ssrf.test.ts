import type { LookupAddress } from 'node:dns';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { deliver } from '../src/delivery/send.js';
import { blockedRange, createAddressGuard, type Lookup } from '../src/delivery/ssrf.js';
import { deliveryConfig, webhookRequest } from './support/delivery-fixtures.js';
import { type Receiver, startReceiver } from './support/receiver.js';

const answers =
  (...addresses: string[]): Lookup =>
  async () =>
    addresses.map((address): LookupAddress => ({ address, family: address.includes(':') ? 6 : 4 }));

describe('blockedRange', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.0.9', 'loopback'],
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['100.64.0.1', 'carrierGradeNat'],
    ['100.127.255.254', 'carrierGradeNat'],
    ['169.254.169.254', 'linkLocal'],
    ['224.0.0.1', 'multicast'],
    ['0.0.0.0', 'unspecified'],
    ['255.255.255.255', 'broadcast'],
    ['240.0.0.1', 'reserved'],
    ['192.0.2.10', 'reserved'],
    ['::1', 'loopback'],
    ['::', 'unspecified'],
    ['fc00::1', 'uniqueLocal'],
    ['fd12:3456::1', 'uniqueLocal'],
    ['fe80::1', 'linkLocal'],
    ['ff02::1', 'multicast'],
    ['::ffff:127.0.0.1', 'ipv4Mapped:loopback'],
    ['::ffff:7f00:1', 'ipv4Mapped:loopback'],
    ['::ffff:10.0.0.1', 'ipv4Mapped:private'],
    ['::ffff:169.254.169.254', 'ipv4Mapped:linkLocal'],
    ['::ffff:100.64.0.1', 'ipv4Mapped:carrierGradeNat'],
    ['64:ff9b::a00:1', 'rfc6052:private'],
    ['2002:7f00:1::', '6to4:loopback'],
    ['::7f00:1', 'ipv4Compatible'],
  ])('%s is refused as %s', (address, range) => {
    expect(blockedRange(address)).toBe(range);
  });

  it.each([
    '8.8.8.8',
    '93.184.216.34',
    '172.32.0.1',
    '100.128.0.1',
    '2606:4700:4700::1111',
    '::ffff:8.8.8.8',
    '64:ff9b::808:808',
  ])('%s is public', (address) => {
    expect(blockedRange(address)).toBeNull();
  });
});

describe('allow-list', () => {
  const guard = createAddressGuard({
    allowList: ['10.0.0.0/8', '127.0.0.1', 'internal.example', '*.corp.example', 'fd00::/8'],
    httpsOnly: false,
  });

  it('admits listed ranges and addresses, including their IPv4-mapped forms', () => {
    expect(() => guard.checkAddress('10.9.8.7', 'a.example')).not.toThrow();
    expect(() => guard.checkAddress('::ffff:10.9.8.7', 'a.example')).not.toThrow();
    expect(() => guard.checkAddress('127.0.0.1', 'a.example')).not.toThrow();
    expect(() => guard.checkAddress('fd00::5', 'a.example')).not.toThrow();
    expect(() => guard.checkAddress('127.0.0.2', 'a.example')).toThrow(/loopback/);
    expect(() => guard.checkAddress('192.168.0.1', 'a.example')).toThrow(/private/);
  });

  it('admits listed host names whatever they resolve to', () => {
    expect(() => guard.checkAddress('192.168.0.1', 'internal.example')).not.toThrow();
    expect(() => guard.checkAddress('192.168.0.1', 'INTERNAL.example.')).not.toThrow();
    expect(() => guard.checkAddress('192.168.0.1', 'db.corp.example')).not.toThrow();
    expect(() => guard.checkAddress('192.168.0.1', 'corp.example')).toThrow();
    expect(() => guard.checkAddress('192.168.0.1', 'evilcorp.example')).toThrow();
  });

  it('rejects entries that are neither names, addresses nor ranges', () => {
    expect(() => createAddressGuard({ allowList: ['http://x/'], httpsOnly: false })).toThrow(
      /allow-list entry/,
    );
  });
});

describe('deliver through the SSRF guard', () => {
  let receiver: Receiver;
  beforeEach(async () => {
    receiver = await startReceiver();
  });
  afterEach(async () => {
    await receiver.close();
  });

  const send = (
    url: string,
    options: { allowList?: string[]; lookup?: Lookup; httpsOnly?: boolean } = {},
  ) =>
    deliver(webhookRequest(url), {
      config: deliveryConfig({
        allowList: options.allowList ?? [],
        httpsOnly: options.httpsOnly ?? false,
      }),
      timestamp: new Date(),
      lookup: options.lookup,
    });

  it.each([
    'http://10.0.0.1/hook',
    'http://169.254.169.254/latest/meta-data/',
    'http://0.0.0.0/',
    'http://[::1]/',
    'http://2130706433/',
  ])('refuses the literal private address in %s without connecting', async (url) => {
    const outcome = await send(url);
    expect(outcome).toMatchObject({ errorClass: 'SSRF_BLOCKED', responseBody: null });
    expect(outcome.statusCode).toBeUndefined();
    expect(outcome.errorMessage).toMatch(/Refused to connect/);
  });

  it('refuses the IPv4-mapped IPv6 form of the receiver', async () => {
    const outcome = await send(`http://[::ffff:127.0.0.1]:${receiver.port}/`);
    expect(outcome.errorClass).toBe('SSRF_BLOCKED');
    expect(outcome.errorMessage).toMatch(/loopback.*IPv6/);
    expect(receiver.requests).toHaveLength(0);
  });

  it('refuses a host name resolving to 127.0.0.1 unless the allow-list names the address', async () => {
    const url = `http://receiver.test:${receiver.port}/hook`;
    const lookup = answers('127.0.0.1');
    const refused = await send(url, { lookup });
    expect(refused.errorClass).toBe('SSRF_BLOCKED');
    expect(refused.errorMessage).toContain('receiver.test (127.0.0.1)');
    expect(receiver.requests).toHaveLength(0);

    const allowed = await send(url, { lookup, allowList: ['127.0.0.1'] });
    expect(allowed).toMatchObject({ statusCode: 200, responseBody: 'ok' });
    expect(receiver.requests).toHaveLength(1);
    expect(receiver.requests[0]?.headers.host).toBe(`receiver.test:${receiver.port}`);

    const byName = await send(url, { lookup, allowList: ['receiver.test'] });
    expect(byName.statusCode).toBe(200);
  });

  it('refuses a rebinding answer that lists a public address first and a private one next', async () => {
    const outcome = await send(`http://rebind.test:${receiver.port}/`, {
      lookup: answers('93.184.216.34', '127.0.0.1'),
    });
    expect(outcome.errorClass).toBe('SSRF_BLOCKED');
    expect(receiver.requests).toHaveLength(0);
  });

  it('connects to the address it checked, resolving once per connection', async () => {
    let calls = 0;
    // A rebinding resolver: the first answer is allowed, every later one is private.
    const lookup: Lookup = async () => {
      calls++;
      return [{ address: calls === 1 ? '127.0.0.1' : '10.0.0.1', family: 4 }];
    };
    const outcome = await send(`http://rebind.test:${receiver.port}/`, {
      lookup,
      allowList: ['127.0.0.1'],
    });
    expect(outcome.statusCode).toBe(200);
    expect(calls).toBe(1);
    expect(receiver.requests).toHaveLength(1);
  });

  it('treats DNS failures as network errors', async () => {
    const outcome = await send('http://nowhere.test/', {
      lookup: async () => {
        throw Object.assign(new Error('getaddrinfo ENOTFOUND nowhere.test'), { code: 'ENOTFOUND' });
      },
    });
    expect(outcome.errorClass).toBe('NETWORK_ERROR');
    expect(outcome.errorMessage).toMatch(/ENOTFOUND/);
  });

  it('refuses plain http when https is required, and other schemes always', async () => {
    const plain = await send(`${receiver.url}/`, { allowList: ['127.0.0.1'], httpsOnly: true });
    expect(plain.errorClass).toBe('SSRF_BLOCKED');
    expect(plain.errorMessage).toMatch(/https/);
    const ftp = await send('ftp://example.com/file');
    expect(ftp.errorClass).toBe('SSRF_BLOCKED');
    expect(receiver.requests).toHaveLength(0);
  });
});
