// Building the HTTP server and listening are separate steps, so tests can bind 127.0.0.1:0.

import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';

// Room above the hook bound for probes, scrapes and the calls that get their 429.
const CONNECTION_HEADROOM = 256;

export function createServer(app: { fetch: Parameters<typeof createAdaptorServer>[0]['fetch'] }, maxHooks: number): Server {
  const server = createAdaptorServer({ fetch: app.fetch }) as Server;
  server.maxConnections = maxHooks + CONNECTION_HEADROOM;
  return server;
}

/** Listens on host:port (all interfaces when host is empty); resolves with the bound address. */
export function listen(server: Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host || undefined, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}
