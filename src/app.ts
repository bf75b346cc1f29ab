// The admin HTTP API: hook calls, probes, metrics and status. Errors are typed and turned into JSON answers in one place
// (onError).

import { createHash, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import type { HttpBindings } from '@hono/node-server';
import { type Context, Hono } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { getPath } from 'hono/utils/url';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { type Clock, delay } from './clock.js';
import { type Config, redactConfig } from './config.js';
import type { Connections } from './connections.js';
import { type Drain, idleRule } from './drain.js';
import { exposition, type HookEndpoint, type Metrics } from './metrics.js';
import { parseDrainParams, parseSleepParams } from './params.js';
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
  /** Marks a held connection one a new connection may close (see boundConnections). */
  evictable?: (socket: Socket) => void;
}

const ROUTES = ['/sleep', '/drain', '/observe', '/healthz', '/readyz', '/metrics', '/status'] as const;
const USER_AGENT_MAX = 64;

const sha256 = (s: string) => createHash('sha256').update(s).digest();

type Env = { Bindings: HttpBindings };

/** Whether an Authorization header value carries the hook token; always true when no token is configured. */
function tokenCheck(token: string): (authorization: string | undefined) => boolean {
  if (!token) return () => true;
  const digest = sha256(token);
  return (authorization) => {
    const given = /^Bearer (.+)$/.exec(authorization ?? '')?.[1];
    return given !== undefined && timingSafeEqual(sha256(given), digest);
  };
}

/**
 * A hook call's admission, before anything is held or any state changes: the refusal (401 without the token, 429 past
 * DRAIN_MAX_HOOKS), already counted, or undefined. For the API and for hook calls the HTTP parser rejected alike.
 */
export function hookAdmission({ config, drain }: Pick<AppDeps, 'config' | 'drain'>) {
  const authorized = tokenCheck(config.hookToken);
  return (endpoint: HookEndpoint, authorization: string | undefined): HttpError | undefined => {
    if (!authorized(authorization)) {
      drain.refuse(endpoint, 'unauthorized');
      return new HttpError(
        401,
        'unauthorized',
        `/${endpoint} needs the hook token`,
        'send "Authorization: Bearer <DRAIN_HOOK_TOKEN>" via lifecycle.preStop.httpGet.httpHeaders',
        { 'WWW-Authenticate': 'Bearer' },
      );
    }
    if (drain.hooksInProgress >= config.maxHooks) {
      drain.refuse(endpoint, 'rejected_busy');
      return new HttpError(
        429,
        'too_many_hooks',
        `${drain.hooksInProgress} hook calls are already held (DRAIN_MAX_HOOKS=${config.maxHooks})`,
        'retry later, or raise DRAIN_MAX_HOOKS if this many concurrent hook calls are expected',
      );
    }
    return undefined;
  };
}

/** The hook endpoint a path not found was likely meant for: the same name but for case, slashes or an escape, or one
 * letter off. */
export function hookTypo(pathname: string): HookEndpoint | undefined {
  let name: string;
  try {
    name = decodeURIComponent(pathname);
  } catch {
    name = pathname;
  }
  name = name.toLowerCase().replace(/^[/\\]+|[/\\]+$/g, '');
  return (['sleep', 'drain'] as const).find((endpoint) => withinOneEdit(name, endpoint));
}

function withinOneEdit(a: string, b: string): boolean {
  if (Math.abs(a.length - b.length) > 1) return false;
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  // One substitution, insertion, deletion or swap of neighbours after the common start.
  const rest = (x: string, y: string) => x === y;
  return (
    rest(a.slice(i + 1), b.slice(i + 1)) ||
    rest(a.slice(i), b.slice(i + 1)) ||
    rest(a.slice(i + 1), b.slice(i)) ||
    (a[i] === b[i + 1] && a[i + 1] === b[i] && rest(a.slice(i + 2), b.slice(i + 2)))
  );
}

export function createApp(deps: AppDeps): Hono<Env> {
  const { config, clock, drain, connections, probers, startup, proxy, metrics, registry, scrapes, log, isTerminating } = deps;
  const admit = hookAdmission(deps);

  // Kubelets before 1.26 call `//sleep?s=20`.
  const app = new Hono<Env>({ getPath: (req) => getPath(req).replace(/^\/{2,}/, '/') });

  /**
   * A call past the bound of hooks still protects the pod where it can: it is held as long as a malformed call (a
   * socket and a timer, not a slot; its connection one a new client may close), then answered 429.
   */
  const admitHook = async (c: Context<Env>, endpoint: HookEndpoint) => {
    const refusal = admit(endpoint, c.req.header('authorization'));
    if (!refusal) return;
    if (refusal.status === 429) {
      const socket = c.env?.incoming?.socket;
      if (socket) deps.evictable?.(socket);
      const ms = Math.min(config.defaultSleepSeconds, config.gracePeriodSeconds) * 1000;
      await delay(clock, ms, c.req.raw.signal);
      const held = `held ${ms / 1000}s first, as a malformed call is; ${refusal.hint}`;
      throw new HttpError(refusal.status, refusal.code, refusal.message, held, refusal.headers);
    }
    throw refusal;
  };

  /** What a hook call asks for, after parsing: problems and clamping are reported, and the pod is held anyway. */
  interface HookPlan {
    ms: number;
    clamped: boolean;
    problems: string[];
    requested: Record<string, number | null>;
    idle?: ReturnType<typeof idleRule>;
    /** What a malformed call was held for instead, and how to write it. */
    fallback: string;
  }

  const holdHook = async (c: Context<Env>, endpoint: HookEndpoint, plan: HookPlan, figures: () => object) => {
    const userAgent = c.req.header('user-agent')?.slice(0, USER_AGENT_MAX);
    const malformed = plan.problems.length > 0;
    if (malformed)
      log.error(
        { endpoint, userAgent, problems: plan.problems, holdingSeconds: plan.ms / 1000 },
        'malformed hook call; holding the default',
      );
    if (plan.clamped)
      log.warn({ endpoint, userAgent, requested: plan.requested, maxSleepSeconds: config.maxSleepSeconds }, 'hook wait clamped');

    const result = await drain.hold({
      endpoint,
      ms: plan.ms,
      signal: c.req.raw.signal,
      malformed,
      clamped: plan.clamped,
      userAgent,
      idle: plan.idle,
    });
    const body = {
      endpoint,
      episode: result.episode,
      reason: result.reason,
      heldSeconds: result.waitedSeconds,
      ...(result.appStoppedSeconds !== undefined && { appStoppedSeconds: result.appStoppedSeconds }),
      requested: plan.requested,
      clamped: plan.clamped,
      ...figures(),
    };
    if (!malformed) return c.json(body);
    const hint = `the pod was held for ${plan.fallback} anyway; fix the hook path`;
    return c.json({ error: 'bad_request', message: plan.problems.join('; '), hint, ...body }, 400);
  };

  app.get('/sleep', async (c) => {
    await admitHook(c, 'sleep');
    const p = parseSleepParams(new URL(c.req.url).searchParams, config);
    const plan = {
      ms: p.seconds * 1000,
      clamped: p.clamped,
      problems: p.problems,
      requested: { s: p.requestedSeconds ?? null },
      fallback: `the default ${config.defaultSleepSeconds}s, e.g. /sleep?s=20`,
    };
    return holdHook(c, 'sleep', plan, () => ({}));
  });

  app.get('/drain', async (c) => {
    await admitHook(c, 'drain');
    const p = parseDrainParams(new URL(c.req.url).searchParams, config);
    const start = clock.now();
    const traffic = connections.traffic(start);
    const requests = proxy?.traffic(start);
    const idle = idleRule({
      clock,
      startedAt: start,
      minSeconds: p.minSeconds,
      quietSeconds: p.quietSeconds,
      pollMs: config.pollSeconds * 1000,
      proxy,
      connections: traffic && connections,
    });
    const plan = {
      ms: (idle ? p.maxSeconds : p.minSeconds) * 1000,
      clamped: p.clamped,
      problems: p.problems,
      requested: { min: p.requested.min ?? null, max: p.requested.max ?? null, quiet: p.requested.quiet ?? null },
      idle,
      fallback: `the defaults (min ${config.drainMinSeconds}s, max ${config.defaultSleepSeconds}s, quiet ${config.drainQuietSeconds}s), e.g. /drain?min=5&max=20&quiet=3`,
    };
    return holdHook(c, 'drain', plan, () => ({
      minSeconds: p.minSeconds,
      maxSeconds: p.maxSeconds,
      quietSeconds: p.quietSeconds,
      tracking: idle !== undefined,
      ...traffic?.(),
      ...(requests && { requests: requests() }),
    }));
  });

  // The sidecar container's own preStop hook, when something else holds the app: every container's hook starts as the
  // termination does, so this call marks its start; it is held until the app's listeners are gone (the app exited after
  // its own hook and shutdown), at most a grace period, and answered with what the traffic did meanwhile.
  app.get('/observe', async (c) => {
    await admitHook(c, 'observe');
    const start = clock.now();
    const traffic = connections.traffic(start);
    const pollMs = config.pollSeconds * 1000;
    if (!traffic) {
      log.warn({ endpoint: 'observe' }, 'observe call with nothing to observe');
      return c.json({
        endpoint: 'observe',
        watching: false,
        message: 'the app is not watched: no DRAIN_APP_PORTS, or no readable socket tables',
        hint: 'set DRAIN_APP_PORTS to the ports the app listens on',
      });
    }
    const idle = { minMs: 0, pollMs, isIdle: () => !connections.listening(pollMs), reason: 'app_stopped' as const };
    const plan = { ms: config.gracePeriodSeconds * 1000, clamped: false, problems: [], requested: {}, idle, fallback: '' };
    return holdHook(c, 'observe', plan, () => ({ watching: true, ...traffic() }));
  });

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

  app.notFound(async (c) => {
    metrics.invalidRequests.inc({ reason: 'not_found' });
    // A typo in the hook's path is the likeliest one (`/sleep/`, `/SLEEP`, `/%2fsleep`, `/slep`): held for the default
    // like a malformed call, so that it still protects the pod, then answered 404 with what was meant.
    const meant = c.req.method === 'GET' ? hookTypo(new URL(c.req.url).pathname) : undefined;
    if (meant) {
      await admitHook(c, meant);
      const plan = {
        ms: config.defaultSleepSeconds * 1000,
        clamped: false,
        problems: [`no endpoint at ${c.req.path.slice(0, 100)}; the hook endpoint is /${meant}`],
        requested: {},
        fallback: `the default ${config.defaultSleepSeconds}s, e.g. /${meant}${meant === 'sleep' ? '?s=20' : '?max=20'}`,
      };
      const held = await holdHook(c, meant, plan, () => ({}));
      return new Response(held.body, { status: 404, headers: held.headers });
    }
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
