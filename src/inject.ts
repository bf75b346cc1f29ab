// The injection core shared by `drain-sidecar inject`, `drain-sidecar check` and the admission webhook: pure functions
// from a pod template to the edits that add the sidecar and its hooks, and to the findings about its drain settings.
// No I/O. Every setting is derived from the pod spec, so no number is typed twice:
//   DRAIN_GRACE_PERIOD_SECONDS  = terminationGracePeriodSeconds (30 when unset, as the API server defaults it)
//   DRAIN_APP_PORTS             = the ports a Service in the input targets for the pod; else the app containers' TCP
//                                 ports, minus those that serve metrics or admin and minus a mesh proxy's
//   the hook's seconds          = --sleep, else min(20, max(5, grace period - 10)): the app keeps 10 s for its own
//                                 shutdown where the grace period allows, and never less than 5 s.
//   DRAIN_APP_READINESS         = the app's readinessProbe, httpGet or tcpSocket, replayed on loopback at start-up
//   DRAIN_MIN_READY_SECONDS     = the workload's minReadySeconds (0 when unset, as the API server defaults it), or
//                                 the pod template's annotation drain-sidecar.dev/min-ready-seconds (all a webhook sees)

import pkg from '../package.json' with { type: 'json' };
import { MAX_APP_PORTS, parseConfig } from './config.js';
import type { Edit } from './manifest.js';
import { hookHoldSeconds } from './params.js';
import { parseReadinessCheck } from './readiness.js';

export type { Edit } from './manifest.js';

/**
 * The image `inject` and the webhook add, unless --image says otherwise: package.json's `image` at its `version`, the
 * one place the reference is set (test/integration/release.test.ts holds the manifests and README to it).
 */
export const IMAGE = `${pkg.image}:${pkg.version}`;
export const SIDECAR_NAME = 'drain-sidecar';
/** The sidecar's port, unless a container of the pod uses it: then the first free one above. */
export const SIDECAR_PORT = 9555;
/** The port the sidecar's proxy listens on in proxy mode, unless the app uses it; the Service's targetPort moves to it. */
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
// A shorter hook ends before any cloud load balancer has let go of the pod (they take 5-30 s): it protects nothing.
export const MIN_HOOK_SECONDS = 5;
// The sidecar's own bound on every duration (config.ts).
const MAX_GRACE_SECONDS = 43_200;
// The workload kinds with a minReadySeconds of their own (0 when unset).
const MIN_READY_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'ReplicationController', 'Rollout']);
/** A workload's minReadySeconds: its field, else 0 where its kind has the field; undefined for a bare pod. */
export const workloadMinReadySeconds = (kind: string, field: unknown): number | undefined =>
  typeof field === 'number' ? field : MIN_READY_KINDS.has(kind) ? 0 : undefined;
/** What DRAIN_MIN_READY_SECONDS carries: the template's annotation, else the workload's field (NaN: not a number). */
const minReadyOf = (w: Workload): number | undefined => {
  const annotated = annotation(w.template, 'min-ready-seconds');
  return annotated === undefined ? w.minReadySeconds : Number(annotated);
};
const isSeconds = (n: number) => Number.isInteger(n) && n >= 0;
/** What is wrong with a min-ready-seconds annotation that is not a whole number of seconds, and the fix. */
const badMinReady = (w: Workload): [string, string] => [
  `annotation ${ANNOTATION}/min-ready-seconds is ${JSON.stringify(annotation(w.template, 'min-ready-seconds'))}`,
  "give the workload's minReadySeconds, a whole number of seconds",
];
// The recording rule that says what minReadySeconds covers the delay the sidecars measured (k8s/monitoring).
export const MIN_READY_RULE = 'namespace_workload:drain_sidecar_recommended_min_ready_seconds:7d';
// GKE Spot and preemptible nodes give pods 25 s between the node's notice and its shutdown.
const SPOT_GRACE_SECONDS = 25;

export type Mode = 'sleep' | 'drain' | 'proxy' | 'observe';
export const MODES: readonly Mode[] = ['sleep', 'drain', 'proxy', 'observe'];
export type Severity = 'error' | 'warning' | 'info';

export interface Finding {
  severity: Severity;
  /** kind/name of the workload. */
  workload: string;
  container?: string;
  message: string;
  fix: string;
}

export interface InjectOptions {
  /** undefined: sleep, or observe for a pod whose app already has a preStop hook of its own. */
  mode?: Mode;
  /** Hook seconds; undefined: the default rule. */
  sleepSeconds?: number;
  image: string;
  /** A regular container instead of a native sidecar (clusters before 1.29). */
  regular: boolean;
  replaceHooks: boolean;
  /** The sidecar's port; required for hostNetwork pods, whose ports are the node's. */
  port?: number;
  /** The app ports for every workload without the app-ports annotation (--app-ports). */
  appPorts?: number[];
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
  ports?: ContainerPort[];
  env?: { name: string; value?: string }[];
  lifecycle?: { preStop?: Handler; postStart?: Handler };
  readinessProbe?: unknown;
  [key: string]: unknown;
}

export interface ContainerPort {
  name?: string;
  containerPort: number;
  protocol?: string;
  appProtocol?: string;
}

export interface Handler {
  httpGet?: { port: number | string; path?: string; host?: string; httpHeaders?: unknown[] };
  exec?: unknown;
  sleep?: unknown;
  tcpSocket?: unknown;
}

const BATCH_KINDS = new Set(['Job', 'CronJob']);
// Mesh proxies, by the container names their injectors give them: never an app container, never hooked.
const MESH_PROXIES = { istio: 'istio-proxy', linkerd: 'linkerd-proxy' } as const;
export type Mesh = keyof typeof MESH_PROXIES;
/**
 * The annotation each mesh reads for inbound ports its proxy must not capture. The kubelet's hook is plain HTTP to the
 * pod IP: captured, it fails under strict mTLS, and the kubelet then sends SIGTERM at once.
 */
export const MESH_EXCLUDE_ANNOTATIONS: Record<Mesh, string> = {
  istio: 'traffic.sidecar.istio.io/excludeInboundPorts',
  linkerd: 'config.linkerd.io/skip-inbound-ports',
};
// A port by this name serves scrapes or operators, not the traffic a load balancer sends: not an app port.
const NOT_TRAFFIC_PORT_NAME = /metrics|prom|admin/i;
// Protocols the proxy does not forward (it speaks HTTP/1.1), by the `protocol[-suffix]` port names meshes use and by
// appProtocol (`grpc`, `kubernetes.io/h2c`).
const NOT_HTTP1 = /^(?:[\w.-]+\/)?(grpc|http2|h2c|tcp|tls|redis|mongo|mongodb|mysql|postgres|postgresql)(?:-|$)/i;

const annotation = (t: PodTemplate, key: string): string | undefined => t.metadata?.annotations?.[`${ANNOTATION}/${key}`];

function sidecarOf(spec: PodSpec): { container: Container; native: boolean } | undefined {
  const init = spec.initContainers?.find((c) => c.name === SIDECAR_NAME);
  if (init) return { container: init, native: true };
  const regular = spec.containers.find((c) => c.name === SIDECAR_NAME);
  return regular && { container: regular, native: false };
}

const isMeshProxy = (c: Container): boolean => Object.values(MESH_PROXIES).includes(c.name as never);
const appContainers = (spec: PodSpec) => spec.containers.filter((c) => c.name !== SIDECAR_NAME && !isMeshProxy(c));
const tcpPorts = (c: Container) => (c.ports ?? []).filter((p) => (p.protocol ?? 'TCP') === 'TCP');

/** The meshes a pod is part of: their proxy is in it, or their injector has been asked to add one. */
export function meshesOf(t: PodTemplate): Mesh[] {
  const all = [...(t.spec.initContainers ?? []), ...t.spec.containers];
  const a = t.metadata?.annotations ?? {};
  const l = t.metadata?.labels ?? {};
  const meshes: Mesh[] = [];
  if (all.some((c) => c.name === MESH_PROXIES.istio) || a['sidecar.istio.io/status'] || l['sidecar.istio.io/inject'] === 'true')
    meshes.push('istio');
  if (all.some((c) => c.name === MESH_PROXIES.linkerd) || ['enabled', 'ingress'].includes(a['linkerd.io/inject'] ?? ''))
    meshes.push('linkerd');
  return meshes;
}

/** What a preStop handler does, in the words of a finding. */
function describeHandler(h: Handler): string {
  if (h.httpGet) return `httpGet ${h.httpGet.path ?? '/'} on port ${h.httpGet.port}`;
  return Object.keys(h).join(', ') || 'an empty handler';
}

/** Whether an httpGet hook is a call to the sidecar's hook endpoints (on any port: a wrong port is a finding). */
const callsSidecar = (h: Handler | undefined): boolean =>
  h?.httpGet !== undefined && h.httpGet.host === undefined && /^\/+(sleep|drain)(\?|$)/.test(h.httpGet.path ?? '');

export interface ServicePort {
  name?: string;
  port?: number;
  targetPort?: number | string;
  protocol?: string;
  appProtocol?: string;
}

export interface ServiceInfo {
  name: string;
  annotations?: Record<string, string>;
  selector?: Record<string, string>;
  ports?: ServicePort[];
}

const selects = (s: ServiceInfo, labels: Record<string, string> = {}): boolean =>
  s.selector !== undefined && Object.keys(s.selector).length > 0 && Object.entries(s.selector).every(([k, v]) => labels[k] === v);

/** A Service port's target as a container port of the pod: a number, or a name resolved among the app containers. */
function targetOf(p: ServicePort, spec: PodSpec): ContainerPort | undefined {
  const target = p.targetPort ?? p.port;
  const ports = appContainers(spec).flatMap(tcpPorts);
  if (typeof target === 'number') return ports.find((c) => c.containerPort === target) ?? { containerPort: target };
  return ports.find((c) => c.name === target);
}

/** The TCP ports that carry the pod's traffic, with the declarations that name their protocol, and where they came from. */
function trafficPorts(w: Workload, services: ServiceInfo[]): { ports: ContainerPort[]; from: string } {
  const { spec } = w.template;
  const targeted = services
    .filter((s) => selects(s, w.template.metadata?.labels))
    .flatMap((s) =>
      (s.ports ?? [])
        .filter((p) => (p.protocol ?? 'TCP') === 'TCP')
        .flatMap((p) => {
          const target = targetOf(p, spec);
          return target ? [{ ...target, appProtocol: target.appProtocol ?? p.appProtocol, name: target.name ?? p.name }] : [];
        }),
    );
  if (targeted.length > 0) return { ports: targeted, from: 'the Service that selects it' };
  const scraped = w.template.metadata?.annotations?.['prometheus.io/port'];
  const ports = appContainers(spec)
    .flatMap(tcpPorts)
    .filter((p) => !NOT_TRAFFIC_PORT_NAME.test(p.name ?? '') && String(p.containerPort) !== scraped);
  return { ports, from: "the app containers' ports" };
}

const unique = (ports: number[]) => [...new Set(ports)];

/** The app ports of a pod: its annotation, else the ones given for all (--app-ports), else the ports its traffic comes to. */
export function appPortsOf(w: Workload, services: ServiceInfo[] = [], given?: number[]): number[] | undefined {
  const annotated = annotation(w.template, 'app-ports');
  if (annotated !== undefined) {
    const ports = annotated.split(',').map((p) => Number(p.trim()));
    return ports.every((p) => Number.isInteger(p) && p >= 1 && p <= 65535) ? unique(ports) : undefined;
  }
  return given ?? unique(trafficPorts(w, services).ports.map((p) => p.containerPort));
}

/** Every port a container of the pod declares, the sidecar's own excepted: none of them is free for the sidecar. */
const usedPorts = (spec: PodSpec): Set<number> =>
  new Set(
    [...(spec.initContainers ?? []), ...spec.containers]
      .filter((c) => c.name !== SIDECAR_NAME)
      .flatMap((c) => (c.ports ?? []).map((p) => p.containerPort)),
  );

/** The wanted port if no container uses it, else the first free one above it. */
function freePort(wanted: number, used: Set<number>): number {
  let port = wanted;
  while (used.has(port)) port++;
  return port;
}

export interface Derived {
  grace: number;
  ports: number[];
  hookSeconds: number;
  mode: Mode;
  sidecarPort: number;
  proxyPort: number;
  /** What DRAIN_MIN_READY_SECONDS carries; undefined when unknown (a pod the webhook sees without the annotation). */
  minReadySeconds: number | undefined;
  /** What DRAIN_APP_READINESS carries: the app's readinessProbe as a loopback check, when it can be replayed. */
  readiness: string | undefined;
}

interface Probe {
  httpGet?: { port?: number | string; path?: string; host?: string; scheme?: string };
  tcpSocket?: { port?: number | string; host?: string };
}

/**
 * The app's readinessProbe as the sidecar replays it on loopback: httpGet or tcpSocket, its port resolved by name
 * among the container's ports. The probe of a container serving an app port first. Not a probe with a host of its own
 * (it asks another address), nor exec or grpc ones, which the sidecar cannot replay.
 */
function readinessOf(spec: PodSpec, ports: number[]): string | undefined {
  const containers = appContainers(spec).filter((c) => c.readinessProbe);
  const serving = containers.filter((c) => tcpPorts(c).some((p) => ports.includes(p.containerPort)));
  for (const c of [...serving, ...containers]) {
    const probe = c.readinessProbe as Probe;
    const action = probe.httpGet ?? probe.tcpSocket;
    if (!action || action.host) continue;
    const port = typeof action.port === 'number' ? action.port : c.ports?.find((p) => p.name === action.port)?.containerPort;
    if (!Number.isInteger(port)) continue;
    if (probe.tcpSocket) return `tcp://:${port}`;
    const scheme = probe.httpGet?.scheme?.toLowerCase() === 'https' ? 'https' : 'http';
    const path = probe.httpGet?.path ?? '/';
    const check = `${scheme}://:${port}${path.startsWith('/') ? path : `/${path}`}`;
    // A path the check cannot send (a space in it): counted from the listener instead, not a refusal.
    if (typeof parseReadinessCheck(check) !== 'string') return check;
  }
  return undefined;
}

/** The settings for a pod, from its spec, annotations and the options; or the finding that says why there are none. */
export function derive(w: Workload, o: InjectOptions, services: ServiceInfo[] = []): Derived | Finding {
  const id = `${w.kind}/${w.name}`;
  const { spec } = w.template;
  const grace = spec.terminationGracePeriodSeconds ?? DEFAULT_GRACE_SECONDS;
  const fail = (message: string, fix: string): Finding => ({ severity: 'error', workload: id, message, fix });
  // A pod whose app is held by a hook of its own (a native sleep, an exec sleep, its own drain) is observed, not hooked.
  const ownHook = appContainers(spec).some((c) => c.lifecycle?.preStop && !callsSidecar(c.lifecycle.preStop));
  const mode = (annotation(w.template, 'mode') ?? o.mode ?? (ownHook ? 'observe' : 'sleep')) as Mode;
  if (!MODES.includes(mode)) {
    return fail(`annotation ${ANNOTATION}/mode is ${JSON.stringify(mode)}`, 'use sleep, drain, proxy or observe');
  }
  const unreadable = appContainers(spec).flatMap((c) =>
    (c.ports ?? [])
      .filter((p) => !Number.isInteger(p.containerPort))
      .map((p) => `${c.name}'s containerPort ${JSON.stringify(p.containerPort)}`),
  )[0];
  if (unreadable) return fail(`${unreadable} is not a number`, 'write it as a number, as the API server requires');
  const ports = appPortsOf(w, services, o.appPorts);
  if (ports === undefined) {
    return fail(
      `annotation ${ANNOTATION}/app-ports is ${JSON.stringify(annotation(w.template, 'app-ports'))}`,
      'give comma-separated port numbers',
    );
  }
  if (ports.length > MAX_APP_PORTS) {
    return fail(
      `the pod has ${ports.length} app ports; the sidecar watches at most ${MAX_APP_PORTS}`,
      `name the ports that take traffic with the annotation ${ANNOTATION}/app-ports`,
    );
  }
  if (mode === 'proxy') {
    if (ports.length !== 1) {
      return fail(
        `proxy mode forwards to one app port; the pod has ${ports.length}`,
        `name the port with the annotation ${ANNOTATION}/app-ports`,
      );
    }
    const declared = trafficPorts(w, services).ports.filter((p) => p.containerPort === ports[0]);
    const other = declared.find((p) => NOT_HTTP1.test(p.appProtocol ?? '') || NOT_HTTP1.test(p.name ?? ''));
    if (other) {
      return fail(
        `proxy mode forwards HTTP/1.1, and port ${ports[0]} is declared ${other.appProtocol ? `with appProtocol ${other.appProtocol}` : `as ${other.name}`}`,
        'use --mode sleep or drain, which watch any TCP traffic',
      );
    }
  }
  if (spec.hostNetwork && o.port === undefined) {
    return fail(
      `hostNetwork pods share the node's ports: the sidecar's port ${SIDECAR_PORT} would collide between pods on one node`,
      'give the sidecar a port free on every node with --port, or run the pod without hostNetwork',
    );
  }
  const used = usedPorts(spec);
  if (o.port !== undefined && used.has(o.port)) {
    return fail(`a container of the pod already uses port ${o.port}`, 'give the sidecar another --port');
  }
  // 9556 stays the proxy's where it is free.
  const sidecarPort = o.port ?? freePort(SIDECAR_PORT, new Set([...used, PROXY_PORT]));
  const proxyPort = freePort(PROXY_PORT, new Set([...used, sidecarPort]));
  if (grace > MAX_GRACE_SECONDS) {
    return fail(
      `terminationGracePeriodSeconds is ${grace}; the sidecar bounds every wait to ${MAX_GRACE_SECONDS} s`,
      `set it to ${MAX_GRACE_SECONDS} or less`,
    );
  }
  const sleepAnnotation = annotation(w.template, 'sleep-seconds');
  const asked = sleepAnnotation === undefined ? o.sleepSeconds : Number(sleepAnnotation);
  if (asked !== undefined && !(asked >= 0)) {
    return fail(`annotation ${ANNOTATION}/sleep-seconds is ${JSON.stringify(sleepAnnotation)}`, 'give a number of seconds');
  }
  const shorter = `--sleep or ${ANNOTATION}/sleep-seconds`;
  if (asked !== undefined && asked < MIN_HOOK_SECONDS) {
    return fail(
      `a ${asked} s hook ends before a load balancer lets go of the pod`,
      `give a hook of at least ${MIN_HOOK_SECONDS} s with ${shorter}`,
    );
  }
  if (asked !== undefined && asked + MIN_APP_SHUTDOWN_SECONDS > grace) {
    return fail(
      `a ${asked} s hook leaves the app ${Math.max(0, grace - asked)} s of the ${grace} s grace period`,
      `set terminationGracePeriodSeconds to at least ${asked + MIN_APP_SHUTDOWN_SECONDS}, or a shorter hook (at least ${MIN_HOOK_SECONDS} s) with ${shorter}`,
    );
  }
  if (asked === undefined && grace < MIN_HOOK_SECONDS + MIN_APP_SHUTDOWN_SECONDS) {
    return fail(
      `a ${grace} s grace period has no room for a ${MIN_HOOK_SECONDS} s hook and ${MIN_APP_SHUTDOWN_SECONDS} s for the app's shutdown`,
      `set terminationGracePeriodSeconds to at least ${MIN_HOOK_SECONDS + MIN_APP_SHUTDOWN_SECONDS}`,
    );
  }
  const hookSeconds = asked ?? Math.min(DEFAULT_HOOK_SECONDS, Math.max(MIN_HOOK_SECONDS, grace - APP_SHUTDOWN_SECONDS));
  const minReadySeconds = minReadyOf(w);
  if (minReadySeconds !== undefined && !isSeconds(minReadySeconds)) return fail(...badMinReady(w));
  return { grace, ports, hookSeconds, mode, sidecarPort, proxyPort, minReadySeconds, readiness: readinessOf(spec, ports) };
}

const hookPath = (d: Derived): string => (d.mode === 'sleep' ? `/sleep?s=${d.hookSeconds}` : `/drain?max=${d.hookSeconds}`);
export const OBSERVE_PATH = '/observe';

/** The hook inject gives an app container: a call to the sidecar, or in observer mode the native sleep (1.30+). */
const appHook = (d: Derived): Handler =>
  d.mode === 'observe' ? { sleep: { seconds: d.hookSeconds } } : { httpGet: { port: d.sidecarPort, path: hookPath(d) } };

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
  if (d.readiness !== undefined) env.push({ name: 'DRAIN_APP_READINESS', value: d.readiness });
  if (d.minReadySeconds !== undefined) env.push({ name: 'DRAIN_MIN_READY_SECONDS', value: String(d.minReadySeconds) });
  if (d.sidecarPort !== SIDECAR_PORT) env.push({ name: 'DRAIN_PORT', value: String(d.sidecarPort) });
  const ports = [{ name: 'drain', containerPort: d.sidecarPort }];
  if (d.mode === 'proxy') {
    env.push(
      { name: 'DRAIN_PROXY_LISTEN', value: String(d.proxyPort) },
      { name: 'DRAIN_PROXY_UPSTREAM', value: `127.0.0.1:${d.ports[0]}` },
    );
    ports.push({ name: 'drain-proxy', containerPort: d.proxyPort });
  }
  return {
    name: SIDECAR_NAME,
    image: o.image,
    ...(!o.regular && { restartPolicy: 'Always' }),
    ports,
    env,
    // Observer mode: the sidecar's own hook starts with the termination, whatever holds the app.
    ...(d.mode === 'observe' && { lifecycle: { preStop: { httpGet: { port: d.sidecarPort, path: OBSERVE_PATH } } } }),
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

/** A comma-separated port list with the port in it: unchanged if it has it. */
const withPort = (list: string | undefined, port: number): string => {
  const items = (list ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
  return items.includes(String(port)) ? (list as string) : [...items, String(port)].join(',');
};

/** The edits that give the template these labels and annotations, adding the maps where they are missing. */
function metadataEdits(t: PodTemplate, wanted: { labels: Record<string, string>; annotations: Record<string, string> }): Edit[] {
  const missing = (field: 'labels' | 'annotations') =>
    Object.fromEntries(Object.entries(wanted[field]).filter(([k, v]) => t.metadata?.[field]?.[k] !== v));
  const labels = missing('labels');
  const annotations = missing('annotations');
  const some = (m: Record<string, string>) => Object.keys(m).length > 0;
  if (!t.metadata) {
    return [
      { op: 'add', path: ['metadata'], value: { ...(some(labels) && { labels }), ...(some(annotations) && { annotations }) } },
    ];
  }
  const metadata = t.metadata;
  return (['labels', 'annotations'] as const).flatMap((field): Edit[] => {
    const entries = field === 'labels' ? labels : annotations;
    if (!some(entries)) return [];
    if (!metadata[field]) return [{ op: 'add', path: ['metadata', field], value: entries }];
    return Object.entries(entries).map(([k, v]) => ({ op: 'add', path: ['metadata', field, k], value: v }));
  });
}

/**
 * The edits that add the sidecar and its hooks to a pod template. Injecting an injected template gives no edit. A
 * preStop handler of another kind is a conflict: reported and left, unless replaceHooks. services: the Services in the
 * same input (the webhook has none), which say which ports carry the pod's traffic.
 */
export function inject(w: Workload, o: InjectOptions, all: ServiceInfo[] = []): InjectResult {
  const id = `${w.kind}/${w.name}`;
  const services = all.filter((s) => selects(s, w.template.metadata?.labels));
  const skip = (reason: string): InjectResult => ({
    outcome: 'skipped',
    edits: [],
    findings: [{ severity: 'info', workload: id, message: `skipped: ${reason}`, fix: '' }],
  });
  const opted = optedOut(w);
  if (opted) return skip(opted);
  const { spec } = w.template;
  if (
    annotation(w.template, 'app-ports') === undefined &&
    o.appPorts === undefined &&
    !appContainers(spec).some((c) => (c.ports ?? []).length > 0) &&
    services.length === 0
  ) {
    return skip(
      `no container declares a port and no Service in the input selects it, so it serves nothing to drain (declare the app's containerPort, or set the annotation ${ANNOTATION}/app-ports)`,
    );
  }
  const d = derive(w, o, services);
  if ('severity' in d) return { outcome: 'refused', edits: [], findings: [d] };
  if (d.ports.length === 0) {
    return skip(
      `its ports serve metrics or admin only, so it serves no traffic to drain (set the annotation ${ANNOTATION}/app-ports to drain them)`,
    );
  }

  const edits: Edit[] = [];
  const findings: Finding[] = [];
  const hook = appHook(d);
  spec.containers.forEach((c, i) => {
    if (c.name === SIDECAR_NAME || isMeshProxy(c)) return;
    const existing = c.lifecycle?.preStop;
    if (existing && callsSidecar(existing) && existing.httpGet?.port === d.sidecarPort) return;
    // Observed: whatever holds the app is kept.
    if (existing && d.mode === 'observe' && !o.replaceHooks) return;
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
    // The sidecar's own parser on what it will be given: a native sidecar that exits 2 at start blocks the app.
    const config = parseConfig(Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? ''])), []);
    if (config.ok === false) {
      const message = `the sidecar would not start with the settings derived: ${config.errors.join('; ')}`;
      return {
        outcome: 'refused',
        edits: [],
        findings: [{ severity: 'error', workload: id, message, fix: 'set them with the drain-sidecar.dev annotations' }],
      };
    }
    const list = o.regular ? 'containers' : 'initContainers';
    const current = spec[list];
    edits.push(
      current
        ? { op: 'add', path: ['spec', list, current.length], value: container }
        : { op: 'add', path: ['spec', list], value: [container] },
    );
  }
  // The PodMonitor and the NetworkPolicy of k8s/monitoring select pods by the label. The mesh annotations are added to
  // every pod: a namespace label can put it in a mesh at any time, and the webhook cannot see that label.
  const current = w.template.metadata?.annotations ?? {};
  const annotations = Object.fromEntries(
    Object.values(MESH_EXCLUDE_ANNOTATIONS).map((key) => [key, withPort(current[key], d.sidecarPort)]),
  );
  const labels = { [MONITORING_LABEL]: 'true' };
  // What uninject needs to take out exactly what was put in (and not the hooks kept): the edits undone, recorded on the
  // template itself, as a mesh's injector records its status.
  const record = edits.length > 0;
  const meta = (undo: string) =>
    metadataEdits(w.template, { labels, annotations: record ? { ...annotations, [INJECTED_ANNOTATION]: undo } : annotations });
  const undo = [...edits, ...meta('')].map((e) => inverse(w.template, e));
  edits.push(...meta(JSON.stringify(undo)));
  return { outcome: edits.length > 0 ? 'injected' : 'unchanged', edits, findings, derived: d };
}

/** The annotation on an injected pod template that says how to undo the injection (a JSON list of edits). */
export const INJECTED_ANNOTATION = `${ANNOTATION}/injected`;

/**
 * The edits of a Service (proxy mode's targetPort move) with the record of how to undo them, as on a pod template.
 */
export function recordedServiceEdits(service: { metadata?: { annotations?: Record<string, string> } }, edits: Edit[]): Edit[] {
  const meta = (undo: string): Edit[] =>
    service.metadata?.annotations
      ? [{ op: 'add', path: ['metadata', 'annotations', INJECTED_ANNOTATION], value: undo }]
      : [{ op: 'add', path: ['metadata', 'annotations'], value: { [INJECTED_ANNOTATION]: undo } }];
  const undo = [...edits, ...meta('')].map((e) => inverse(service, e));
  return [...edits, ...meta(JSON.stringify(undo))];
}

/** The edit that undoes e on an object: what an add put in is removed, what a replace replaced is put back. */
function inverse(template: object, e: Edit): Edit {
  const before = e.path.reduce<unknown>(
    (v, k) => (v !== null && typeof v === 'object' ? (v as Record<string | number, unknown>)[k] : undefined),
    template,
  );
  return e.op === 'replace' || before !== undefined
    ? { op: 'replace', path: e.path, value: before }
    : { op: 'remove', path: e.path };
}

/** The edits that undo an injection, from an object's record of it; undefined where it has none or it is unreadable. */
export function uninjectEdits(target: { metadata?: { annotations?: Record<string, string> } }): Edit[] | undefined {
  const text = target.metadata?.annotations?.[INJECTED_ANNOTATION];
  if (text === undefined) return undefined;
  try {
    const edits = JSON.parse(text) as Edit[];
    const valid = Array.isArray(edits) && edits.every((e) => ['remove', 'replace'].includes(e?.op) && Array.isArray(e.path));
    return valid ? edits : undefined;
  } catch {
    return undefined;
  }
}

function isSpot(spec: PodSpec): boolean {
  const text = JSON.stringify([spec.nodeSelector ?? {}, spec.affinity ?? {}, spec.tolerations ?? []]);
  return /cloud\.google\.com\/gke-(spot|preemptible)|karpenter\.sh\/capacity-type.{0,40}spot/.test(text);
}

/** Seconds in a Go duration ("30s", "1m30s", "500ms"), as Istio's proxy config writes them. */
function goDurationSeconds(text: string): number | undefined {
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s)/g)];
  if (parts.length === 0) return undefined;
  const unit = { ms: 0.001, s: 1, m: 60, h: 3600 } as const;
  return parts.reduce((sum, [, n, u]) => sum + Number(n) * unit[u as keyof typeof unit], 0);
}

// How long each mesh's proxy, as a regular container, keeps serving after its SIGTERM, which it gets as the hooks start,
// and the setting that makes it serve `holds` seconds.
function meshProxyServes(mesh: Mesh, a: Record<string, string>, holds: number): { seconds: number; setting: string } {
  if (mesh === 'istio') {
    const drain = /terminationDrainDuration["']?\s*:\s*["']?([\dhms.]+)/.exec(a['proxy.istio.io/config'] ?? '')?.[1];
    return {
      seconds: (drain ? goDurationSeconds(drain) : undefined) ?? 5,
      setting: `the annotation proxy.istio.io/config: '{"terminationDrainDuration": "${holds}s"}', or run Istio's proxy as a native sidecar`,
    };
  }
  const wait = Number(a['config.alpha.linkerd.io/proxy-wait-before-exit-seconds'] ?? 0);
  return {
    seconds: Number.isFinite(wait) ? wait : 0,
    setting: `the annotation config.alpha.linkerd.io/proxy-wait-before-exit-seconds: "${holds}", or config.beta.linkerd.io/proxy-enable-native-sidecar: "true"`,
  };
}

/** How long an app container's preStop hook holds it, where that can be read off the spec. */
function hookHolds(h: Handler | undefined, defaults: Parameters<typeof hookHoldSeconds>[1]): number | undefined {
  if (callsSidecar(h)) return hookHoldSeconds(h?.httpGet?.path ?? '', defaults);
  const sleep = (h?.sleep as { seconds?: unknown } | undefined)?.seconds;
  return typeof sleep === 'number' ? sleep : undefined;
}

/**
 * Every finding about a pod template's drain, injected or written by hand: its hooks, the sidecar's settings against
 * the pod spec, probes, meshes, and the load balancer and node facts that decide how long a drain needs. services: the
 * Services in the same input.
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
  // Observer mode: the sidecar's own hook calls /observe, and something else holds each app container.
  const observed = (sidecar?.container.lifecycle?.preStop?.httpGet?.path ?? '').replace(/^\/+/, '/').startsWith(OBSERVE_PATH);
  for (const c of appContainers(spec)) {
    const hook = c.lifecycle?.preStop;
    // A container that declares no port (a worker, an agent) or only metrics ports takes no traffic a readiness probe
    // would gate.
    if (!c.readinessProbe && tcpPorts(c).some((p) => !NOT_TRAFFIC_PORT_NAME.test(p.name ?? ''))) {
      add('warning', 'has no readiness probe', 'add one, so a new pod takes traffic only once it can serve it', c.name);
    }
    if (observed) {
      const seconds = hookHolds(hook, hookDefaults);
      if (!hook) {
        add(
          'error',
          'has no preStop hook: observer mode measures the drain but holds nothing, so the app stops as the load balancer still sends',
          'give it lifecycle.preStop.sleep (Kubernetes 1.30+; drain-sidecar inject --mode observe adds one)',
          c.name,
        );
      } else if (seconds !== undefined && seconds + MIN_APP_SHUTDOWN_SECONDS > grace) {
        add(
          'error',
          `its preStop hook holds ${seconds} s, leaving the app ${Math.max(0, grace - seconds)} s of the ${grace} s grace period`,
          `raise terminationGracePeriodSeconds to at least ${seconds + MIN_APP_SHUTDOWN_SECONDS}, or shorten the hook`,
          c.name,
        );
      }
      continue;
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
        `its hook holds up to ${seconds} s, leaving the app ${Math.max(0, grace - seconds)} s of the ${grace} s grace period`,
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
    const minReady = minReadyOf(w);
    if (minReady !== undefined && !isSeconds(minReady)) add('error', ...badMinReady(w), SIDECAR_NAME);
    else if (minReady !== undefined && config.minReadySeconds !== undefined && config.minReadySeconds !== minReady) {
      add(
        'warning',
        `DRAIN_MIN_READY_SECONDS is ${config.minReadySeconds}, minReadySeconds ${minReady}`,
        `set DRAIN_MIN_READY_SECONDS to ${minReady}`,
        SIDECAR_NAME,
      );
    }
    const expected = appPortsOf(w, services) ?? [];
    const missing = expected.filter((p) => !config.appPorts.includes(p));
    if (missing.length > 0) {
      add(
        'warning',
        `app port${missing.length > 1 ? 's' : ''} ${missing.join(', ')} not in DRAIN_APP_PORTS`,
        `set DRAIN_APP_PORTS to ${expected.join(',')}`,
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
  const annotations = w.template.metadata?.annotations ?? {};
  const holds = Math.max(0, ...appContainers(spec).map((c) => hookHolds(c.lifecycle?.preStop, hookDefaults) ?? 0));
  for (const mesh of meshesOf(w.template)) {
    const excluded = (annotations[MESH_EXCLUDE_ANNOTATIONS[mesh]] ?? '').split(',').map((p) => p.trim());
    if (sidecar && !excluded.includes(String(sidecarPort))) {
      add(
        'error',
        `the ${mesh} proxy captures the hook's port ${sidecarPort}: the kubelet's plain-HTTP hook fails under strict mTLS, and the kubelet then sends SIGTERM at once`,
        `add ${sidecarPort} to the annotation ${MESH_EXCLUDE_ANNOTATIONS[mesh]} (drain-sidecar inject does), then let the mesh inject the pod anew`,
      );
    }
    const proxy = spec.containers.find((c) => c.name === MESH_PROXIES[mesh]);
    const serves = meshProxyServes(mesh, annotations, holds);
    if (proxy && holds > serves.seconds) {
      add(
        'warning',
        `the ${mesh} proxy runs as a regular container and stops ${serves.seconds > 0 ? `${serves.seconds} s after the hooks start` : 'as the hooks start'}, while the app's hook holds ${holds} s: traffic through the mesh stops before the drain ends`,
        `set ${serves.setting}`,
        proxy.name,
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
      `set minReadySeconds, so a rollout waits for the load balancer's own health check: the field report needed 60 s; with the sidecar injected, the recording rule ${MIN_READY_RULE} gives the value that covers the delay its pods measured`,
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
export function proxyServiceEdits(service: ServiceInfo, w: Workload, d: Derived): Edit[] {
  if (!selects(service, w.template.metadata?.labels)) return [];
  return (service.ports ?? []).flatMap((p, i) =>
    (p.protocol ?? 'TCP') === 'TCP' && targetOf(p, w.template.spec)?.containerPort === d.ports[0]
      ? [{ op: 'replace' as const, path: ['spec', 'ports', i, 'targetPort'], value: d.proxyPort }]
      : [],
  );
}
