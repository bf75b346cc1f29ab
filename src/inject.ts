// The injection core shared by `drain-sidecar inject`, `drain-sidecar check` and the admission webhook: pure functions
// from a pod template to the edits that add the sidecar and its hooks, and to the findings about its drain settings.
// No I/O. Every setting is derived from the pod spec, so no number is typed twice:
//   DRAIN_GRACE_PERIOD_SECONDS  = terminationGracePeriodSeconds (30 when unset, as the API server defaults it)
//   DRAIN_APP_PORTS             = the app containers' TCP container ports
//   the hook's seconds          = --sleep, else min(20, grace period - 10): the app keeps 10 s for its own shutdown.

import pkg from '../package.json' with { type: 'json' };
import { parseConfig } from './config.js';
import { hookHoldSeconds } from './params.js';

/**
 * The image `inject` and the webhook add, unless --image says otherwise: package.json's `image` at its `version`, the
 * one place the reference is set (test/integration/release.test.ts holds the manifests and README to it).
 */
export const IMAGE = `${pkg.image}:${pkg.version}`;
export const SIDECAR_NAME = 'drain-sidecar';
export const SIDECAR_PORT = 9555;
/** The port the sidecar's proxy listens on in proxy mode; the Service's targetPort moves to it. */
export const PROXY_PORT = 9556;
export const ANNOTATION = 'drain-sidecar.dev';
export const MONITORING_LABEL = 'drain-sidecar/enabled';
// The kubelet's default grace period, and what the API server fills in when the field is unset.
const DEFAULT_GRACE_SECONDS = 30;
// A hook longer than this rarely helps: load balancers let go within seconds; the drain metrics tell when more is needed.
const DEFAULT_HOOK_SECONDS = 20;
// What the default rule leaves the app for its own shutdown after the hook, and the least any hook may leave it.
const APP_SHUTDOWN_SECONDS = 10;
export const MIN_APP_SHUTDOWN_SECONDS = 5;
// GKE Spot and preemptible nodes give pods 25 s between the node's notice and its shutdown.
const SPOT_GRACE_SECONDS = 25;

export type Mode = 'sleep' | 'drain' | 'proxy';
export type Severity = 'error' | 'warning' | 'info';

export interface Finding {
  severity: Severity;
  /** kind/name of the workload. */
  workload: string;
  container?: string;
  message: string;
  fix: string;
}

/** One edit of the pod template (its metadata and spec), at a path of keys and indices (JSON Patch without the string form). */
export interface Edit {
  op: 'add' | 'replace';
  path: (string | number)[];
  value: unknown;
}

export interface InjectOptions {
  mode: Mode;
  /** Hook seconds; undefined: the default rule. */
  sleepSeconds?: number;
  image: string;
  /** A regular container instead of a native sidecar (clusters before 1.29). */
  regular: boolean;
  replaceHooks: boolean;
  /** The sidecar's port; required for hostNetwork pods, whose ports are the node's. */
  port?: number;
}

export interface Workload {
  kind: string;
  name: string;
  /** The pod template: its metadata (labels, annotations) and spec. */
  template: PodTemplate;
  /** The workload's own spec fields that matter to a drain (minReadySeconds). */
  minReadySeconds?: number;
}

export interface PodTemplate {
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: PodSpec;
}

export interface PodSpec {
  terminationGracePeriodSeconds?: number;
  hostNetwork?: boolean;
  containers: Container[];
  initContainers?: Container[];
  nodeSelector?: Record<string, string>;
  tolerations?: { key?: string }[];
  affinity?: unknown;
}

export interface Container {
  name: string;
  image?: string;
  restartPolicy?: string;
  ports?: { name?: string; containerPort: number; protocol?: string }[];
  env?: { name: string; value?: string }[];
  lifecycle?: { preStop?: Handler; postStart?: Handler };
  readinessProbe?: unknown;
  [key: string]: unknown;
}

export interface Handler {
  httpGet?: { port: number | string; path?: string; host?: string; httpHeaders?: unknown[] };
  exec?: unknown;
  sleep?: unknown;
  tcpSocket?: unknown;
}

const BATCH_KINDS = new Set(['Job', 'CronJob']);

const annotation = (t: PodTemplate, key: string): string | undefined => t.metadata?.annotations?.[`${ANNOTATION}/${key}`];

function sidecarOf(spec: PodSpec): { container: Container; native: boolean } | undefined {
  const init = spec.initContainers?.find((c) => c.name === SIDECAR_NAME);
  if (init) return { container: init, native: true };
  const regular = spec.containers.find((c) => c.name === SIDECAR_NAME);
  return regular && { container: regular, native: false };
}

const appContainers = (spec: PodSpec) => spec.containers.filter((c) => c.name !== SIDECAR_NAME);

function appPorts(spec: PodSpec): number[] {
  const ports = appContainers(spec).flatMap((c) =>
    (c.ports ?? []).filter((p) => (p.protocol ?? 'TCP') === 'TCP').map((p) => p.containerPort),
  );
  return [...new Set(ports)];
}

/** What a preStop handler does, in the words of a finding. */
function describeHandler(h: Handler): string {
  if (h.httpGet) return `httpGet ${h.httpGet.path ?? '/'} on port ${h.httpGet.port}`;
  return Object.keys(h).join(', ') || 'an empty handler';
}

/** Whether an httpGet hook is a call to the sidecar's hook endpoints (on any port: a wrong port is a finding). */
const callsSidecar = (h: Handler | undefined): boolean =>
  h?.httpGet !== undefined && h.httpGet.host === undefined && /^\/+(sleep|drain)(\?|$)/.test(h.httpGet.path ?? '');

export interface Derived {
  grace: number;
  ports: number[];
  hookSeconds: number;
  mode: Mode;
  sidecarPort: number;
}

/** The settings for a pod, from its spec, annotations and the options; or the finding that says why there are none. */
export function derive(w: Workload, o: InjectOptions): Derived | Finding {
  const id = `${w.kind}/${w.name}`;
  const { spec } = w.template;
  const grace = spec.terminationGracePeriodSeconds ?? DEFAULT_GRACE_SECONDS;
  const fail = (message: string, fix: string): Finding => ({ severity: 'error', workload: id, message, fix });
  const mode = (annotation(w.template, 'mode') ?? o.mode) as Mode;
  if (!['sleep', 'drain', 'proxy'].includes(mode)) {
    return fail(`annotation ${ANNOTATION}/mode is ${JSON.stringify(mode)}`, 'use sleep, drain or proxy');
  }
  const portsAnnotation = annotation(w.template, 'app-ports');
  const ports = portsAnnotation === undefined ? appPorts(spec) : portsAnnotation.split(',').map((p) => Number(p.trim()));
  if (ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) {
    return fail(`annotation ${ANNOTATION}/app-ports is ${JSON.stringify(portsAnnotation)}`, 'give comma-separated port numbers');
  }
  if (mode === 'proxy' && ports.length !== 1) {
    return fail(
      `proxy mode forwards to one app port; the pod has ${ports.length}`,
      `name the port with the annotation ${ANNOTATION}/app-ports`,
    );
  }
  if (spec.hostNetwork && o.port === undefined) {
    return fail(
      `hostNetwork pods share the node's ports: the sidecar's port ${SIDECAR_PORT} would collide between pods on one node`,
      'give the sidecar a port free on every node with --port, or run the pod without hostNetwork',
    );
  }
  const sidecarPort = o.port ?? SIDECAR_PORT;
  const sleepAnnotation = annotation(w.template, 'sleep-seconds');
  const asked = sleepAnnotation === undefined ? o.sleepSeconds : Number(sleepAnnotation);
  if (asked !== undefined && !(asked >= 0)) {
    return fail(`annotation ${ANNOTATION}/sleep-seconds is ${JSON.stringify(sleepAnnotation)}`, 'give a number of seconds');
  }
  const hookSeconds = asked ?? Math.min(DEFAULT_HOOK_SECONDS, grace - APP_SHUTDOWN_SECONDS);
  if (hookSeconds < 1 || hookSeconds + MIN_APP_SHUTDOWN_SECONDS > grace) {
    return fail(
      `a ${hookSeconds} s hook leaves the app ${grace - hookSeconds} s of the ${grace} s grace period`,
      `set terminationGracePeriodSeconds to at least ${Math.max(hookSeconds, 1) + MIN_APP_SHUTDOWN_SECONDS}, or a shorter hook with --sleep or ${ANNOTATION}/sleep-seconds`,
    );
  }
  return { grace, ports, hookSeconds, mode, sidecarPort };
}

const hookPath = (d: Derived): string => (d.mode === 'sleep' ? `/sleep?s=${d.hookSeconds}` : `/drain?max=${d.hookSeconds}`);

/**
 * What the sidecar asks of the node, from bench/memory.mjs and bench/flood.mjs. The request is the private memory after
 * traffic with headroom: the executable's code pages are file-backed, shared by every pod on the node through the page
 * cache and reclaimable, so they are charged to one pod at most. Proxy mode forwards every request and keeps V8's
 * optimizing compilers and a larger heap. The limit holds the whole process, code pages included, under the floods.
 */
export function sidecarResources(proxy: boolean): Container['resources'] {
  return { requests: { cpu: '10m', memory: proxy ? '80Mi' : '32Mi' }, limits: { memory: '192Mi' } };
}

/** The sidecar container for these settings, hardened as k8s/native has it. */
export function sidecarContainer(d: Derived, o: InjectOptions): Container {
  const env = [
    { name: 'DRAIN_GRACE_PERIOD_SECONDS', value: String(d.grace) },
    { name: 'DRAIN_APP_PORTS', value: d.ports.join(',') },
    { name: 'DRAIN_DEFAULT_SLEEP_SECONDS', value: String(d.hookSeconds) },
    { name: 'DRAIN_MAX_SLEEP_SECONDS', value: String(d.grace - MIN_APP_SHUTDOWN_SECONDS) },
  ];
  if (d.sidecarPort !== SIDECAR_PORT) env.push({ name: 'DRAIN_PORT', value: String(d.sidecarPort) });
  const ports = [{ name: 'drain', containerPort: d.sidecarPort }];
  if (d.mode === 'proxy') {
    env.push(
      { name: 'DRAIN_PROXY_LISTEN', value: String(PROXY_PORT) },
      { name: 'DRAIN_PROXY_UPSTREAM', value: `127.0.0.1:${d.ports[0]}` },
    );
    ports.push({ name: 'drain-proxy', containerPort: PROXY_PORT });
  }
  return {
    name: SIDECAR_NAME,
    image: o.image,
    ...(!o.regular && { restartPolicy: 'Always' }),
    ports,
    env,
    startupProbe: { httpGet: { path: '/healthz', port: 'drain' }, periodSeconds: 1, failureThreshold: 30 },
    livenessProbe: { httpGet: { path: '/healthz', port: 'drain' }, periodSeconds: 10 },
    readinessProbe: { httpGet: { path: '/readyz', port: 'drain' }, periodSeconds: 5 },
    resources: sidecarResources(d.mode === 'proxy'),
    securityContext: {
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
  };
}

export type InjectResult =
  | { outcome: 'injected' | 'unchanged'; edits: Edit[]; findings: Finding[]; derived: Derived }
  | { outcome: 'skipped' | 'refused'; edits: []; findings: Finding[] };

/** Whether the workload takes the sidecar at all: batch workloads and opted-out templates are skipped. */
export function optedOut(w: Workload): string | undefined {
  const opt = annotation(w.template, 'inject');
  if (opt === 'false') return `annotation ${ANNOTATION}/inject is "false"`;
  if (BATCH_KINDS.has(w.kind) && opt !== 'true') {
    return `a ${w.kind} serves no traffic to drain (opt in with the annotation ${ANNOTATION}/inject: "true")`;
  }
  return undefined;
}

/**
 * The edits that add the sidecar and its hooks to a pod template. Injecting an injected template gives no edit. A
 * preStop handler of another kind is a conflict: reported and left, unless replaceHooks.
 */
export function inject(w: Workload, o: InjectOptions): InjectResult {
  const id = `${w.kind}/${w.name}`;
  const skip = optedOut(w);
  if (skip)
    return {
      outcome: 'skipped',
      edits: [],
      findings: [{ severity: 'info', workload: id, message: `skipped: ${skip}`, fix: '' }],
    };
  const d = derive(w, o);
  if ('severity' in d) return { outcome: 'refused', edits: [], findings: [d] };

  const { spec } = w.template;
  const edits: Edit[] = [];
  const findings: Finding[] = [];
  const hook: Handler = { httpGet: { port: d.sidecarPort, path: hookPath(d) } };
  spec.containers.forEach((c, i) => {
    if (c.name === SIDECAR_NAME) return;
    const existing = c.lifecycle?.preStop;
    if (existing && callsSidecar(existing) && existing.httpGet?.port === d.sidecarPort) return;
    if (existing && !o.replaceHooks) {
      findings.push({
        severity: 'error',
        workload: id,
        container: c.name,
        message: `has a preStop hook already (${describeHandler(existing)}); a hook holds one handler`,
        fix: 'remove it, or run inject with --replace-hooks to have it call the sidecar',
      });
      return;
    }
    if (existing) edits.push({ op: 'replace', path: ['spec', 'containers', i, 'lifecycle', 'preStop'], value: hook });
    else if (c.lifecycle) edits.push({ op: 'add', path: ['spec', 'containers', i, 'lifecycle', 'preStop'], value: hook });
    else edits.push({ op: 'add', path: ['spec', 'containers', i, 'lifecycle'], value: { preStop: hook } });
  });
  if (findings.length > 0) return { outcome: 'refused', edits: [], findings };

  if (!sidecarOf(spec)) {
    const container = sidecarContainer(d, o);
    const list = o.regular ? 'containers' : 'initContainers';
    const current = spec[list];
    edits.push(
      current
        ? { op: 'add', path: ['spec', list, current.length], value: container }
        : { op: 'add', path: ['spec', list], value: [container] },
    );
  }
  // The PodMonitor and the NetworkPolicy of k8s/monitoring select pods by this label.
  const labels = w.template.metadata?.labels;
  if (labels?.[MONITORING_LABEL] !== 'true') {
    edits.push(
      !w.template.metadata
        ? { op: 'add', path: ['metadata'], value: { labels: { [MONITORING_LABEL]: 'true' } } }
        : !labels
          ? { op: 'add', path: ['metadata', 'labels'], value: { [MONITORING_LABEL]: 'true' } }
          : { op: 'add', path: ['metadata', 'labels', MONITORING_LABEL], value: 'true' },
    );
  }
  return { outcome: edits.length > 0 ? 'injected' : 'unchanged', edits, findings, derived: d };
}

export interface ServiceInfo {
  name: string;
  annotations?: Record<string, string>;
  selector?: Record<string, string>;
}

const selects = (s: ServiceInfo, labels: Record<string, string> = {}): boolean =>
  s.selector !== undefined && Object.keys(s.selector).length > 0 && Object.entries(s.selector).every(([k, v]) => labels[k] === v);

function isSpot(spec: PodSpec): boolean {
  const text = JSON.stringify([spec.nodeSelector ?? {}, spec.affinity ?? {}, spec.tolerations ?? []]);
  return /cloud\.google\.com\/gke-(spot|preemptible)|karpenter\.sh\/capacity-type.{0,40}spot/.test(text);
}

/**
 * Every finding about a pod template's drain, injected or written by hand: its hooks, the sidecar's settings against
 * the pod spec, probes, and the load balancer and node facts that decide how long a drain needs. services: the
 * Services in the same input, for the container-native load balancer rule.
 */
export function check(w: Workload, services: ServiceInfo[] = []): Finding[] {
  const id = `${w.kind}/${w.name}`;
  const findings: Finding[] = [];
  const add = (severity: Severity, message: string, fix: string, container?: string) =>
    findings.push({ severity, workload: id, ...(container && { container }), message, fix });
  if (optedOut(w)) return findings;
  const { spec } = w.template;
  const grace = spec.terminationGracePeriodSeconds ?? DEFAULT_GRACE_SECONDS;
  const sidecar = sidecarOf(spec);
  const env = Object.fromEntries((sidecar?.container.env ?? []).map((e) => [e.name, e.value ?? '']));
  const parsed = sidecar ? parseConfig(env, []) : undefined;
  const config = parsed?.ok === true ? parsed.config : undefined;
  if (parsed && parsed.ok === false) {
    for (const e of parsed.errors)
      add('error', `the sidecar's settings are invalid: ${e}`, 'fix the environment variable', SIDECAR_NAME);
  }
  const sidecarPort = config?.port ?? SIDECAR_PORT;
  const hookDefaults = config ?? { defaultSleepSeconds: 20, maxSleepSeconds: 25, drainMinSeconds: 5, drainQuietSeconds: 3 };

  if (!sidecar && w.template.metadata?.labels?.[`${ANNOTATION}/inject`] === 'true') {
    add(
      'error',
      `is labelled ${ANNOTATION}/inject: "true" but has no drain-sidecar: the webhook was down or refused it`,
      "see the webhook's warnings and drain_sidecar_webhook_reviews_total; recreate the pod once fixed",
    );
  }
  for (const c of appContainers(spec)) {
    const hook = c.lifecycle?.preStop;
    if (!c.readinessProbe) {
      add('warning', 'has no readiness probe', 'add one, so a new pod takes traffic only once it can serve it', c.name);
    }
    if (!callsSidecar(hook)) {
      if (sidecar)
        add(
          'error',
          `has no preStop hook calling the sidecar${hook ? ` (it has ${describeHandler(hook)})` : ''}`,
          'run drain-sidecar inject (with --replace-hooks to replace a hook)',
          c.name,
        );
      continue;
    }
    const get = hook?.httpGet as NonNullable<Handler['httpGet']>;
    if (!sidecar)
      add('error', `its preStop hook calls ${get.path} but the pod has no drain-sidecar`, 'run drain-sidecar inject', c.name);
    if (typeof get.port === 'string') {
      add(
        'error',
        `its preStop hook uses the named port "${get.port}", which resolves only among the hook's own container's ports`,
        `use the number ${sidecarPort}`,
        c.name,
      );
    } else if (get.port !== sidecarPort) {
      add(
        'error',
        `its preStop hook calls port ${get.port}, not the sidecar's ${sidecarPort}`,
        `use port ${sidecarPort}`,
        c.name,
      );
    }
    const seconds = hookHoldSeconds(get.path ?? '', hookDefaults);
    if (seconds !== undefined && seconds + MIN_APP_SHUTDOWN_SECONDS > grace) {
      add(
        'error',
        `its hook holds up to ${seconds} s, leaving the app ${grace - seconds} s of the ${grace} s grace period`,
        `raise terminationGracePeriodSeconds to at least ${seconds + MIN_APP_SHUTDOWN_SECONDS}, or shorten the hook`,
        c.name,
      );
    }
  }

  if (sidecar && config) {
    if (config.gracePeriodSeconds !== grace) {
      add(
        'error',
        `DRAIN_GRACE_PERIOD_SECONDS is ${config.gracePeriodSeconds}, terminationGracePeriodSeconds ${grace}`,
        `set DRAIN_GRACE_PERIOD_SECONDS to ${grace}`,
        SIDECAR_NAME,
      );
    }
    const missing = appPorts(spec).filter((p) => !config.appPorts.includes(p));
    if (missing.length > 0 && annotation(w.template, 'app-ports') === undefined) {
      add(
        'warning',
        `app port${missing.length > 1 ? 's' : ''} ${missing.join(', ')} not in DRAIN_APP_PORTS`,
        `set DRAIN_APP_PORTS to ${appPorts(spec).join(',')}`,
        SIDECAR_NAME,
      );
    }
    if (!sidecar.native) {
      add(
        'info',
        'runs as a regular container',
        'on Kubernetes 1.29+ make it a native sidecar (an init container with restartPolicy: Always): it then outlives the app',
        SIDECAR_NAME,
      );
    }
  }
  const labels = w.template.metadata?.labels;
  if (
    services.some((s) => selects(s, labels) && s.annotations?.['cloud.google.com/neg'] !== undefined) &&
    !w.minReadySeconds &&
    w.kind !== 'Pod'
  ) {
    add(
      'warning',
      'a container-native load balancer (cloud.google.com/neg) selects it and it has no minReadySeconds',
      "set minReadySeconds (60 s), so a rollout waits for the load balancer's own health check",
    );
  }
  if (isSpot(spec) && grace > SPOT_GRACE_SECONDS) {
    add(
      'warning',
      `runs on Spot or preemptible nodes, which give pods ${SPOT_GRACE_SECONDS} s, with a grace period of ${grace} s`,
      `fit the drain into ${SPOT_GRACE_SECONDS} s: terminationGracePeriodSeconds ${SPOT_GRACE_SECONDS} and a shorter hook`,
    );
  }
  return findings;
}

/** Services whose selector matches the template and whose targetPort is the app port: the edits that move it to the proxy. */
export function proxyServiceEdits(
  service: ServiceInfo & { ports?: { targetPort?: number | string; port?: number }[] },
  w: Workload,
  appPort: number,
): Edit[] {
  if (!selects(service, w.template.metadata?.labels)) return [];
  const named = new Set(
    appContainers(w.template.spec).flatMap((c) =>
      (c.ports ?? []).filter((p) => p.containerPort === appPort && p.name).map((p) => p.name),
    ),
  );
  return (service.ports ?? []).flatMap((p, i) => {
    const target = p.targetPort ?? p.port;
    return target === appPort || (typeof target === 'string' && named.has(target))
      ? [{ op: 'replace' as const, path: ['spec', 'ports', i, 'targetPort'], value: PROXY_PORT }]
      : [];
  });
}
