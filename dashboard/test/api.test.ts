import { afterEach, describe, expect, it, vi } from 'vitest';
import { createApi, KEY_REFUSED } from '../src/api';

/** A browser WebSocket the test drives: it never connects, and closes when told. */
class FakeSocket {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  static opened: FakeSocket[] = [];
  readonly protocol: string;
  readyState = FakeSocket.CONNECTING;
  onopen: (() => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((error: unknown) => void) | null = null;
  onmessage: ((event: { data: string }) => void) | null = null;

  constructor(
    readonly url: string,
    protocol: string,
  ) {
    this.protocol = protocol;
    FakeSocket.opened.push(this);
  }

  send(): void {}

  close(code = 1000, reason = ''): void {
    if (this.readyState === FakeSocket.CLOSED) return;
    this.readyState = FakeSocket.CLOSED;
    this.onclose?.({ code, reason });
  }
}

afterEach(() => {
  vi.unstubAllGlobals();
  FakeSocket.opened = [];
});

describe('the API client', () => {
  it('closes without rejecting when its live connection is refused while it is closing', async () => {
    vi.stubGlobal('window', { location: { protocol: 'http:', host: '127.0.0.1:1' } });
    vi.stubGlobal('WebSocket', FakeSocket);
    const refusals: string[] = [];
    const api = createApi('tl_key', (message) => refusals.push(message));
    api.subscribe('subscription { x }', {}, () => {});
    await vi.waitFor(() => expect(FakeSocket.opened).toHaveLength(1));
    const socket = FakeSocket.opened[0]!;
    expect(socket.url).toBe('ws://127.0.0.1:1/graphql');

    // Signing out closes the client while its socket is still connecting; the server then
    // refuses the key. The close must settle, not leave a rejected promise behind.
    const closed = api.close();
    socket.close(4403, 'Forbidden');
    await expect(closed).resolves.toBeUndefined();
    expect(refusals).toEqual([KEY_REFUSED]);
  });
});
