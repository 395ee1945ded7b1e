// Baseline: a bare graphql-yoga server (the project's yoga version, default options) answering
// `{ __typename }`. Started like the Tripline server, on the server core; prints its URL.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createSchema, createYoga } from 'graphql-yoga';

const yoga = createYoga({ schema: createSchema({ typeDefs: 'type Query { ok: Boolean }' }) });
const server = createServer(yoga);
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`listening on http://127.0.0.1:${port}/graphql\n`);
});
// Exit through process.exit, so `--cpu-prof` writes its profile.
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
