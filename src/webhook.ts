// `drain-sidecar webhook`: a mutating admission webhook that injects the sidecar into new pods that opt in with the label
// drain-sidecar.dev/inject: "true", through the same core as `drain-sidecar inject` (src/inject.ts). It never blocks a
// pod: what it cannot inject is allowed unchanged, with the reason in the answer's warnings (kubectl prints them).

import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import { type Context, Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { Logger } from 'pino';
import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';
import { type Edit, IMAGE, type InjectOptions, inject, MODES, type Mode, type ServiceInfo, type Workload } from './inject.js';
import { exposition, METRIC_PREFIX } from './metrics.js';
import { boundConnections, listen } from './server.js';

export const OPT_IN_LABEL = 'drain-sidecar.dev/inject';
// A Pod object stays far below this (etcd refuses objects above 1.5 MiB); the API server sends the pod and its old copy.
const MAX_BODY_BYTES = 3 * 1024 * 1024;
// Reviews in progress at once; the API server retries nothing, so a refusal here means a pod without the sidecar.
const MAX_CONCURRENT_REVIEWS = 256;
// Bytes of reviews in progress at once: a review parsed takes several times its size, so 64 reviews of 3 MiB would take
// the webhook past its memory limit. Typical pods are a few KiB, so this bound is met only by outsized ones.
const MAX_BYTES_IN_FLIGHT = 4 * 1024 * 1024;
const MAX_CONNECTIONS = 1024;
// Well under the webhook's timeoutSeconds (5 in k8s/webhook/): a slow client is cut before the API server gives up. The
// TLS handshake too: a connection that never starts one would otherwise hold its place for two minutes.
const SERVER_OPTIONS = {
  headersTimeout: 3_000,
  requestTimeout: 4_000,
  connectionsCheckingInterval: 1_000,
  handshakeTimeout: 3_000,
};

export const REVIEW_OUTCOMES = ['injected', 'unchanged', 'not_selected', 'skipped', 'refused', 'invalid'] as const;
export type ReviewOutcome = (typeof REVIEW_OUTCOMES)[number];

export interface WebhookConfig {
  certFile: string;
  keyFile: string;
  port: number;
  host: string;
  reloadSeconds: number;
  image: string;
  /** The mode for pods without the mode annotation; undefined: sleep, or observe for a pod with a hook of its own. */
  mode?: Mode;
}

export class ReviewError extends Error {}

interface AdmissionRequest {
  uid: string;
  kind?: { group?: string; version?: string; kind?: string };
  operation?: string;
  object?: { metadata?: Record<string, unknown>; spec?: unknown };
  dryRun?: boolean;
}

/** JSON Pointer (RFC 6901) of an edit of the pod (its metadata and spec); appends use `-`. */
function pointer(e: Edit): string {
  const parts = e.path.map((p, i) => (e.op === 'add' && typeof p === 'number' && i === e.path.length - 1 ? '-' : String(p)));
  return `/${parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/')}`;
}

export interface ReviewAnswer {
  outcome: ReviewOutcome;
  response: {
    uid: string;
    allowed: true;
    patchType?: 'JSONPatch';
    patch?: string;
    warnings?: string[];
  };
}

/**
 * The answer to one AdmissionReview v1; throws ReviewError for one that is malformed. Pure. services: the API server
 * sends none, so the webhook passes none; tests give the Services `inject` saw, to compare the two on one input.
 */
export function review(
  body: unknown,
  options: InjectOptions,
  services: ServiceInfo[] = [],
  selectedBy: 'pod' | 'namespace' = 'pod',
  /** The owner's minReadySeconds, which no review carries (the pod's annotation gives it): tests compare with inject. */
  ownerSpec: Pick<Workload, 'minReadySeconds'> = {},
): ReviewAnswer {
  const r = body as { apiVersion?: unknown; kind?: unknown; request?: AdmissionRequest };
  if (r?.apiVersion !== 'admission.k8s.io/v1' || r.kind !== 'AdmissionReview') {
    throw new ReviewError('expected an AdmissionReview of admission.k8s.io/v1');
  }
  const req = r.request;
  if (!req || typeof req.uid !== 'string' || req.uid === '') throw new ReviewError('the review has no request.uid');
  const allow = (outcome: ReviewOutcome, extra: Partial<ReviewAnswer['response']> = {}): ReviewAnswer => ({
    outcome,
    response: { uid: req.uid, allowed: true, ...extra },
  });
  const isPod = req.kind?.group === '' && req.kind?.version === 'v1' && req.kind?.kind === 'Pod';
  if (!isPod || req.operation !== 'CREATE') return allow('not_selected');
  const pod = req.object;
  const spec = pod?.spec as Workload['template']['spec'] | undefined;
  if (!pod || !spec || !Array.isArray(spec.containers))
    throw new ReviewError('the review of a pod has no object.spec.containers');
  // The API server sends typed pods; anything else comes from a client that is not one.
  const malformed = [...spec.containers, ...(Array.isArray(spec.initContainers) ? spec.initContainers : [])].find(
    (c) =>
      c === null ||
      typeof c !== 'object' ||
      typeof c.name !== 'string' ||
      (c.ports !== undefined && (!Array.isArray(c.ports) || !c.ports.every((p) => Number.isInteger(p?.containerPort)))),
  );
  if (malformed !== undefined)
    throw new ReviewError('a container of the pod is not an object with a name and numeric containerPorts');
  const metadata = (pod.metadata ?? {}) as Workload['template']['metadata'] & {
    name?: string;
    generateName?: string;
    ownerReferences?: { kind?: string; name?: string }[];
  };
  // Selected by its own label, or by its namespace's (the configuration's namespaceSelector matched it; the webhook
  // sees no namespace labels): then all but a pod that opts out.
  const label = metadata.labels?.[OPT_IN_LABEL];
  if (selectedBy === 'pod' ? label !== 'true' : label === 'false') return allow('not_selected');
  const owner = metadata.ownerReferences?.[0];
  const workload: Workload = {
    kind: owner?.kind ?? 'Pod',
    name: owner?.name ?? metadata.name ?? metadata.generateName ?? '(unnamed)',
    template: { metadata, spec },
  };
  // A pod's own kind decides what it is; the owner's only names it (a Job's pod opts in like any other, by its label).
  const result = inject({ ...workload, kind: 'Pod', ...ownerSpec }, options, services);
  const warnings = result.findings.map(
    (f) =>
      `drain-sidecar: ${workload.kind}/${workload.name}${f.container ? ` container ${f.container}` : ''}: ${f.message}${f.fix ? `; ${f.fix}` : ''}`,
  );
  if (result.outcome === 'skipped' || result.outcome === 'refused') return allow(result.outcome, { warnings });
  if (result.edits.length === 0) return allow('unchanged');
  const patch = result.edits.map((e) => ({ op: e.op, path: pointer(e), value: e.value }));
  return allow('injected', { patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(patch)).toString('base64') });
}

/** The webhook's HTTPS server, its TLS files re-read when they change (cert-manager rotates them in place). */
export function createWebhook(config: WebhookConfig, log: Logger) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const reviews = new Counter({
    name: `${METRIC_PREFIX}webhook_reviews_total`,
    help: 'Admission reviews answered, by outcome: injected, unchanged (already injected), not_selected (not an opted-in pod CREATE), skipped (opted out, batch, no port declared), refused (allowed without the sidecar: a conflicting hook, a host-network pod; see the warnings), invalid (malformed review, 4xx).',
    labelNames: ['outcome'],
    registers: [registry],
  });
  for (const outcome of REVIEW_OUTCOMES) reviews.inc({ outcome }, 0);
  const latency = new Histogram({
    name: `${METRIC_PREFIX}webhook_review_duration_seconds`,
    help: 'Time from a review request to its answer.',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  const shedConnections = new Counter({
    name: `${METRIC_PREFIX}webhook_shed_connections_total`,
    help: 'Connections closed to keep the connection bound: evicted_idle (the one idle longest, for a new one), all_busy (the new one, every other had a review in progress).',
    labelNames: ['reason'],
    registers: [registry],
  });
  for (const reason of ['evicted_idle', 'all_busy']) shedConnections.inc({ reason }, 0);
  const options: InjectOptions = {
    ...(config.mode && { mode: config.mode }),
    image: config.image,
    regular: false,
    replaceHooks: false,
  };
  let inFlight = 0;
  let bytesInFlight = 0;
  let stopping = false;

  const app = new Hono();
  const error = (status: 400 | 413 | 415 | 429, code: string, message: string, hint: string) =>
    new Response(JSON.stringify({ error: code, message, hint }), { status, headers: { 'content-type': 'application/json' } });
  const limit = bodyLimit({
    maxSize: MAX_BODY_BYTES,
    onError: () => {
      reviews.inc({ outcome: 'invalid' });
      return error(413, 'too_large', `the review exceeds ${MAX_BODY_BYTES} bytes`, 'send one AdmissionReview');
    },
  });
  const mutate = (selectedBy: 'pod' | 'namespace') => async (c: Context) => {
    const start = performance.now();
    if (!/^application\/json\b/.test(c.req.header('content-type') ?? '')) {
      reviews.inc({ outcome: 'invalid' });
      return error(415, 'unsupported_media_type', 'the review must be application/json', 'send Content-Type: application/json');
    }
    if (inFlight >= MAX_CONCURRENT_REVIEWS) {
      return error(429, 'busy', `${inFlight} reviews are in progress`, 'the API server allows the pod (failurePolicy: Ignore)');
    }
    // The API server sends the length; a body without one is counted at the most it may be.
    const length = Number(c.req.header('content-length') ?? MAX_BODY_BYTES) || MAX_BODY_BYTES;
    if (bytesInFlight > 0 && bytesInFlight + length > MAX_BYTES_IN_FLIGHT) {
      return error(
        429,
        'busy',
        `${bytesInFlight} bytes of reviews are in progress`,
        'the API server allows the pod (failurePolicy: Ignore)',
      );
    }
    inFlight++;
    bytesInFlight += length;
    try {
      let body: unknown;
      try {
        body = JSON.parse(await c.req.text());
      } catch {
        throw new ReviewError('the body is not JSON');
      }
      const { outcome, response } = review(body, options, [], selectedBy);
      reviews.inc({ outcome });
      if (outcome === 'refused' || outcome === 'skipped')
        log.warn({ uid: response.uid, warnings: response.warnings }, 'pod allowed without the sidecar');
      else if (outcome === 'injected') log.info({ uid: response.uid }, 'pod injected');
      latency.observe((performance.now() - start) / 1000);
      return c.json({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response });
    } catch (err) {
      if (!(err instanceof ReviewError)) throw err;
      reviews.inc({ outcome: 'invalid' });
      log.warn({ problem: err.message }, 'malformed admission review');
      return error(400, 'bad_review', err.message, 'send an AdmissionReview of admission.k8s.io/v1 with a request');
    } finally {
      inFlight--;
      bytesInFlight -= length;
    }
  };
  // Pods that opt in with their label; every pod of a namespace that opts in (see k8s/webhook).
  app.post('/mutate', limit, mutate('pod'));
  app.post('/mutate/namespace', limit, mutate('namespace'));
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', (c) => (stopping ? c.json({ status: 'stopping' }, 503) : c.json({ status: 'ready' })));
  app.get('/metrics', async (c) => {
    const { contentType, body } = await exposition(registry, c.req.header('accept'));
    return c.body(body, 200, { 'Content-Type': contentType });
  });
  app.notFound((c) => c.json({ error: 'not_found', message: 'no endpoint at this path', hint: 'POST /mutate' }, 404));

  const readTls = () => ({ cert: readFileSync(config.certFile), key: readFileSync(config.keyFile) });
  let loaded = readTls();
  const server: Server = createServer({ ...SERVER_OPTIONS, ...loaded }, getRequestListener(app.fetch));
  // Past the bound a new connection closes the one idle longest (in its handshake or between reviews), as on the
  // sidecar's admin port: idle or silent clients cannot keep the API servers out.
  boundConnections(server, MAX_CONNECTIONS, (reason) => shedConnections.inc({ reason }));

  /** Re-reads the TLS files; a new pair applies to the next handshake, connections open keep theirs. */
  const reload = (): boolean => {
    let next: typeof loaded;
    try {
      next = readTls();
    } catch (err) {
      log.error({ err }, 'cannot read the TLS files; keeping the certificate in use');
      return false;
    }
    if (next.cert.equals(loaded.cert) && next.key.equals(loaded.key)) return false;
    try {
      server.setSecureContext(next);
    } catch (err) {
      // A rotation writes the two files one after the other: a pair that does not match is retried at the next look.
      log.warn({ err }, 'the TLS files do not make a valid pair yet; keeping the certificate in use');
      return false;
    }
    loaded = next;
    log.info('tls certificate reloaded');
    return true;
  };
  const timer = setInterval(reload, config.reloadSeconds * 1000);
  timer.unref();

  return {
    registry,
    start: (): Promise<AddressInfo> => listen(server, config.port, config.host),
    stop: (): Promise<void> => {
      stopping = true;
      clearInterval(timer);
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
    },
  };
}

const WEBHOOK_HELP = `Usage: drain-sidecar webhook --tls-cert-file FILE --tls-key-file FILE [flags]

Serves a mutating admission webhook over HTTPS: POST /mutate injects drain-sidecar into new pods labelled
${OPT_IN_LABEL}: "true" (the pod-template annotations of inject apply), plus /healthz, /readyz and /metrics.

  --tls-cert-file FILE         the serving certificate (PEM), re-read when it changes
  --tls-key-file FILE          its key (PEM)
  --port N                     default 8443
  --host ADDRESS               default all interfaces
  --image REF                  the sidecar image (default ${IMAGE})
  --tls-reload-seconds N       how often the TLS files are looked at (default 10)
  --mode MODE                  for pods without the drain-sidecar.dev/mode annotation: sleep, drain, proxy or observe
                               (default: sleep, and observe for a pod whose app has a preStop hook of its own)
`;

/** Parses the webhook's flags; throws ReviewError-free messages as plain Errors for main to print. */
export function parseWebhookArgs(argv: string[]): WebhookConfig | 'help' {
  if (argv.includes('--help') || argv.includes('-h')) return 'help';
  const values = new Map<string, string>();
  const known = ['--tls-cert-file', '--tls-key-file', '--port', '--host', '--image', '--tls-reload-seconds', '--mode'];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg : arg.slice(0, eq);
    if (!known.includes(name))
      throw new Error(`unknown argument ${name.startsWith('-') ? name.slice(0, 40) : `#${i + 1}`}; see --help`);
    const value = eq === -1 ? argv[++i] : arg.slice(eq + 1);
    if (value === undefined) throw new Error(`${name} needs a value`);
    values.set(name, value);
  }
  const certFile = values.get('--tls-cert-file');
  const keyFile = values.get('--tls-key-file');
  if (!certFile || !keyFile) throw new Error('--tls-cert-file and --tls-key-file are required');
  const port = Number(values.get('--port') ?? '8443');
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error('--port must be a whole number from 0 to 65535');
  const reloadSeconds = Number(values.get('--tls-reload-seconds') ?? '10');
  if (!(reloadSeconds >= 0.1 && reloadSeconds <= 3600)) throw new Error('--tls-reload-seconds must be from 0.1 to 3600');
  const mode = values.get('--mode');
  if (mode !== undefined && !MODES.includes(mode as Mode)) throw new Error('--mode must be sleep, drain, proxy or observe');
  return {
    certFile,
    keyFile,
    port,
    host: values.get('--host') ?? '',
    reloadSeconds,
    image: values.get('--image') ?? IMAGE,
    ...(mode !== undefined && { mode: mode as Mode }),
  };
}

export { WEBHOOK_HELP };
