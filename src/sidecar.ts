// Wires the components in one place; main.ts and the integration tests both start the sidecar through here.

import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { createApp } from './app.js';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import { Connections } from './connections.js';
import { Drain } from './drain.js';
import { createMetrics } from './metrics.js';
import { DrainProxy } from './proxy.js';
import { createServer, listen } from './server.js';
import { Scrapes, Shutdown } from './shutdown.js';
import type { SockDiag } from './sockdiag.js';

export interface SidecarDeps {
  config: Config;
  clock: Clock;
  log: Logger;
  version: string;
  nodeVersion: string;
  /** The sock_diag addon, when it loaded; without it the app's sockets are read from /proc/net/tcp. */
  sockDiag: SockDiag | undefined;
  /** Called once when the sidecar decides to exit; main.ts ends the process. */
  exit: (code: number) => void;
}

export function createSidecar({ config, clock, log, version, nodeVersion, sockDiag, exit }: SidecarDeps) {
  const pollMs = config.pollSeconds * 1000;
  const registry = new Registry();
  const metrics = createMetrics(registry, {
    version,
    nodeVersion,
    appPorts: config.appPorts,
    snapshot: () => connections.current(pollMs),
  });
  // A termination begins with the first hook call of an episode, not with SIGTERM (a native sidecar hears SIGTERM only
  // after the app has exited), and lasts at most a grace period, or until the sidecar exits.
  const inTermination = (): boolean => drain.inTermination() || shutdown.terminating;
  const connections: Connections = new Connections({
    procNetDir: config.procNetDir,
    sockDiag,
    appPorts: config.appPorts,
    ownPort: config.port,
    clock,
    log: log.child({ component: 'connections' }),
    metrics,
    pollMs,
    inTermination,
  });
  const proxy = config.proxyUpstream
    ? new DrainProxy({ upstream: config.proxyUpstream, clock, log: log.child({ component: 'proxy' }), metrics, inTermination })
    : undefined;
  const drain: Drain = new Drain({
    clock,
    metrics,
    log: log.child({ component: 'drain' }),
    gracePeriodSeconds: config.gracePeriodSeconds,
    connections,
    proxy,
  });
  // Keep-alive clients of the proxy are let go by Connection: close on their next answer, not by closing their idle
  // connections: a load balancer may be sending a request on one at that moment, and without a retry it would fail
  // (the drill's proxy scenario lost one request that way, 21 ms into a drain).
  drain.onChange(() => connections.watch());
  const scrapes = new Scrapes();
  const shutdown = new Shutdown({
    clock,
    drain,
    metrics,
    scrapes,
    config,
    log: log.child({ component: 'shutdown' }),
    appStopped: () => !connections.current(pollMs)?.listening,
    exit: (code) => {
      server.close();
      server.closeAllConnections();
      if (proxy) proxy.close();
      exit(code);
    },
  });
  const app = createApp({
    config,
    clock,
    drain,
    connections,
    proxy,
    metrics,
    registry,
    scrapes,
    log: log.child({ component: 'http' }),
    isTerminating: () => shutdown.terminating,
  });
  const server = createServer(app, config.maxHooks);

  if (config.appPorts.length === 0) log.info('no DRAIN_APP_PORTS: the app is not watched; /drain waits its min');
  else connections.current();

  return {
    drain,
    registry,
    server,
    proxy,
    /** Listens on the admin port, and on the proxy port in proxy mode; resolves with the admin address. */
    start: async (): Promise<AddressInfo> => {
      const address = await listen(server, config.port, config.host);
      if (proxy && config.proxyListen) await listen(proxy.server, config.proxyListen.port, config.proxyListen.host);
      return address;
    },
    sigterm: () => {
      shutdown.sigterm();
      connections.watch();
    },
    interrupt: () => shutdown.interrupt(),
    get terminating() {
      return shutdown.terminating;
    },
  };
}
