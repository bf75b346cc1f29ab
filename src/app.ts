// The admin HTTP API: probes, metrics and status (hook calls are answered before it, in hooks.ts). Errors are typed and
// turned into JSON answers in one place (onError).

import type { HttpBindings } from '@hono/node-server';
import { type Context, Hono } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { getPath } from 'hono/utils/url';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Clock } from './clock.js';
import { type Config, redactConfig } from './config.js';
import type { Connections } from './connections.js';
import type { Drain } from './drain.js';
import { exposition, type Metrics } from './metrics.js';
import type { Probers } from './probers.js';
import type { DrainProxy } from './proxy.js';
import type { Scrapes } from './shutdown.js';
import type { Startup } from './startup.js';

export class HttpError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    readonly hint: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export interface AppDeps {
  config: Config;
  clock: Clock;
  drain: Drain;
  connections: Connections;
  /** Learns the kubelet's address from its probes of this port. */
  probers: Probers;
  startup: Startup;
  proxy: DrainProxy | undefined;
  metrics: Metrics;
  registry: Registry;
  scrapes: Scrapes;
  log: Logger;
  isTerminating: () => boolean;
}

// Every path of the admin port, the hooks' included: another method on one is answered 405.
const ROUTES = ['/sleep', '/drain', '/observe', '/healthz', '/readyz', '/metrics', '/status'] as const;

type Env = { Bindings: HttpBindings };

export function createApp(deps: AppDeps): Hono<Env> {
  const { config, clock, drain, connections, probers, startup, proxy, metrics, registry, scrapes, log, isTerminating } = deps;
  // Kubelets before 1.26 call a hook's path with two slashes (`//sleep`); so may anything else written for them.
  const app = new Hono<Env>({ getPath: (req) => getPath(req).replace(/^\/{2,}/, '/') });

  app.get('/healthz', (c) => c.json({ status: 'ok' }));

  app.get('/readyz', (c) => (isTerminating() ? c.json({ status: 'terminating' }, 503) : c.json({ status: 'ready' })));

  app.get('/metrics', async (c) => {
    const startedAt = clock.now();
    connections.updateGauges(config.pollSeconds * 1000);
    const { contentType, body } = await exposition(registry, c.req.header('accept'));
    // The final scrape counts once its answer has left in full, not when it was computed; so does the scrape that has
    // seen the first-traffic histogram at zero. A HEAD answer carries no figures, so it is neither.
    const outgoing = c.env?.outgoing;
    if (c.req.method === 'GET') {
      const served = () => {
        scrapes.served(startedAt);
        startup.scraped();
      };
      if (outgoing) outgoing.once('finish', served);
      else served();
    }
    return c.body(body, 200, { 'Content-Type': contentType });
  });

  app.get('/status', (c) => {
    const snapshot = connections.peek(config.pollSeconds * 1000);
    return c.json({
      state: isTerminating() ? 'terminating' : drain.open ? 'draining' : 'serving',
      hooksInProgress: drain.hooksInProgress,
      app: snapshot ? { signal: snapshot.signal, ports: snapshot.ports } : null,
      probes: { kubeletAddresses: probers.addresses, connectionsSeen: connections.probesSeen },
      startup: startup.status(),
      proxy: proxy ? { upstream: config.proxyUpstream, inFlight: proxy.inFlight } : null,
      episode: drain.status(),
      lastEpisode: drain.lastEpisode ?? null,
      config: redactConfig(config),
    });
  });

  for (const path of ROUTES) {
    app.all(path, (c) => {
      metrics.invalidRequests.inc({ reason: 'method_not_allowed' });
      throw new HttpError(405, 'method_not_allowed', `${c.req.method} is not allowed on ${path}`, 'use GET', {
        Allow: 'GET, HEAD',
      });
    });
  }

  app.notFound((c) => {
    metrics.invalidRequests.inc({ reason: 'not_found' });
    return answer(c, new HttpError(404, 'not_found', `no endpoint at this path`, `use one of ${ROUTES.join(', ')}`));
  });

  app.onError((err, c) => {
    if (err instanceof HttpError) return answer(c, err);
    log.error({ err }, 'request failed');
    return answer(c, new HttpError(500, 'internal', 'internal error', 'see the sidecar log'));
  });

  function answer(c: Context<Env>, err: HttpError) {
    const level = err.status >= 500 ? 'error' : 'warn';
    log[level]({ status: err.status, error: err.code, method: c.req.method, path: c.req.path.slice(0, 100) }, 'request refused');
    return c.json({ error: err.code, message: err.message, hint: err.hint }, err.status, err.headers);
  }

  return app;
}
