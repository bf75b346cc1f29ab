// Wires the components in one place; main.ts and the integration tests both start the sidecar through here.

import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { createApp } from './app.js';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import { Drain } from './drain.js';
import { createMetrics } from './metrics.js';
import { createServer, listen } from './server.js';
import { Scrapes, Shutdown } from './shutdown.js';

export interface SidecarDeps {
  config: Config;
  clock: Clock;
  log: Logger;
  version: string;
  /** Called once when the sidecar decides to exit; main.ts ends the process. */
  exit: (code: number) => void;
}

export function createSidecar({ config, clock, log, version, exit }: SidecarDeps) {
  const registry = new Registry();
  const metrics = createMetrics(registry, { version, nodeVersion: process.version });
  const drain = new Drain({
    clock,
    metrics,
    log: log.child({ component: 'drain' }),
    gracePeriodSeconds: config.gracePeriodSeconds,
  });
  const scrapes = new Scrapes();
  const shutdown = new Shutdown({
    clock,
    drain,
    metrics,
    scrapes,
    config,
    log: log.child({ component: 'shutdown' }),
    appStopped: () => true,
    exit: (code) => {
      server.close();
      server.closeAllConnections();
      exit(code);
    },
  });
  const app = createApp({
    config,
    clock,
    drain,
    metrics,
    registry,
    scrapes,
    log: log.child({ component: 'http' }),
    isTerminating: () => shutdown.terminating,
  });
  const server = createServer(app, config.maxHooks);

  return {
    drain,
    shutdown,
    registry,
    server,
    start: (): Promise<AddressInfo> => listen(server, config.port, config.host),
  };
}
