// Wires the components in one place, in the order they depend on each other; main.ts and the integration tests both
// start and stop the sidecar through here.

import type { Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Logger } from 'pino';
import { createApp } from './app.js';
import { type Clock, delay } from './clock.js';
import type { Config } from './config.js';
import { Connections } from './connections.js';
import { Drain } from './drain.js';
import { hookCalls } from './hooks.js';
import { malformedRequests } from './malformed.js';
import { createMetrics } from './metrics.js';
import { Probers } from './probers.js';
import { Registry } from './prom.js';
import type { DrainProxy } from './proxy.js';
import { checkReadiness, OWN_ADDRESS } from './readiness.js';
import { createServer, listen } from './server.js';
import { Scrapes, Shutdown } from './shutdown.js';
import type { SockDiag } from './sockdiag.js';
import { Startup } from './startup.js';
import { Termination } from './termination.js';

// How long the exit waits for the ports to close; the shutdown deadline leaves a second before the kubelet's SIGKILL.
const STOP_BOUND_MS = 500;

export interface SidecarDeps {
  config: Config;
  clock: Clock;
  log: Logger;
  version: string;
  nodeVersion: string;
  /** The sock_diag addon, when it loaded; without it the app's sockets are read from /proc/net/tcp. */
  sockDiag: SockDiag | undefined;
  /** Called once, after stop(), when the sidecar decides to exit; main.ts ends the process. */
  exit: (code: number) => void;
}

export interface Sidecar {
  /** Listens on the admin port, and on the proxy port in proxy mode; resolves with the addresses. */
  start(): Promise<{ admin: AddressInfo; proxy: AddressInfo | undefined }>;
  /** Closes everything start() and the components opened: both servers and their connections, the proxy's upstream
   * sockets, the timers. Idempotent. */
  stop(): Promise<void>;
  sigterm(): void;
  interrupt(): void;
  readonly registry: Registry;
  readonly proxy: DrainProxy | undefined;
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** Wires the sidecar; the proxy's module (with undici) is loaded in proxy mode only, so passive mode does not carry it. */
export async function createSidecar({ config, clock, log, version, nodeVersion, sockDiag, exit }: SidecarDeps): Promise<Sidecar> {
  const pollMs = config.pollSeconds * 1000;
  const { appReadiness } = config;
  const registry = new Registry();
  const metrics = createMetrics(registry, {
    version,
    nodeVersion,
    appPorts: config.appPorts,
    proxy: config.proxyUpstream !== undefined,
    runtime: config.runtimeMetrics,
    minReadySeconds: config.minReadySeconds,
    ...(config.runtimeMetrics === 'full' && {
      collectDefaultMetrics: (await import('prom-client/lib/defaultMetrics.js')).default,
    }),
  });
  const probers = new Probers();
  const termination = new Termination(clock, config.gracePeriodSeconds);
  const inTermination = () => termination.active;
  const connections = new Connections({
    procNetDir: config.procNetDir,
    sockDiag,
    appPorts: config.appPorts,
    ownPort: config.port,
    clock,
    log: log.child({ component: 'connections' }),
    metrics,
    pollMs,
    inTermination,
    probers,
    ownAddress: OWN_ADDRESS,
  });
  const proxy = config.proxyUpstream
    ? new (await import('./proxy.js')).DrainProxy({
        upstream: config.proxyUpstream,
        maxConnections: config.proxyMaxConnections,
        timeoutMs: config.proxyTimeoutSeconds * 1000,
        clock,
        log: log.child({ component: 'proxy' }),
        metrics,
        inTermination,
      })
    : undefined;
  const drain = new Drain({
    clock,
    metrics,
    log: log.child({ component: 'drain' }),
    gracePeriodSeconds: config.gracePeriodSeconds,
    connections,
    proxy,
    termination,
  });
  const startup = new Startup({
    clock,
    log: log.child({ component: 'startup' }),
    metrics,
    connections,
    readiness: appReadiness && (() => checkReadiness(appReadiness, Math.min(1000, pollMs * 5), `drain-sidecar/${version}`)),
    windowSeconds: config.startupWindowSeconds,
    pollMs,
    minReadySeconds: config.minReadySeconds,
  });
  // Keep-alive clients of the proxy are let go by Connection: close on their next answer, not by closing their idle
  // connections: a load balancer may be sending a request on one at that moment, and without a retry it would fail.
  drain.onChange(() => {
    if (termination.active) startup.stop('termination');
    connections.watch();
  });

  // What stop() closes, filled in as each part is made: ports first, then timers.
  const ports: (() => Promise<void>)[] = [];
  const timers: { stop(): void }[] = [startup, connections];
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= Promise.all(ports.map((close) => close())).then(() => {
      for (const t of timers) t.stop();
    });
    return stopping;
  };
  if (proxy) ports.push(() => proxy.close());

  const scrapes = new Scrapes();
  const shutdown = new Shutdown({
    clock,
    drain,
    metrics,
    scrapes,
    config,
    log: log.child({ component: 'shutdown' }),
    appStopped: () => !connections.listening(pollMs),
    // Closing is bounded: the exit must come before the kubelet's SIGKILL even if a connection lingers.
    exit: (code) => void Promise.race([stop(), delay(clock, STOP_BOUND_MS)]).then(() => exit(code)),
  });
  timers.push(shutdown);
  const httpLog = log.child({ component: 'http' });
  // The admin server's bound is made after the hooks it serves; they mark through it the calls they hold past the bound
  // of hooks.
  let evictable = (_socket: Socket): void => {};
  const hooks = hookCalls({
    config,
    clock,
    drain,
    connections,
    proxy,
    metrics,
    log: httpLog,
    evictable: (socket) => evictable(socket),
  });
  const app = createApp({
    config,
    clock,
    drain,
    connections,
    probers,
    startup,
    proxy,
    metrics,
    registry,
    scrapes,
    log: httpLog,
    isTerminating: () => shutdown.terminating,
  });
  const malformed = malformedRequests({ config, drain, metrics, log: httpLog });
  const admin = createServer(app, {
    maxHooks: config.maxHooks,
    shed: (reason) => metrics.shedConnections.inc({ listener: 'admin', reason }),
    // The kubelet probes this port from the address it probes the app from: its connections to the app ports are probes.
    // Learnt before the hooks and the API alike.
    intercept: (req, res) => {
      probers.saw(req.socket.remoteAddress, req.headers['user-agent']);
      return malformed.request(req, res) || hooks.request(req, res);
    },
  });
  const { server } = admin;
  evictable = admin.evictable;
  server.on('clientError', malformed.clientError);
  ports.push(() => close(server));

  if (config.appPorts.length === 0) log.info('no DRAIN_APP_PORTS: the app is not watched; /drain waits its min');
  else connections.poll();
  startup.start();

  return {
    registry,
    proxy,
    start: async () => {
      const admin = await listen(server, config.port, config.host);
      const listenProxy = proxy && config.proxyListen;
      return { admin, proxy: listenProxy ? await listen(proxy.server, listenProxy.port, listenProxy.host) : undefined };
    },
    stop,
    sigterm: () => {
      startup.stop('termination');
      shutdown.sigterm();
      connections.watch();
    },
    interrupt: () => shutdown.interrupt(),
  };
}
