// Every metric is declared once in METRIC_SPECS: it creates the metric and renders the README table.

import { readdirSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { collectDefaultMetrics, Metric, MetricObjectWithValues, MetricValue, OpenMetricsContentType } from 'prom-client';
import { Counter, Gauge, Histogram, Registry } from './prom.js';

export const METRIC_PREFIX = 'drain_sidecar_';

// observe: the sidecar container's own preStop hook, when something else holds the app (observer mode).
export const HOOK_ENDPOINTS = ['sleep', 'drain', 'observe'] as const;
export type HookEndpoint = (typeof HOOK_ENDPOINTS)[number];

// One outcome per hook call. clamped and malformed calls still held the pod: a typo must never turn the hook into no hook.
export const HOOK_OUTCOMES = ['ok', 'clamped', 'malformed', 'caller_gone', 'rejected_busy', 'unauthorized'] as const;
export type HookOutcome = (typeof HOOK_OUTCOMES)[number];

// Why a hook returned, and so why the episode it ended finished. no_hook: SIGTERM started the episode and no hook call
// came (the preStop hook is probably missing). exit: the sidecar exited with the episode still open.
// idle and deadline: how /drain returns (traffic stopped, or its max ran out). app_stopped: how /observe returns (the
// app's listeners are gone).
export const END_REASONS = ['elapsed', 'idle', 'deadline', 'app_stopped', 'budget', 'caller_gone', 'no_hook', 'exit'] as const;
export type EndReason = (typeof END_REASONS)[number];

// What these histograms measure is a load balancer's deprogram time and the drains it sets: half a second to a minute
// (GKE Spot caps a whole termination at 25 s, few grace periods exceed 60 s). The buckets resolve the 2-30 s range
// where hook seconds are chosen, in steps a team would round a sleep to; above 60 s only +Inf is needed.
const DRAIN_BUCKETS = [0.5, 1, 2, 3, 5, 10, 15, 20, 25, 30, 45, 60];
// A new pod's first traffic after readiness: from no wait at all to the minutes a load balancer's health check can take
// (the field report's fix was minReadySeconds: 60). Few buckets: each is a series in every pod, observed once per pod.
const STARTUP_BUCKETS = [1, 2, 5, 10, 20, 30, 60, 120];
// Proxied requests: from a few milliseconds to the proxy's default 60 s timeout, one bucket per decade and a half.
const REQUEST_BUCKETS = [0.005, 0.025, 0.1, 0.25, 1, 2.5, 10, 60];

export const PROXY_CODES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'aborted'] as const;
export type ProxyCode = (typeof PROXY_CODES)[number];
export const UPSTREAM_REASONS = ['refused', 'reset', 'timeout', 'other'] as const;

interface MetricSpec {
  name: string;
  type: 'counter' | 'gauge' | 'histogram';
  help: string;
  labels?: Record<string, readonly string[]>;
  buckets?: number[];
  /** Exported only in proxy mode. */
  proxyOnly?: boolean;
  /** Exported only when DRAIN_MIN_READY_SECONDS is set. */
  minReadyOnly?: boolean;
  /** Which label combinations start at zero, where not all: those that can happen and an alert or a rate reads. */
  initialized?: (labels: Record<string, string>) => boolean;
}

export const METRIC_SPECS = {
  hookCalls: {
    name: `${METRIC_PREFIX}hook_calls_total`,
    type: 'counter',
    help: 'Hook calls by endpoint and outcome. Every outcome but rejected_busy and unauthorized held the pod.',
    labels: { endpoint: HOOK_ENDPOINTS, outcome: HOOK_OUTCOMES },
    // /observe takes no parameter (never clamped or malformed), and each series is paid by every pod: its calls start
    // at zero for what the alerts and rates read, the rest appears when it happens.
    initialized: ({ endpoint, outcome }) => endpoint !== 'observe' || outcome === 'ok' || outcome === 'unauthorized',
  },
  hooksInProgress: {
    name: `${METRIC_PREFIX}hooks_in_progress`,
    type: 'gauge',
    help: 'Hook calls being held now.',
  },
  draining: {
    name: `${METRIC_PREFIX}draining`,
    type: 'gauge',
    help: '1 while a drain episode is open (from its first hook call or SIGTERM until its last hook call returns).',
  },
  terminating: {
    name: `${METRIC_PREFIX}terminating`,
    type: 'gauge',
    help: '1 once the sidecar has received SIGTERM.',
  },
  drainDuration: {
    name: `${METRIC_PREFIX}drain_duration_seconds`,
    type: 'histogram',
    help: 'Duration of finished drain episodes (drains_total says why each ended).',
    buckets: DRAIN_BUCKETS,
  },
  drains: {
    name: `${METRIC_PREFIX}drains_total`,
    type: 'counter',
    help: 'Finished drain episodes, by why they ended: elapsed, idle, deadline and app_stopped (observer mode: the app stopped listening) as designed; budget (cut at the grace period), caller_gone (the kubelet went away), no_hook (SIGTERM with no hook call: the preStop hook is missing), exit (the sidecar exited first).',
    labels: { reason: END_REASONS },
  },
  hookWait: {
    name: `${METRIC_PREFIX}hook_wait_seconds`,
    type: 'gauge',
    help: "The wait the latest hook call asked for (/sleep's s, /drain's max), after clamping; in observer mode, how long the app kept listening after the termination began; 0 before the first. Compare with last_arrival_seconds to see whether the hook is long enough.",
  },
  invalidRequests: {
    name: `${METRIC_PREFIX}invalid_requests_total`,
    type: 'counter',
    help: 'Requests answered 404 (unknown path), 405 (wrong method), or 400/408/431 because the HTTP parser rejected them (malformed_http; a hook among them is still held).',
    labels: { reason: ['not_found', 'method_not_allowed', 'malformed_http'] },
  },
  shedConnections: {
    name: `${METRIC_PREFIX}shed_connections_total`,
    type: 'counter',
    help: 'Connections closed because a port held its maximum: evicted_idle, the one idle longest, to admit a new one; all_busy, the new one, as every held connection had a request in progress.',
    labels: { listener: [], reason: ['evicted_idle', 'all_busy'] },
  },
  appConnections: {
    name: `${METRIC_PREFIX}app_connections`,
    type: 'gauge',
    help: 'Established connections to the app port, read at scrape time.',
    labels: { port: [] },
  },
  appListening: {
    name: `${METRIC_PREFIX}app_listening`,
    type: 'gauge',
    help: '1 while the app has a listener on the port, read at scrape time.',
    labels: { port: [] },
  },
  appAcceptQueue: {
    name: `${METRIC_PREFIX}app_accept_queue`,
    type: 'gauge',
    help: "Connections waiting in the app listener's accept queue, read at scrape time.",
    labels: { port: [] },
  },
  connectionTracking: {
    name: `${METRIC_PREFIX}connection_tracking`,
    type: 'gauge',
    help: "1 while the app ports are watched (sock_diag or /proc/net); 0 when no app port is configured or the kernel's socket tables cannot be read.",
  },
  activityTracking: {
    name: `${METRIC_PREFIX}activity_tracking`,
    type: 'gauge',
    help: "1 while the app's sockets are read through sock_diag, whose tcp_info shows requests on pooled keep-alive connections; 0 on the /proc/net fallback, which sees new connections only.",
  },
  lateConnections: {
    name: `${METRIC_PREFIX}late_connections_total`,
    type: 'counter',
    help: 'New connections to the app port after a drain began, until the sidecar exits. From polls of the socket table: a connection that opened and closed between two polls is missed unless the app closed it first. Pooled keep-alive connections carry most late requests without any new connection: see late_requests_estimate_total.',
    labels: { port: [] },
  },
  lateRequestsEstimate: {
    name: `${METRIC_PREFIX}late_requests_estimate_total`,
    type: 'counter',
    help: 'Segments with payload the app port received after a drain began, until the sidecar exits (sock_diag tcp_info data_segs_in, so requests on pooled keep-alive connections count): about one per request; a request larger than a segment (~1.4 kB) counts more, and a connection that opened and closed between two polls is missed unless the app closed it first. Stays 0 while activity_tracking is 0.',
    labels: { port: [] },
  },
  lastArrival: {
    name: `${METRIC_PREFIX}last_arrival_seconds`,
    type: 'histogram',
    help: "Per drain episode in which traffic reached the app: seconds from its start to the last payload received on an app port (sock_diag tcp_info last_data_recv, to the kernel's tick) or new connection. How long the load balancer kept sending: choose the sleep above this. On the /proc/net fallback (activity_tracking 0) it sees new connections only, to one poll interval.",
    buckets: DRAIN_BUCKETS,
  },
  drainEndConnections: {
    name: `${METRIC_PREFIX}drain_end_connections_total`,
    type: 'counter',
    help: 'Connections still established to the app ports when a drain episode ended, summed over episodes.',
  },
  refusedEstimate: {
    name: `${METRIC_PREFIX}refused_connections_estimate_total`,
    type: 'counter',
    help: "Estimate of connections refused during termination: TCP resets the pod's network namespace sent (/proc/net/snmp OutRsts) in poll intervals that ended with no app listener. Includes any other reset sent then.",
  },
  firstTrafficDelay: {
    name: `${METRIC_PREFIX}first_traffic_delay_seconds`,
    type: 'histogram',
    help: "Once per pod start: seconds from the app's readiness (its readinessProbe, replayed by the sidecar from DRAIN_APP_READINESS, first passing; without one, its listener's appearance) to the first connection or request from anything but the kubelet and the sidecar. How long the load balancer took to send to the new pod: minReadySeconds must cover it.",
    buckets: STARTUP_BUCKETS,
  },
  minReadySeconds: {
    name: `${METRIC_PREFIX}min_ready_seconds`,
    type: 'gauge',
    help: "The workload's minReadySeconds, as inject passed it (DRAIN_MIN_READY_SECONDS); absent when not given.",
    minReadyOnly: true,
  },
  proxyInFlight: {
    name: `${METRIC_PREFIX}proxy_requests_in_flight`,
    type: 'gauge',
    help: 'Proxy mode: requests being forwarded to the app now.',
    proxyOnly: true,
  },
  proxyRequests: {
    name: `${METRIC_PREFIX}proxy_requests_total`,
    type: 'counter',
    help: 'Proxy mode: requests answered, by status class (a tunnel the app accepted with 101 is 1xx); aborted: the client went away first.',
    labels: { code: PROXY_CODES },
    proxyOnly: true,
  },
  proxyRequestDuration: {
    name: `${METRIC_PREFIX}proxy_request_duration_seconds`,
    type: 'histogram',
    help: 'Proxy mode: time from a request to the end of its answer.',
    buckets: REQUEST_BUCKETS,
    proxyOnly: true,
  },
  proxyLateRequests: {
    name: `${METRIC_PREFIX}proxy_late_requests_total`,
    type: 'counter',
    help: 'Proxy mode: requests that arrived after a drain began, until the sidecar exits. Exact.',
    proxyOnly: true,
  },
  lastRequestArrival: {
    name: `${METRIC_PREFIX}last_request_arrival_seconds`,
    type: 'histogram',
    help: 'Proxy mode: per drain episode with late requests, seconds from its start to the last request in it. How long the load balancer kept sending: choose the sleep above this.',
    buckets: DRAIN_BUCKETS,
    proxyOnly: true,
  },
  proxyRefused: {
    name: `${METRIC_PREFIX}proxy_refused_requests_total`,
    type: 'counter',
    help: 'Proxy mode: requests answered 503 during termination because the app could not be reached, by why. Exact.',
    labels: { reason: UPSTREAM_REASONS },
    proxyOnly: true,
  },
  proxyUpstreamErrors: {
    name: `${METRIC_PREFIX}proxy_upstream_errors_total`,
    type: 'counter',
    help: 'Proxy mode: requests the app failed, by why: answered 502 outside termination because the app could not be reached, or cut off because the app failed after its answer had begun.',
    labels: { reason: UPSTREAM_REASONS },
    proxyOnly: true,
  },
  proxyRejected: {
    name: `${METRIC_PREFIX}proxy_rejected_requests_total`,
    type: 'counter',
    help: 'Proxy mode: requests not forwarded because their body could not be framed unambiguously for the app (a Transfer-Encoding other than chunked, an Upgrade with a body) or they cannot be written as HTTP/1.1; answered 400 or 501.',
    proxyOnly: true,
  },
  buildInfo: {
    name: `${METRIC_PREFIX}build_info`,
    type: 'gauge',
    help: 'Always 1; labels carry the sidecar version and the Node.js version running it.',
    labels: { version: [], node_version: [] },
  },
} as const satisfies Record<string, MetricSpec>;

type LabelsOf<S> = S extends { labels: Record<infer L, readonly string[]> } ? L & string : never;

export type Metrics = {
  [K in keyof typeof METRIC_SPECS]: (typeof METRIC_SPECS)[K]['type'] extends 'counter'
    ? Counter<LabelsOf<(typeof METRIC_SPECS)[K]>>
    : (typeof METRIC_SPECS)[K]['type'] extends 'gauge'
      ? Gauge<LabelsOf<(typeof METRIC_SPECS)[K]>>
      : Histogram<LabelsOf<(typeof METRIC_SPECS)[K]>>;
};

/**
 * Every combination of the label values, so labelled series exist (at zero) before anything happens. A label whose
 * values are known only at run time takes them from runtimeValues (port: the app ports); one with none yields none.
 */
function labelCombinations(labels: Record<string, readonly string[]>, runtimeValues: Record<string, string[]>) {
  let combos: Record<string, string>[] = [{}];
  for (const [name, fixed] of Object.entries(labels)) {
    const values = fixed.length > 0 ? fixed : (runtimeValues[name] ?? []);
    combos = combos.flatMap((combo) => values.map((v) => ({ ...combo, [name]: v })));
  }
  return combos;
}

function create(spec: MetricSpec, registers: Registry[], runtimeValues: Record<string, string[]>) {
  const config = { name: spec.name, help: spec.help, labelNames: Object.keys(spec.labels ?? {}), registers };
  const combos = labelCombinations(spec.labels ?? {}, runtimeValues).filter((c) => spec.initialized?.(c) ?? true);
  switch (spec.type) {
    case 'counter': {
      const counter = new Counter(config);
      for (const labels of combos) counter.inc(labels, 0);
      return counter;
    }
    case 'gauge':
      return new Gauge(config);
    case 'histogram': {
      const histogram = new Histogram({ ...config, buckets: spec.buckets });
      for (const labels of combos) histogram.zero(labels);
      return histogram;
    }
  }
}

export const RUNTIME_METRICS = ['basic', 'full', 'none'] as const;
export type RuntimeMetrics = (typeof RUNTIME_METRICS)[number];

// prom-client's default metrics include gauges named *_total, which promtool rejects; each has a twin without the
// suffix carrying the same figure by type, so dropping these loses nothing.
const REJECTED_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/**
 * The Node runtime's figures worth their series in every pod: memory, CPU, event-loop lag, heap and open files, under
 * prom-client's own names so dashboards for its full set still work. Read when scraped.
 */
function basicRuntimeMetrics(registry: Registry): void {
  const registers = [registry];
  const lag = monitorEventLoopDelay({ resolution: 20 });
  lag.enable();
  new Gauge({
    name: 'process_resident_memory_bytes',
    help: 'Resident memory size in bytes.',
    registers,
    collect() {
      this.set(process.memoryUsage.rss());
    },
  });
  let cpuSeconds = 0;
  new Counter({
    name: 'process_cpu_seconds_total',
    help: 'Total user and system CPU time spent in seconds.',
    registers,
    collect() {
      const { user, system } = process.cpuUsage();
      const now = (user + system) / 1e6;
      this.inc(Math.max(0, now - cpuSeconds));
      cpuSeconds = now;
    },
  });
  new Gauge({
    name: 'nodejs_eventloop_lag_p99_seconds',
    help: 'The 99th percentile of the event loop delay since the previous scrape.',
    registers,
    collect() {
      this.set(lag.percentile(99) / 1e9);
      lag.reset();
    },
  });
  new Gauge({
    name: 'nodejs_heap_size_used_bytes',
    help: 'Process heap size used from Node.js in bytes.',
    registers,
    collect() {
      this.set(process.memoryUsage().heapUsed);
    },
  });
  new Gauge({
    name: 'process_open_fds',
    help: 'Number of open file descriptors.',
    registers,
    collect() {
      try {
        this.set(readdirSync('/proc/self/fd').length - 1);
      } catch {
        // Not on Linux: the series stays at its last value.
      }
    },
  });
}

export interface MetricSources {
  version: string;
  nodeVersion: string;
  appPorts: number[];
  /** Proxy mode: its families are exported only then. */
  proxy: boolean;
  /** DRAIN_MIN_READY_SECONDS, when set. */
  minReadySeconds?: number | undefined;
  /** prom-client's default metrics, loaded by the caller for runtime metrics full only. */
  collectDefaultMetrics?: typeof collectDefaultMetrics;
  runtime: RuntimeMetrics;
}

/**
 * Creates every metric; those of proxy mode are registered only in proxy mode, min_ready_seconds only when known
 * (elsewhere they exist, unexported, so the code that counts needs no check). The app_* gauges are set by their owner
 * (Connections#updateGauges) right before a scrape is rendered, so this module knows nothing of where the figures come
 * from.
 */
export function createMetrics(registry: Registry, sources: MetricSources): Metrics {
  if (sources.runtime === 'full') {
    sources.collectDefaultMetrics?.({ register: registry });
    for (const name of REJECTED_DEFAULT_METRICS) registry.removeSingleMetric(name);
  } else if (sources.runtime === 'basic') basicRuntimeMetrics(registry);

  const runtimeValues = { port: sources.appPorts.map(String), listener: sources.proxy ? ['admin', 'proxy'] : ['admin'] };
  const metrics = Object.fromEntries(
    Object.entries(METRIC_SPECS).map(([key, spec]: [string, MetricSpec]) => [
      key,
      create(
        spec,
        (spec.proxyOnly && !sources.proxy) || (spec.minReadyOnly && sources.minReadySeconds === undefined) ? [] : [registry],
        runtimeValues,
      ),
    ]),
  ) as unknown as Metrics;
  metrics.buildInfo.set({ version: sources.version, node_version: sources.nodeVersion }, 1);
  if (sources.minReadySeconds !== undefined) metrics.minReadySeconds.set(sources.minReadySeconds);
  return metrics;
}

type MetricView = { get(): Promise<MetricObjectWithValues<MetricValue<string>>> };
// Internal to prom-client 15 (pinned); test/unit/metrics.test.ts fails if it changes.
type OpenMetricsRenderer = { getMetricsAsString(metric: MetricView): Promise<string> };

/** The exposition for an Accept header: OpenMetrics when asked for, Prometheus text otherwise. */
export async function exposition(registry: Registry, accept: string | undefined): Promise<{ contentType: string; body: string }> {
  if (!accept?.includes('application/openmetrics-text')) {
    return { contentType: registry.contentType, body: await registry.metrics() };
  }
  // Registry#metrics in OpenMetrics mode renames each counter in place (drops _total), which would corrupt every later
  // Prometheus-text scrape of the same metric objects; render through a renamed view of each metric instead.
  const om = new Registry<OpenMetricsContentType>();
  om.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
  const parts = await Promise.all(
    (registry.getMetricsAsArray() as unknown as Metric[]).map((metric) =>
      (om as unknown as OpenMetricsRenderer).getMetricsAsString({
        get: async () => {
          const m = await metric.get();
          // At run time the type is a string; the typings declare an enum.
          return (m.type as unknown) === 'counter' ? { ...m, name: m.name.replace(/_total$/, '') } : m;
        },
      }),
    ),
  );
  return { contentType: Registry.OPENMETRICS_CONTENT_TYPE, body: `${parts.join('\n')}\n# EOF\n` };
}

export function renderMetricsTable(): string {
  const rows = Object.values<MetricSpec>(METRIC_SPECS).map((s) => {
    const labels = Object.entries<readonly string[]>(s.labels ?? {}).map(([name, values]) =>
      values.length > 0 ? `\`${name}\`: ${values.join(', ')}` : `\`${name}\``,
    );
    return `| \`${s.name}\` | ${s.type} | ${labels.join('<br>')} | ${s.help} |`;
  });
  return ['| metric | type | labels | meaning |', '|---|---|---|---|', ...rows].join('\n');
}
