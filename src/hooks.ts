// The hook endpoints: /sleep, /drain, /observe, and a typo of one of them. They are answered on Node's request and
// response, before the API framework sees them: a call is held for seconds, and a held call should cost its socket, a
// timer and its answer, not a web Request, a framework context and their async frames as well (bench/burst.mjs has
// the figures). A hook call with a typo must still protect the pod: it is held like a malformed call, then told what was
// wrong.

import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { HttpError } from './app.js';
import { type Clock, delay } from './clock.js';
import type { Config } from './config.js';
import type { Connections } from './connections.js';
import { type Drain, type IdleRule, idleRule } from './drain.js';
import { HOOK_ENDPOINTS, type HookEndpoint, type Metrics } from './metrics.js';
import { hookUrl, parseDrainParams, parseSleepParams } from './params.js';
import type { DrainProxy } from './proxy.js';

export interface HookDeps {
  config: Config;
  clock: Clock;
  drain: Drain;
  connections: Connections;
  proxy: DrainProxy | undefined;
  metrics: Metrics;
  log: Logger;
  /** Marks a held connection one a new connection may close (see boundConnections). */
  evictable: (socket: Socket) => void;
}

const ENDPOINTS = new Map<string, HookEndpoint>(HOOK_ENDPOINTS.map((endpoint) => [`/${endpoint}`, endpoint]));
const USER_AGENT_MAX = 64;

const sha256 = (s: string) => createHash('sha256').update(s).digest();

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
 * DRAIN_MAX_HOOKS), already counted, or undefined. For well-formed hook calls and those the HTTP parser rejected alike.
 */
export function hookAdmission({ config, drain }: Pick<HookDeps, 'config' | 'drain'>) {
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
function hookTypo(pathname: string): HookEndpoint | undefined {
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

/** A path as the API's router reads it: percent-escapes decoded where they are valid. */
function decodedPath(pathname: string): string {
  try {
    return decodeURI(pathname);
  } catch {
    return pathname;
  }
}

/**
 * The hook a request is for: GET or HEAD on an endpoint's path as the API's router would read it (leading slashes
 * collapsed, dot segments resolved, percent-escapes decoded), or a GET on a typo of one (meant). Undefined for what the
 * API answers: its own paths, other methods (405 on a hook's path), and other paths (404).
 */
export function hookRoute(
  method: string | undefined,
  target: string,
): { endpoint: HookEndpoint; path: string; query: URLSearchParams; meant: boolean } | undefined {
  if (method !== 'GET' && method !== 'HEAD') return undefined;
  let url: URL;
  try {
    url = hookUrl(target);
  } catch {
    return undefined;
  }
  const path = decodedPath(url.pathname);
  const exact = ENDPOINTS.get(path);
  // No path of the API is a typo of a hook's, so what hookTypo finds is no endpoint the API would serve.
  const endpoint = exact ?? (method === 'GET' ? hookTypo(url.pathname) : undefined);
  return endpoint && { endpoint, path, query: url.searchParams, meant: exact === undefined };
}

/** What a hook call asks for, after parsing: problems and clamping are reported, and the pod is held anyway. */
interface HookPlan {
  ms: number;
  clamped: boolean;
  problems: string[];
  requested: Record<string, number | null>;
  idle?: IdleRule;
  /** What a malformed call was held for instead, and how to write it. */
  fallback: string;
  /** The answer's figures besides the hold's, read when it ends. */
  figures?: () => object;
}

/** A hook call in progress: what it answers on, and what its log lines and answer name. */
interface Call {
  req: IncomingMessage;
  res: ServerResponse;
  endpoint: HookEndpoint;
  /** The path, decoded; the query is read once, when the call is planned. */
  path: string;
  userAgent: string | undefined;
}

const INTERNAL = { error: 'internal', message: 'internal error', hint: 'see the sidecar log' };

function send(res: ServerResponse, status: number, body: object, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function hookCalls(deps: HookDeps) {
  const { config, clock, drain, connections, proxy, metrics, log } = deps;
  const admit = hookAdmission(deps);
  // What a malformed call or a typo is held for instead, and how to write it; made once, as the configuration is fixed.
  const { defaultSleepSeconds: sleepS, drainMinSeconds: minS, drainQuietSeconds: quietS } = config;
  const sleepFallback = `the default ${sleepS}s, e.g. /sleep?s=20`;
  const fallback = {
    sleep: sleepFallback,
    drain: `the defaults (min ${minS}s, max ${sleepS}s, quiet ${quietS}s), e.g. /drain?min=5&max=20&quiet=3`,
    typo: { sleep: sleepFallback, drain: `the default ${sleepS}s, e.g. /drain?max=20`, observe: '' },
  };

  /** A fault is answered 500 as the API answers one, whether it is thrown as the call comes or when its hold ends. */
  const fail = (res: ServerResponse, err: unknown) => {
    log.error({ err }, 'request failed');
    if (!res.headersSent) send(res, 500, INTERNAL);
  };

  const refuse = (call: Call, err: HttpError) => {
    log.warn({ status: err.status, error: err.code, method: call.req.method, path: call.path.slice(0, 100) }, 'request refused');
    send(call.res, err.status, { error: err.code, message: err.message, hint: err.hint }, err.headers);
  };

  /**
   * A call past the bound of hooks still protects the pod where it can: it is held as long as a malformed call (a socket
   * and a timer, not a slot; its connection one a new client may close), then answered 429.
   */
  const holdRefused = async (call: Call, refusal: HttpError) => {
    try {
      deps.evictable(call.req.socket);
      const ms = Math.min(config.defaultSleepSeconds, config.gracePeriodSeconds) * 1000;
      await delay(clock, ms, call.res);
      const held = `held ${ms / 1000}s first, as a malformed call is; ${refusal.hint}`;
      refuse(call, new HttpError(refusal.status, refusal.code, refusal.message, held, refusal.headers));
    } catch (err) {
      fail(call.res, err);
    }
  };

  const hold = async (call: Call, plan: HookPlan, status: number) => {
    const { endpoint, userAgent, res } = call;
    try {
      const malformed = plan.problems.length > 0;
      if (malformed)
        log.error(
          { endpoint, userAgent, problems: plan.problems, holdingSeconds: plan.ms / 1000 },
          'malformed hook call; holding the default',
        );
      if (plan.clamped)
        log.warn(
          { endpoint, userAgent, requested: plan.requested, maxSleepSeconds: config.maxSleepSeconds },
          'hook wait clamped',
        );

      const result = await drain.hold({
        endpoint,
        ms: plan.ms,
        gone: res,
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
        ...plan.figures?.(),
      };
      if (!malformed) return send(res, status, body);
      const hint = `the pod was held for ${plan.fallback} anyway; fix the hook path`;
      send(res, status === 200 ? 400 : status, { error: 'bad_request', message: plan.problems.join('; '), hint, ...body });
    } catch (err) {
      fail(res, err);
    }
  };

  const sleep = (query: URLSearchParams): HookPlan => {
    const p = parseSleepParams(query, config);
    return {
      ms: p.seconds * 1000,
      clamped: p.clamped,
      problems: p.problems,
      requested: { s: p.requestedSeconds ?? null },
      fallback: fallback.sleep,
    };
  };

  const drainPlan = (query: URLSearchParams): HookPlan => {
    const p = parseDrainParams(query, config);
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
    return {
      ms: (idle ? p.maxSeconds : p.minSeconds) * 1000,
      clamped: p.clamped,
      problems: p.problems,
      requested: { min: p.requested.min ?? null, max: p.requested.max ?? null, quiet: p.requested.quiet ?? null },
      idle,
      fallback: fallback.drain,
      figures: () => ({
        minSeconds: p.minSeconds,
        maxSeconds: p.maxSeconds,
        quietSeconds: p.quietSeconds,
        tracking: idle !== undefined,
        ...traffic?.(),
        ...(requests && { requests: requests() }),
      }),
    };
  };

  // The sidecar container's own preStop hook, when something else holds the app: every container's hook starts as the
  // termination does, so this call marks its start; it is held until the app's listeners are gone (the app exited after
  // its own hook and shutdown), at most a grace period, and answered with what the traffic did meanwhile. Undefined
  // when there is nothing to observe: then it is answered at once.
  const observe = (): HookPlan | undefined => {
    const traffic = connections.traffic(clock.now());
    if (!traffic) return undefined;
    const pollMs = config.pollSeconds * 1000;
    const idle = { minMs: 0, pollMs, isIdle: () => !connections.listening(pollMs), reason: 'app_stopped' as const };
    const figures = () => ({ watching: true, ...traffic() });
    return { ms: config.gracePeriodSeconds * 1000, clamped: false, problems: [], requested: {}, idle, fallback: '', figures };
  };

  // A typo in the hook's path is the likeliest one (`/sleep/`, `/SLEEP`, `/%2fsleep`, `/slep`): held for the default
  // like a malformed call, so that it still protects the pod, then answered 404 with what was meant.
  const typo = ({ endpoint, path }: Call): HookPlan => ({
    ms: config.defaultSleepSeconds * 1000,
    clamped: false,
    problems: [`no endpoint at ${path.slice(0, 100)}; the hook endpoint is /${endpoint}`],
    requested: {},
    fallback: fallback.typo[endpoint],
  });

  /** Admits a call and holds it, or refuses it. Synchronous up to the hold; a fault there throws. */
  const serve = (call: Call, query: URLSearchParams, meant: boolean): void => {
    if (meant) metrics.invalidRequests.inc({ reason: 'not_found' });
    const refusal = admit(call.endpoint, call.req.headers.authorization);
    if (refusal) {
      if (refusal.status === 429) void holdRefused(call, refusal);
      else refuse(call, refusal);
      return;
    }
    const plan = meant
      ? typo(call)
      : call.endpoint === 'sleep'
        ? sleep(query)
        : call.endpoint === 'drain'
          ? drainPlan(query)
          : observe();
    if (plan) {
      void hold(call, plan, meant ? 404 : 200);
      return;
    }
    log.warn({ endpoint: 'observe' }, 'observe call with nothing to observe');
    send(call.res, 200, {
      endpoint: 'observe',
      watching: false,
      message: 'the app is not watched: no DRAIN_APP_PORTS, or no readable socket tables',
      hint: 'set DRAIN_APP_PORTS to the ports the app listens on',
    });
  };

  return {
    /** Answers a hook call (true), or leaves the request to the API (false): another path, or a method hooks do not use. */
    request(req: IncomingMessage, res: ServerResponse): boolean {
      const route = hookRoute(req.method, req.url ?? '/');
      if (!route) return false;
      const { endpoint, path, query, meant } = route;
      const userAgent = req.headers['user-agent']?.slice(0, USER_AGENT_MAX);
      try {
        serve({ req, res, endpoint, path, userAgent }, query, meant);
      } catch (err) {
        fail(res, err);
      }
      return true;
    },
  };
}
