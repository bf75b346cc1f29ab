// Building the HTTP servers and listening are separate steps, so tests can bind 127.0.0.1:0. Every port the sidecar
// opens is bounded here: how many connections it holds, and how long a client may take to send a request head.

import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerOptions,
  type ServerResponse,
} from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { getRequestListener } from '@hono/node-server';

// Room above the hook bound on the admin port for probes, scrapes and the calls that get their 429.
const CONNECTION_HEADROOM = 256;
// A request head arrives in one packet from the kubelet, Prometheus or a load balancer; a slow one is an attack or a
// fault. Checked every second, so a slow client holds a connection at most this long plus one.
export const SERVER_OPTIONS: ServerOptions = {
  headersTimeout: 10_000,
  requestTimeout: 30_000,
  connectionsCheckingInterval: 1_000,
};
// A burst of hook calls (every pod's kubelet on a node at once, a 10,000-hook storm in bench/footprint.mjs) must not
// overflow the accept queue: a dropped SYN is retried only after a second. The kernel caps it at net.core.somaxconn.
export const LISTEN_BACKLOG = 4096;

export type ShedReason = 'evicted_idle' | 'all_busy';

/**
 * Holds at most max connections without letting idle ones lock out new clients. Past max, a new connection closes the
 * one idle longest: no request in progress (never sent one, between keep-alive requests, still trickling its head, or
 * for TLS still in its handshake). Only when every connection has a request in progress (held hooks, tunnels) is the
 * new one closed. Node's own maxConnections would close the new one instead, so a few hundred idle sockets would keep
 * the kubelet's hook out. A connection is known by its peer's address and port, which the TCP socket of the
 * 'connection' event and the TLS socket a request arrives on share.
 */
export function boundConnections(
  server: Server | HttpsServer,
  max: number,
  shed: (reason: ShedReason) => void,
  { tunnels = false }: { tunnels?: boolean } = {},
): { evictable: (socket: Socket) => void } {
  // Insertion order is idle-since order: the first entry has been idle longest.
  const idle = new Map<string, Socket>();
  const busy = new Map<string, Socket>();
  const keyOf = (socket: Socket) => `${socket.remoteAddress}|${socket.remotePort}`;
  const markBusy = (socket: Socket) => {
    const key = keyOf(socket);
    const raw = idle.get(key) ?? busy.get(key);
    if (!raw) return;
    idle.delete(key);
    busy.set(key, raw);
  };
  server.on('connection', (socket: Socket) => {
    // Already reset by its peer: nothing to hold, and no address to know it by.
    if (socket.remoteAddress === undefined) {
      socket.destroy();
      return;
    }
    if (idle.size + busy.size >= max) {
      const oldest = idle.entries().next().value;
      if (!oldest) {
        shed('all_busy');
        socket.destroy();
        return;
      }
      shed('evicted_idle');
      idle.delete(oldest[0]);
      oldest[1].destroy();
    }
    const key = keyOf(socket);
    idle.set(key, socket);
    socket.once('close', () => {
      if (idle.get(key) === socket) idle.delete(key);
      if (busy.get(key) === socket) busy.delete(key);
    });
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const key = keyOf(req.socket);
    markBusy(req.socket);
    res.once('close', () => {
      const raw = busy.get(key);
      if (!raw || raw.destroyed) return;
      busy.delete(key);
      idle.set(key, raw);
    });
  });
  // Only a server that serves tunnels listens for upgrades: with a listener, Node hands the socket over and never sees it
  // again, so on the admin port 320 `Upgrade:` requests, half-closed by their clients, would hold its bound for good.
  // Without one, Node answers such a request as an ordinary one, and the connection stays inside the eviction rule.
  if (tunnels) server.on('upgrade', (req: IncomingMessage) => markBusy(req.socket));
  return {
    /** A request in progress that a new connection may close, as if idle: a hook call held past the bound of hooks. */
    evictable: (socket: Socket) => {
      const key = keyOf(socket);
      const raw = busy.get(key);
      if (!raw) return;
      busy.delete(key);
      idle.set(key, raw);
    },
  };
}

/**
 * The admin server: hono's request listener behind `intercept`, which answers what is not the API's (true when it did:
 * hook calls, and requests no URL can be made of), with the connection bound above the hook bound; evictable marks a
 * held connection a new one may close.
 */
export function createServer(
  app: { fetch: Parameters<typeof getRequestListener>[0] },
  {
    maxHooks,
    shed,
    intercept,
  }: { maxHooks: number; shed: (reason: ShedReason) => void; intercept: (req: IncomingMessage, res: ServerResponse) => boolean },
): { server: Server; evictable: (socket: Socket) => void } {
  const listener = getRequestListener(app.fetch);
  const server = createHttpServer(SERVER_OPTIONS);
  // The bound sees each request before the hooks do, so they can mark its connection evictable at once.
  const bound = boundConnections(server, maxHooks + CONNECTION_HEADROOM, shed);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (!intercept(req, res)) void listener(req, res);
  });
  return { server, ...bound };
}

/** Listens on host:port (all interfaces when host is empty); resolves with the bound address. */
export function listen(server: Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host: host || undefined, backlog: LISTEN_BACKLOG }, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}
