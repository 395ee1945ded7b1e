import type { IncomingMessage, Server } from 'node:http';
import {
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  GraphQLError,
  getOperationAST,
} from 'graphql';
import {
  CloseCode,
  GRAPHQL_TRANSPORT_WS_PROTOCOL,
  handleProtocols,
  type Message,
  MessageType,
  parseMessage,
  type SubscribeMessage,
  stringifyMessage,
} from 'graphql-ws';
import type { YogaServerInstance } from 'graphql-yoga';
import { type WebSocket, WebSocketServer } from 'ws';
import type { Context } from '../context.js';
import type { Logger } from '../logger.js';
import type { SubscriptionHub } from './hub.js';
import { shareKey } from './key.js';

export interface GraphQLWebSocketOptions {
  server: Server;
  /** The path WebSocket upgrades are accepted on; other paths are left alone. */
  path: string;
  /** Largest message a client may send, in bytes. */
  maxPayload: number;
  /** Parses, validates, builds the context and executes, with the same plugins as HTTP. */
  yoga: YogaServerInstance<Record<string, unknown>, Context>;
  hub: SubscriptionHub;
  logger: Logger;
  /** Whether a connection may go on, given its `connection_init` payload and upgrade request. */
  connect(initial: ConnectionContext): Promise<boolean>;
  /** Between pings; a client that has not answered the last one by the next is dropped. */
  keepAliveMs?: number;
  /** How long a client has to send `connection_init` after connecting. */
  connectionInitWaitMs?: number;
  /** Told when a subscription starts listening and when it ends (the subscriber gauge). */
  subscribers?: { joined(): void; left(): void };
}

/** What the request context is built from: the same shape as graphql-ws's server context. */
export interface ConnectionContext {
  connectionParams?: Record<string, unknown>;
  extra: { socket: WebSocket; request: IncomingMessage };
}

export interface GraphQLWebSocketServer {
  /** Closes every connection with 1001 and stops accepting new ones. */
  close(): Promise<void>;
}

interface Connection extends ConnectionContext {
  initReceived: boolean;
  acknowledged: boolean;
  /** Operations in progress by id; `stop` ends one early (client `complete`, socket closed). */
  operations: Map<string, { stop(): void }>;
  /** Whether the client answered the last ping. */
  alive: boolean;
  /** Frames to write at the end of this turn of the event loop, in order. */
  outbox: (Buffer | string)[];
}

/** The start of every `next` frame of subscription `id`, to which its JSON payload and `}` add. */
const nextFramePrefix = (id: string) => `{"id":${JSON.stringify(id)},"type":"next","payload":`;

/**
 * Serves GraphQL over WebSocket with the graphql-transport-ws protocol (graphql-ws's), on the
 * upgrades of `server` to `path`. Queries and mutations run as over HTTP. Subscriptions go
 * through the hub: subscribers of one document, variables and viewer access share one execution,
 * and each update is serialised once, its `next` frame built once per distinct operation id, and
 * written to every socket of the group.
 *
 * Protocol details follow graphql-ws 6 (its message validation is reused): close codes 4400 on an
 * invalid message, 4401 on `subscribe` before acknowledgement, 4403 when `connect` refuses, 4406
 * without the subprotocol, 4408 when `connection_init` is late, 4409 on a reused operation id,
 * 4429 on a second `connection_init`, 4500 when the server fails; 1001 when the server stops.
 */
export function serveGraphQLOverWebSocket(
  options: GraphQLWebSocketOptions,
): GraphQLWebSocketServer {
  const { yoga, hub, logger } = options;
  const keepAliveMs = options.keepAliveMs ?? 12_000;
  const connectionInitWaitMs = options.connectionInitWaitMs ?? 3_000;
  const wss = new WebSocketServer({
    server: options.server,
    path: options.path,
    maxPayload: options.maxPayload,
    handleProtocols,
  });
  const connections = new Map<WebSocket, Connection>();

  // One timer for every connection rather than one each: a thousand subscribers are cheap.
  const heartbeat = setInterval(() => {
    for (const [socket, connection] of connections) {
      if (!connection.alive) {
        socket.terminate();
        continue;
      }
      connection.alive = false;
      socket.ping();
    }
  }, keepAliveMs);
  heartbeat.unref();

  /** Frames shared by the subscribers of one update: one per distinct operation id. */
  let framesOf: string | undefined;
  const frames = new Map<string, Buffer>();
  const nextFrame = (prefix: string, json: string): Buffer => {
    if (json !== framesOf) {
      framesOf = json;
      frames.clear();
    }
    let frame = frames.get(prefix);
    if (!frame) {
      frame = Buffer.from(`${prefix}${json}}`);
      frames.set(prefix, frame);
    }
    return frame;
  };

  /*
   * Frames are written once per turn of the event loop: a connection that got several in one
   * turn (busy emitters, several of its subscriptions updated) has them written with one system
   * call rather than one each. Every message of a connection goes through its outbox, so they
   * keep their order.
   */
  const pending = new Set<Connection>();
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    for (const connection of pending) {
      const { socket, request } = connection.extra;
      const frames = connection.outbox;
      connection.outbox = [];
      if (socket.readyState !== socket.OPEN) continue;
      // `ws` writes each frame to this socket; corked, they leave together.
      request.socket.cork();
      for (const frame of frames) socket.send(frame, TEXT);
      request.socket.uncork();
    }
    pending.clear();
  };
  const enqueue = (connection: Connection, frame: Buffer | string) => {
    connection.outbox.push(frame);
    pending.add(connection);
    if (scheduled) return;
    scheduled = true;
    setImmediate(flush);
  };
  const send = (connection: Connection, message: Message) =>
    enqueue(connection, stringifyMessage(message));

  const fail = (socket: WebSocket, error: unknown) => {
    logger.error({ err: error }, 'graphql-ws: failed to handle a message');
    socket.close(CloseCode.InternalServerError, 'Internal server error');
  };

  async function subscribe(connection: Connection, message: SubscribeMessage): Promise<void> {
    const { socket } = connection.extra;
    if (!connection.acknowledged) return socket.close(CloseCode.Unauthorized, 'Unauthorized');
    const { id, payload } = message;
    if (connection.operations.has(id)) {
      return socket.close(CloseCode.SubscriberAlreadyExists, `Subscriber for ${id} already exists`);
    }
    const operation = { stop: () => {} };
    connection.operations.set(id, operation);
    const current = () => connection.operations.get(id) === operation;
    let uncount = () => {};
    const finish = (result?: ExecutionResult | readonly GraphQLError[]) => {
      if (!current()) return;
      uncount();
      connection.operations.delete(id);
      if (Array.isArray(result)) {
        send(connection, { id, type: MessageType.Error, payload: result.map((e) => e.toJSON()) });
        return;
      }
      if (result) send(connection, { id, type: MessageType.Next, payload: result as never });
      send(connection, { id, type: MessageType.Complete });
    };

    const enveloped = yoga.getEnveloped({
      connectionParams: connection.connectionParams,
      extra: connection.extra,
      req: connection.extra.request,
      socket,
      params: payload,
    });
    let document: DocumentNode;
    let contextValue: unknown;
    try {
      document = enveloped.parse(payload.query);
      contextValue = await enveloped.contextFactory();
    } catch (error) {
      // A syntax error, a parse-time limit or a key revoked since the connection started is the
      // client's: answer it, keep the socket.
      if (error instanceof GraphQLError) return finish([error]);
      throw error;
    }
    const args: ExecutionArgs = {
      schema: enveloped.schema,
      operationName: payload.operationName ?? null,
      document,
      variableValues: payload.variables ?? null,
      contextValue,
    };
    const errors = enveloped.validate(args.schema, args.document);
    if (errors.length > 0) return finish(errors);
    const ast = getOperationAST(document, args.operationName);
    if (!ast) return finish([new GraphQLError('Unable to identify operation')]);
    if (!current()) return;

    if (ast.operation !== 'subscription') return finish(await enveloped.execute(args));

    const prefix = nextFramePrefix(id);
    const membership = hub.join(
      shareKey(payload, args.contextValue as Context),
      async () => enveloped.subscribe(args),
      {
        next: (json) => {
          enqueue(connection, nextFrame(prefix, json));
        },
        end: (error) =>
          finish(
            error === undefined
              ? undefined
              : [
                  new GraphQLError(
                    error instanceof GraphQLError ? error.message : 'Unexpected error.',
                  ),
                ],
          ),
      },
    );
    operation.stop = membership.leave;
    const refused = await membership.ready;
    if (refused) return finish(refused);
    if (!current() || !options.subscribers) return;
    const { subscribers } = options;
    subscribers.joined();
    // Counted out once: when the client completes it, the socket closes or the stream ends.
    uncount = () => {
      uncount = () => {};
      subscribers.left();
    };
    operation.stop = () => {
      uncount();
      membership.leave();
    };
  }

  async function receive(connection: Connection, data: string): Promise<void> {
    const { socket } = connection.extra;
    let message: Message;
    try {
      message = parseMessage(data);
    } catch {
      return socket.close(CloseCode.BadRequest, 'Invalid message received');
    }
    switch (message.type) {
      case MessageType.ConnectionInit: {
        if (connection.initReceived) {
          return socket.close(
            CloseCode.TooManyInitialisationRequests,
            'Too many initialisation requests',
          );
        }
        connection.initReceived = true;
        if (isObject(message.payload)) connection.connectionParams = message.payload;
        if (!(await options.connect(connection))) {
          return socket.close(CloseCode.Forbidden, 'Forbidden');
        }
        connection.acknowledged = true;
        return send(connection, { type: MessageType.ConnectionAck });
      }
      case MessageType.Ping:
        return send(
          connection,
          message.payload
            ? { type: MessageType.Pong, payload: message.payload }
            : { type: MessageType.Pong },
        );
      case MessageType.Pong:
        return;
      case MessageType.Subscribe:
        return subscribe(connection, message);
      case MessageType.Complete: {
        const operation = connection.operations.get(message.id);
        connection.operations.delete(message.id);
        operation?.stop();
        return;
      }
      default:
        throw new Error(`Unexpected message of type ${message.type} received`);
    }
  }

  wss.on('connection', (socket, request) => {
    const connection: Connection = {
      extra: { socket, request },
      initReceived: false,
      acknowledged: false,
      operations: new Map(),
      alive: true,
      outbox: [],
    };
    if (socket.protocol !== GRAPHQL_TRANSPORT_WS_PROTOCOL) {
      socket.close(CloseCode.SubprotocolNotAcceptable, 'Subprotocol not acceptable');
      return;
    }
    connections.set(socket, connection);
    const initWait = setTimeout(() => {
      if (!connection.initReceived) {
        socket.close(
          CloseCode.ConnectionInitialisationTimeout,
          'Connection initialisation timeout',
        );
      }
    }, connectionInitWaitMs);
    socket.on('pong', () => {
      connection.alive = true;
    });
    socket.on('message', (data) => {
      receive(connection, String(data)).catch((error: unknown) => fail(socket, error));
    });
    // A frame too large or malformed: `ws` closes with the right code (1009, 1002) itself.
    socket.on('error', (error) =>
      logger.debug({ err: error }, 'graphql-ws: a client broke the protocol'),
    );
    socket.once('close', () => {
      clearTimeout(initWait);
      connections.delete(socket);
      const operations = [...connection.operations.values()];
      connection.operations.clear();
      for (const operation of operations) operation.stop();
    });
  });

  return {
    async close() {
      clearInterval(heartbeat);
      for (const socket of wss.clients) socket.close(1001, 'Server stopping');
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

/** `ws` sends a Buffer as a binary frame unless told otherwise; graphql-ws frames are text. */
const TEXT = { binary: false } as const;

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);
