// The Kubernetes manifests under k8s/: valid against the schemas of a current Kubernetes release and of the custom
// resources, rendered by kustomize as users render them, and consistent with the sidecar's own configuration.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../../src/config.js';
import type { PodSpec } from '../../src/inject.js';
import { METRIC_SPECS } from '../../src/metrics.js';
import { expectConsistentPod, type Manifest, validate } from '../kube.js';

const K8S = resolve(import.meta.dirname, '../../k8s');

const parse = (text: string) =>
  parseAllDocuments(text)
    .map((d) => d.toJS() as Manifest)
    .filter(Boolean);
const kustomize = (dir: string) => parse(execFileSync('kubectl', ['kustomize', join(K8S, dir)], { encoding: 'utf8' }));

/** Every manifest file: YAML under k8s/ but kustomizations, promtool test files and the component's patch (a fragment by design). */
function manifestFiles(dir = K8S): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return manifestFiles(path);
    const skip =
      e.name === 'kustomization.yaml' || e.name.endsWith('.test.yaml') || relative(K8S, path) === 'component/sidecar.yaml';
    return e.name.endsWith('.yaml') && !skip ? [path] : [];
  });
}

const KUSTOMIZATIONS = ['native', 'regular', 'proxy', 'gke', 'gke-spot', 'component-example', 'monitoring', 'webhook'];
// Kustomizations whose Deployments are apps with the sidecar (webhook/ deploys the webhook itself).
const APP_KUSTOMIZATIONS = new Set(KUSTOMIZATIONS.filter((k) => k !== 'webhook'));
const hasKubectl = spawnSync('kubectl', ['version', '--client']).status === 0;

describe('k8s manifests', () => {
  it.each(manifestFiles().map((f) => relative(K8S, f)))('%s is valid against its schema', (file) => {
    const docs = parse(readFileSync(join(K8S, file), 'utf8'));
    expect(docs.length).toBeGreaterThan(0);
    for (const doc of docs) validate(doc);
  });

  it('rejects a manifest that breaks its schema (the validation is live)', () => {
    const [deployment] = parse(readFileSync(join(K8S, 'native/deployment.yaml'), 'utf8')) as [Manifest];
    const broken = structuredClone(deployment) as unknown as PodDeployment;
    const [sidecar] = broken.spec.template.spec.initContainers ?? [];
    Object.assign(sidecar ?? {}, { ports: [{ containerPort: 'drain' }] });
    expect(() => validate(broken as unknown as Manifest)).toThrow(/containerPort must be integer/);
  });
});

describe.skipIf(!hasKubectl && process.env.CI !== 'true')('k8s kustomizations, rendered with kubectl kustomize', () => {
  const rendered = Object.fromEntries(KUSTOMIZATIONS.map((dir) => [dir, hasKubectl ? kustomize(dir) : []]));
  const deployments = Object.entries(rendered).flatMap(([dir, docs]) =>
    APP_KUSTOMIZATIONS.has(dir) ? docs.filter((d) => d.kind === 'Deployment').map((d) => [dir, d] as const) : [],
  );

  it.each(KUSTOMIZATIONS)('%s renders to valid manifests', (dir) => {
    expect(rendered[dir]?.length).toBeGreaterThan(0);
    for (const doc of rendered[dir] ?? []) validate(doc);
  });

  it('k8s/monitoring loads itself in kube-prometheus-stack: the dashboard ConfigMap and level:metric:operations rules', () => {
    const docs = rendered.monitoring ?? [];
    const configMap = docs.find((d) => d.kind === 'ConfigMap') as
      | { metadata: { labels: Record<string, string> }; data: Record<string, string> }
      | undefined;
    // Grafana's dashboard sidecar loads every ConfigMap labelled grafana_dashboard: "1".
    expect(configMap?.metadata.labels.grafana_dashboard).toBe('1');
    const dashboard = JSON.parse(configMap?.data['grafana-dashboard.json'] ?? '{}') as { panels?: unknown[] };
    expect(dashboard).toEqual(JSON.parse(readFileSync(join(K8S, 'monitoring/grafana-dashboard.json'), 'utf8')));
    expect(dashboard.panels?.length).toBeGreaterThan(0);
    const rules = docs.find((d) => d.kind === 'PrometheusRule') as unknown as {
      spec: { groups: { rules: { record?: string }[] }[] };
    };
    const records = rules.spec.groups.flatMap((g) => g.rules.flatMap((r) => (r.record ? [r.record] : [])));
    expect(records.length).toBeGreaterThan(3);
    // Prometheus' naming: level (the labels kept) : metric : operations; these aggregate by namespace and workload.
    for (const record of records) expect(record).toMatch(/^namespace_workload:drain_sidecar_[a-z_]+:[a-z0-9_]+$/);
  });

  it('the component adds the native sidecar, the hook on the numeric port and the inputs to a plain Deployment', () => {
    const [shop] = (rendered['component-example'] ?? []) as unknown as PodDeployment[];
    expect(rendered['component-example']).toHaveLength(1);
    const pod = shop?.spec.template.spec;
    expect(pod?.initContainers?.map((c) => [c.name, c.restartPolicy])).toEqual([['drain-sidecar', 'Always']]);
    expect(pod?.containers.map((c) => c.lifecycle?.preStop?.httpGet)).toEqual([{ port: 9555, path: '/sleep?s=20' }]);
    expect(pod?.initContainers?.[0]?.env).toEqual([
      { name: 'DRAIN_GRACE_PERIOD_SECONDS', value: '30' },
      { name: 'DRAIN_APP_PORTS', value: '3000' },
    ]);
    // The PodMonitor and the NetworkPolicy select the pod by this label.
    expect(shop?.spec.template.metadata?.labels?.['drain-sidecar/enabled']).toBe('true');
  });

  it('gke-spot fits the whole termination into 25 s', () => {
    const [, spot] = deployments.find(([dir]) => dir === 'gke-spot') ?? [];
    const pod = (spot as unknown as PodDeployment).spec.template.spec;
    expect(pod.terminationGracePeriodSeconds).toBe(25);
    expect(sidecarEnv(pod).DRAIN_GRACE_PERIOD_SECONDS).toBe('25');
  });

  it.each(deployments.map(([dir, d]) => [`${dir}/${d.metadata?.name}`, d] as const))(
    '%s: the hook calls the sidecar, fits the grace period, and the sidecar accepts its own settings',
    (_name, deployment) => {
      expectConsistentPod((deployment as unknown as PodDeployment).spec.template.spec as unknown as PodSpec);
    },
  );
});

describe('k8s monitoring', () => {
  const [rule] = parse(readFileSync(join(K8S, 'monitoring/prometheusrule.yaml'), 'utf8')) as unknown as [
    { spec: { groups: { rules: { expr: string; record?: string; alert?: string }[] }[] } },
  ];

  it('passes promtool check rules', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'rules-')), 'rules.yaml');
    writeFileSync(file, JSON.stringify({ groups: rule.spec.groups }));
    const check = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8', timeout: 10_000 });
    expect(check.stdout + check.stderr).toContain('SUCCESS');
    expect(check.status).toBe(0);
  });

  it('uses only metrics the sidecar exports', () => {
    const known = new Set(Object.values(METRIC_SPECS).map((s) => s.name));
    const used = rule.spec.groups.flatMap((g) => g.rules.flatMap((r) => r.expr.match(/(?<![:\w])drain_sidecar_\w+/g) ?? []));
    expect(used.length).toBeGreaterThan(0);
    for (const name of used) expect(known).toContain(name.replace(/_(bucket|sum|count)$/, ''));
  });

  it('has a Grafana dashboard whose queries use only metrics the sidecar exports', () => {
    const dashboard = JSON.parse(readFileSync(join(K8S, 'monitoring/grafana-dashboard.json'), 'utf8')) as {
      panels: { targets: { expr: string }[] }[];
    };
    const known = new Set(Object.values(METRIC_SPECS).map((s) => s.name));
    const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));
    const used = exprs.flatMap((e) => e.match(/(?<![:\w])drain_sidecar_\w+/g) ?? []);
    expect(used.length).toBeGreaterThan(5);
    for (const name of used) expect(known).toContain(name.replace(/_(bucket|sum|count)$/, ''));
    // promtool parses each query, with Grafana's variables given values.
    const rules = exprs.map((e, i) => ({
      record: `dashboard:query_${i}`,
      expr: e.replaceAll('$__rate_interval', '5m').replace(/\$(cluster|namespace|workload)\b/g, '.*'),
    }));
    const file = join(mkdtempSync(join(tmpdir(), 'dashboard-')), 'rules.yaml');
    writeFileSync(file, JSON.stringify({ groups: [{ name: 'dashboard', rules }] }));
    const check = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8', timeout: 10_000 });
    expect(check.stdout + check.stderr).toContain('SUCCESS');
  });

  it('passes promtool test rules: a firing and a silent case for every alert, a value for every recording rule', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rules-test-'));
    writeFileSync(join(dir, 'prometheusrule.rules.yaml'), JSON.stringify({ groups: rule.spec.groups }));
    const tests = readFileSync(join(K8S, 'monitoring/prometheusrule.test.yaml'), 'utf8');
    writeFileSync(join(dir, 'prometheusrule.test.yaml'), tests);
    const run = spawnSync('promtool', ['test', 'rules', 'prometheusrule.test.yaml'], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(run.stdout + run.stderr).toContain('SUCCESS');
    expect(run.status).toBe(0);
    const cases = (parse(tests)[0] as unknown as TestFile).tests;
    const alertCases = cases.flatMap((c) => c.alert_rule_test ?? []);
    const exprCases = cases.flatMap((c) => c.promql_expr_test ?? []).map((c) => c.expr);
    for (const r of rule.spec.groups.flatMap((g) => g.rules)) {
      if (r.alert) {
        expect(alertCases.some((c) => c.alertname === r.alert && (c.exp_alerts?.length ?? 0) > 0)).toBe(true);
        expect(alertCases.some((c) => c.alertname === r.alert && (c.exp_alerts?.length ?? 0) === 0)).toBe(true);
      }
      if (r.record) expect(exprCases).toContain(r.record);
    }
  });

  it('labels every series with its workload: a Deployment by name, from its ReplicaSet', () => {
    const [monitor] = parse(readFileSync(join(K8S, 'monitoring/podmonitor.yaml'), 'utf8')) as unknown as [
      { spec: { podMetricsEndpoints: { relabelings: { sourceLabels: string[]; regex?: string; targetLabel: string }[] }[] } },
    ];
    const relabelings = monitor.spec.podMetricsEndpoints[0]?.relabelings ?? [];
    // Prometheus's relabeling, for the rules that set workload: anchored regex, $1 or the joined sources by default.
    const workload = (meta: Record<string, string>) => {
      let value: string | undefined;
      for (const r of relabelings.filter((x) => x.targetLabel === 'workload')) {
        const source = r.sourceLabels.map((l) => meta[l] ?? '').join(';');
        const m = new RegExp(`^(?:${r.regex ?? '(.*)'})$`).exec(source);
        if (m) value = m[1] ?? source;
      }
      return value;
    };
    const pod = (name: string, kind?: string, controller?: string) => ({
      __meta_kubernetes_pod_name: name,
      ...(kind && { __meta_kubernetes_pod_controller_kind: kind, __meta_kubernetes_pod_controller_name: controller ?? '' }),
    });
    expect(workload(pod('web-5d8f7c9b4-x2k9q', 'ReplicaSet', 'web-5d8f7c9b4'))).toBe('web');
    expect(workload(pod('my-api-v2-6b7c8d9f4-abcde', 'ReplicaSet', 'my-api-v2-6b7c8d9f4'))).toBe('my-api-v2');
    expect(workload(pod('db-0', 'StatefulSet', 'db'))).toBe('db');
    expect(workload(pod('edge-k7x2p', 'DaemonSet', 'edge'))).toBe('edge');
    expect(workload(pod('debug'))).toBe('debug');
  });

  it('selects Prometheus by the release label kube-prometheus-stack looks for, set in one place', () => {
    const rendered = hasKubectl ? kustomize('monitoring') : [];
    if (!hasKubectl && process.env.CI !== 'true') return;
    for (const kind of ['PodMonitor', 'PrometheusRule']) {
      const doc = rendered.find((d) => d.kind === kind) as { metadata: { labels?: Record<string, string> } } | undefined;
      expect(doc?.metadata.labels?.release).toBe('kube-prometheus-stack');
    }
  });

  it('has a NetworkPolicy that restricts the sidecar port alone and leaves every other port open', () => {
    const [policy] = parse(readFileSync(join(K8S, 'monitoring/networkpolicy.yaml'), 'utf8')) as unknown as [
      { spec: { ingress: { from?: unknown[]; ports: { port: number; endPort?: number; protocol: string }[] }[] } },
    ];
    const openToAll = policy.spec.ingress.filter((r) => !r.from).flatMap((r) => r.ports);
    const open = (port: number, protocol = 'TCP') =>
      openToAll.some((p) => p.protocol === protocol && port >= p.port && port <= (p.endPort ?? p.port));
    for (const port of [1, 80, 3000, 8080, 8443, 9554, 9556, 65535]) expect(open(port)).toBe(true);
    expect(open(53, 'UDP')).toBe(true);
    expect(open(9555)).toBe(false);
    const sidecarRule = policy.spec.ingress.find((r) => r.from && r.ports.some((p) => p.port === 9555));
    expect(sidecarRule?.from).toHaveLength(1);
  });

  it('scrapes more often than the sidecar waits for its final scrape', () => {
    const [monitor] = parse(readFileSync(join(K8S, 'monitoring/podmonitor.yaml'), 'utf8')) as unknown as [
      { spec: { podMetricsEndpoints: { port: string; interval: string }[] } },
    ];
    const defaults = parseConfig({}, []);
    if (defaults.ok !== true) throw new Error('defaults must parse');
    const endpoint = monitor.spec.podMetricsEndpoints[0];
    expect(endpoint?.port).toBe('drain');
    expect(Number.parseInt(endpoint?.interval ?? '', 10)).toBeLessThan(defaults.config.finalScrapeSeconds);
  });
});

interface TestFile {
  tests: {
    alert_rule_test?: { alertname: string; exp_alerts?: unknown[] }[];
    promql_expr_test?: { expr: string }[];
  }[];
}

interface Container {
  name: string;
  restartPolicy?: string;
  env?: { name: string; value?: string }[];
  lifecycle?: { preStop?: { httpGet?: { port: number | string; path: string } } };
  securityContext?: unknown;
}
interface PodDeployment {
  metadata: { labels?: Record<string, string> };
  spec: {
    template: {
      metadata?: { labels?: Record<string, string> };
      spec: { terminationGracePeriodSeconds?: number; initContainers?: Container[]; containers: Container[] };
    };
  };
}

function sidecarEnv(pod: PodDeployment['spec']['template']['spec']): Record<string, string> {
  const sidecar = [...(pod.initContainers ?? []), ...pod.containers].find((c) => c.name === 'drain-sidecar');
  return Object.fromEntries((sidecar?.env ?? []).map((e) => [e.name, e.value ?? '']));
}
