// `drain-sidecar inject` and `drain-sidecar check` through the built executable, on a corpus of realistic workloads
// (test/fixtures/inject, test/fixtures/check): outputs valid against the Kubernetes schemas and consistent as the
// manifests' own rules demand; untouched documents and lines byte for byte; injecting twice changes nothing.
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import type { Finding, PodSpec } from '../../src/inject.js';
import { expectConsistentPod, hasSchema, type Manifest, validate } from '../kube.js';
import { EXECUTABLE } from '../process.js';

const FIXTURES = resolve(import.meta.dirname, '../fixtures/inject');
const fixture = (name: string) => join(FIXTURES, name);

/** Runs the executable with input on stdin (or files in args); bounded. */
function run(args: string[], stdin?: string | Buffer) {
  const r = spawnSync(EXECUTABLE, args, { input: stdin, encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const docs = (text: string) =>
  parseAllDocuments(text)
    .map((d) => d.toJS() as Manifest)
    .filter(Boolean);

/** The pod templates of a manifest, with its kind, as inject finds them. */
function podSpecs(m: Manifest): PodSpec[] {
  if (m.kind === 'List') return (m.items as Manifest[]).flatMap(podSpecs);
  if (m.kind === 'Pod') return [m.spec as PodSpec];
  const template = (m.spec as { template?: { spec?: PodSpec } } | undefined)?.template;
  return template?.spec?.containers ? [template.spec] : [];
}

/** Every character of the input is in the output, in order: inject only inserts. */
function onlyAdds(input: string, output: string): boolean {
  let at = 0;
  for (const ch of output) if (ch === input[at]) at++;
  return at === input.length;
}

/** A Deployment of one app container serving 8080 (named http) and 9090, with a line added to its spec and container. */
const deployment = (name: string, { spec = '', container = '' } = {}) => `apiVersion: apps/v1
kind: Deployment
metadata: { name: ${name} }
spec:
  ${spec}
  selector: { matchLabels: { app: ${name} } }
  template:
    metadata: { labels: { app: ${name} } }
    spec:
      containers:
        - name: app
          image: app:1
          ports: [{ name: http, containerPort: 8080 }, { name: admin, containerPort: 9090 }]
          ${container}
`;

describe('drain-sidecar inject', () => {
  it.each(['stream.yaml', 'list.yaml', 'two-deployments.yaml', 'pod-named-ports.yaml', 'rollout.yaml'])(
    '%s: injects every pod template, valid and consistent, and only inserts',
    (name) => {
      const input = readFileSync(fixture(name), 'utf8');
      const { code, stdout, stderr } = run(['inject', fixture(name)]);
      expect(stderr).toMatch(/^injected /m);
      expect(code).toBe(0);
      expect(onlyAdds(input, stdout)).toBe(true);
      const out = docs(stdout);
      expect(out).toHaveLength(docs(input).length);
      const pods = out.flatMap(podSpecs);
      expect(pods.length).toBeGreaterThan(0);
      for (const m of out.flatMap((d) => (d.kind === 'List' ? (d.items as Manifest[]) : [d]))) if (hasSchema(m)) validate(m);
      for (const pod of pods) expectConsistentPod(pod);
      // Injecting twice gives the same bytes.
      const again = run(['inject', '-'], stdout);
      expect(again.code).toBe(0);
      expect(again.stdout).toBe(stdout);
      expect(again.stderr).toMatch(/^unchanged /m);
    },
  );

  it('keeps comments, and documents without a pod template byte for byte', () => {
    const input = readFileSync(fixture('stream.yaml'), 'utf8');
    const { stdout } = run(['inject', fixture('stream.yaml')]);
    expect(stdout).toContain('# The shop: a web tier, its Service and its settings, in one stream.');
    expect(stdout).toContain('  name: web # the storefront');
    expect(stdout).toContain('terminationGracePeriodSeconds: 45   # the app flushes its cache on shutdown');
    const tail = input.slice(input.indexOf('---\n# Untouched'));
    expect(stdout.endsWith(tail)).toBe(true);
  });

  it('derives every setting from the pod spec: grace period, TCP app ports, hook seconds; annotations override', () => {
    const [frontend, backend] = docs(run(['inject', fixture('two-deployments.yaml')]).stdout).flatMap(podSpecs);
    const env = (pod?: PodSpec) => Object.fromEntries((pod?.initContainers?.[0]?.env ?? []).map((e) => [e.name, e.value]));
    expect(env(frontend)).toMatchObject({ DRAIN_GRACE_PERIOD_SECONDS: '30', DRAIN_APP_PORTS: '8080' });
    expect(frontend?.containers[0]?.lifecycle?.preStop?.httpGet).toEqual({ port: 9555, path: '/sleep?s=20' });
    // The UDP port is not an app port; mode and seconds come from the annotations.
    expect(env(backend)).toMatchObject({ DRAIN_GRACE_PERIOD_SECONDS: '25', DRAIN_APP_PORTS: '8443' });
    expect(backend?.containers[0]?.lifecycle).toMatchObject({
      postStart: { exec: { command: ['/bin/warm-up'] } },
      preStop: { httpGet: { port: 9555, path: '/drain?max=15' } },
    });
  });

  it("passes the workload's minReadySeconds on (0 when unset), a pod's from its annotation only; check finds a mismatch", () => {
    const pod = (annotations: string) => `apiVersion: v1
kind: Pod
metadata: { name: bare${annotations} }
spec:
  containers: [{ name: app, image: app:1, ports: [{ containerPort: 8080 }] }]
`;
    const input = [
      deployment('slow-lb', { spec: 'minReadySeconds: 45' }),
      deployment('defaulted'),
      pod(''),
      pod(`, annotations: { drain-sidecar.dev/min-ready-seconds: "30" }`),
    ].join('---\n');
    const { stdout, code } = run(['inject', '-'], input);
    expect(code).toBe(0);
    expect(sidecarSetting(stdout, 'DRAIN_MIN_READY_SECONDS')).toEqual(['45', '0', undefined, '30']);
    const findings = (text: string, about: string) =>
      (JSON.parse(run(['check', '--output', 'json', '-'], text).stdout) as Finding[]).filter((f) => f.message.includes(about));
    // Changed on the workload after injection: check names the value to set.
    const changed = stdout.replace('minReadySeconds: 45', 'minReadySeconds: 90');
    expect(findings(changed, 'MIN_READY')).toEqual([
      expect.objectContaining({
        workload: 'Deployment/slow-lb',
        severity: 'warning',
        message: 'DRAIN_MIN_READY_SECONDS is 45, minReadySeconds 90',
        fix: 'set DRAIN_MIN_READY_SECONDS to 90',
      }),
    ]);
    // An annotation that is no number of seconds is named as such, not compared as NaN.
    const garbled = stdout.replace('drain-sidecar.dev/min-ready-seconds: "30"', 'drain-sidecar.dev/min-ready-seconds: "30s"');
    expect(findings(garbled, 'min-ready')).toEqual([
      expect.objectContaining({
        workload: 'Pod/bare',
        severity: 'error',
        message: 'annotation drain-sidecar.dev/min-ready-seconds is "30s"',
      }),
    ]);
    expect(findings(garbled, 'NaN')).toEqual([]);
  });

  it("passes the app's readinessProbe on as a loopback check, its named port resolved; not one it cannot replay", () => {
    const probed = (name: string, probe: string) => deployment(name, { container: `readinessProbe: ${probe}` });
    const input = [
      probed('http-named', '{ httpGet: { path: /ready, port: http } }'),
      probed('https-admin', '{ httpGet: { path: health, port: 9090, scheme: HTTPS } }'),
      probed('tcp', '{ tcpSocket: { port: 8080 } }'),
      probed('exec', '{ exec: { command: [/bin/check] } }'),
      probed('other-host', '{ httpGet: { host: 10.0.0.9, path: /, port: 8080 } }'),
    ].join('---\n');
    const { stdout, code } = run(['inject', '-'], input);
    expect(code).toBe(0);
    expect(sidecarSetting(stdout, 'DRAIN_APP_READINESS')).toEqual([
      'http://:8080/ready',
      'https://:9090/health',
      'tcp://:8080',
      undefined,
      undefined,
    ]);
  });

  it('takes JSON and gives JSON', () => {
    const { code, stdout } = run(['inject', fixture('deployment.json')]);
    expect(code).toBe(0);
    const out = JSON.parse(stdout) as Manifest;
    validate(out);
    for (const pod of podSpecs(out)) expectConsistentPod(pod);
  });

  it("observes a pod whose app has a preStop hook of its own, keeping the hook and adding the sidecar's /observe", () => {
    const input = readFileSync(fixture('statefulset-exec.yaml'), 'utf8');
    const { code, stdout, stderr } = run(['inject', fixture('statefulset-exec.yaml')]);
    expect(code).toBe(0);
    expect(stderr).toContain('injected StatefulSet/db: observe mode: app hooks kept');
    const [pod] = docs(stdout).flatMap(podSpecs);
    expect(pod?.containers[0]?.lifecycle?.preStop).toEqual(docs(input).flatMap(podSpecs)[0]?.containers[0]?.lifecycle?.preStop);
    expect(pod?.initContainers?.[0]?.lifecycle?.preStop).toEqual({ httpGet: { port: 9555, path: '/observe' } });
    expectConsistentPod(pod as PodSpec);
    expect(run(['check', '--output', 'json', '-'], stdout).stdout).toBe('[]\n');
  });

  it('gives an app container without a hook the native preStop.sleep in observe mode, and check finds one without any', () => {
    const { stdout } = run(['inject', '--mode', 'observe', fixture('kubectl-create-deployment.yaml')]);
    const [pod] = docs(stdout).flatMap(podSpecs);
    expect(pod?.containers[0]?.lifecycle?.preStop).toEqual({ sleep: { seconds: 20 } });
    expectConsistentPod(pod as PodSpec);
    const unheld = run(
      ['check', '--output', 'json', '-'],
      stdout.replace(/ {8}lifecycle:\n {10}preStop:\n {12}sleep:\n {14}seconds: 20\n/, ''),
    );
    expect(JSON.parse(unheld.stdout)).toContainEqual(
      expect.objectContaining({
        severity: 'error',
        container: 'nginx',
        message: expect.stringContaining('observer mode measures the drain but holds nothing'),
      }),
    );
    const tooLong = run(['check', '--output', 'json', '-'], stdout.replace('seconds: 20', 'seconds: 28'));
    expect(JSON.parse(tooLong.stdout)).toContainEqual(
      expect.objectContaining({ message: 'its preStop hook holds 28 s, leaving the app 2 s of the 30 s grace period' }),
    );
  });

  it('with --mode sleep, reports a conflicting exec preStop hook, leaves it and exits 1; --replace-hooks replaces it', () => {
    const input = readFileSync(fixture('statefulset-exec.yaml'), 'utf8');
    const refused = run(['inject', '--mode', 'sleep', fixture('statefulset-exec.yaml')]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('error   StatefulSet/db container db: has a preStop hook already (exec)');
    expect(refused.stdout).toBe(input);
    const replaced = run(['inject', '--mode', 'sleep', '--replace-hooks', fixture('statefulset-exec.yaml')]);
    expect(replaced.code).toBe(0);
    const [pod] = docs(replaced.stdout).flatMap(podSpecs);
    expect(pod?.containers[0]?.lifecycle?.preStop).toEqual({ httpGet: { port: 9555, path: '/sleep?s=20' } });
    validate(docs(replaced.stdout)[0] as Manifest);
  });

  it('skips a CronJob, which serves no traffic, and passes it through unchanged', () => {
    const input = readFileSync(fixture('cronjob.yaml'), 'utf8');
    const { code, stdout, stderr } = run(['inject', fixture('cronjob.yaml')]);
    expect(code).toBe(0);
    expect(stdout).toBe(input);
    expect(stderr).toContain('CronJob/report: skipped: a CronJob serves no traffic to drain');
  });

  it('refuses a hostNetwork pod unless a port is given, saying why', () => {
    const refused = run(['inject', fixture('daemonset-hostnetwork.yaml')]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("hostNetwork pods share the node's ports");
    const given = run(['inject', '--port', '19555', fixture('daemonset-hostnetwork.yaml')]);
    expect(given.code).toBe(0);
    const [pod] = docs(given.stdout).flatMap(podSpecs);
    expect(pod?.containers[0]?.lifecycle?.preStop?.httpGet?.port).toBe(19555);
    expectConsistentPod(pod as PodSpec);
  });

  it('adds a regular container with --regular, for clusters before 1.29', () => {
    const [pod] = docs(run(['inject', '--regular', fixture('rollout.yaml')]).stdout).flatMap(podSpecs);
    expect(pod?.initContainers).toBeUndefined();
    expect(pod?.containers.map((c) => [c.name, c.restartPolicy])).toEqual([
      ['canary', undefined],
      ['drain-sidecar', undefined],
    ]);
  });

  it('proxy mode moves the Service that selects the pod to the proxy port', () => {
    const { code, stdout, stderr } = run(['inject', '--mode', 'proxy', fixture('pod-named-ports.yaml')]);
    // Two TCP ports: proxy mode needs to be told which one it forwards to.
    expect(code).toBe(1);
    expect(stderr).toContain('proxy mode forwards to one app port; the pod has 2');
    expect(stdout).toBe(readFileSync(fixture('pod-named-ports.yaml'), 'utf8'));
    const stream = run(
      ['inject', '--mode', 'proxy', '-'],
      readFileSync(fixture('stream.yaml'), 'utf8').replace('            - { name: metrics, containerPort: 9090 }\n', ''),
    );
    expect(stream.code).toBe(0);
    const [, service] = docs(stream.stdout) as [Manifest, { spec: { ports: { targetPort: number }[] } }];
    expect(service.spec.ports[0]?.targetPort).toBe(9556);
    expect(stream.stderr).toContain('moved Service/web to the proxy port 9556');
  });

  it('refuses a grace period too short for the hook, naming the workload and what to set', () => {
    const { code, stderr } = run(['inject', '--sleep', '28', fixture('rollout.yaml')]);
    expect(code).toBe(1);
    expect(stderr).toContain('Rollout/canary: a 28 s hook leaves the app 2 s of the 30 s grace period');
    expect(stderr).toContain('set terminationGracePeriodSeconds to at least 33');
  });

  it('rewrites files with --in-place, and exits 2 for unreadable input', () => {
    const dir = mkdtempSync(join(tmpdir(), 'inject-'));
    copyFileSync(fixture('rollout.yaml'), join(dir, 'rollout.yaml'));
    expect(run(['inject', '--in-place', dir]).code).toBe(0);
    expect(readFileSync(join(dir, 'rollout.yaml'), 'utf8')).toContain('name: drain-sidecar');
    expect(run(['inject', join(dir, 'missing.yaml')]).code).toBe(2);
    expect(run(['inject', '-'], 'a: [unclosed').code).toBe(2);
    expect(run(['inject', '--mode', 'loud', '-'], '').stderr).toContain('--mode must be sleep, drain, proxy or observe');
  });
});

describe('drain-sidecar uninject', () => {
  it('takes out exactly what inject put in, keeping the hooks inject kept', () => {
    // One container already calls the sidecar (inject keeps its hook); the other gets one.
    const input = [
      'apiVersion: v1',
      'kind: Pod',
      'metadata:',
      '  name: two',
      'spec:',
      '  containers:',
      '  - name: kept',
      '    ports: [{containerPort: 8080}]',
      '    lifecycle:',
      '      preStop:',
      '        httpGet: {port: 9555, path: "/sleep?s=12"}',
      '  - name: added',
      '    ports: [{containerPort: 8081}]',
      '',
    ].join('\n');
    const injected = run(['inject', '-'], input);
    expect(injected.code).toBe(0);
    const [pod] = docs(injected.stdout).flatMap(podSpecs);
    expect(pod?.containers.map((c) => c.lifecycle?.preStop?.httpGet?.path)).toEqual(['/sleep?s=12', '/sleep?s=20']);
    const undone = run(['uninject', '-'], injected.stdout);
    expect(undone.stderr).toContain('uninjected Pod/two');
    expect(undone.stdout).toBe(input);
    // A file without the record is left as it is.
    expect(run(['uninject', '-'], input).stdout).toBe(input);
    // Proxy mode: the Service's targetPort goes back too.
    const stream = readFileSync(fixture('stream.yaml'), 'utf8').replace(
      '            - { name: metrics, containerPort: 9090 }\n',
      '',
    );
    const proxied = run(['inject', '--mode', 'proxy', '-'], stream);
    expect(proxied.stderr).toContain('moved Service/web to the proxy port 9556');
    const back = run(['uninject', '-'], proxied.stdout);
    expect(back.stderr).toContain('uninjected Service/web');
    expect(back.stdout).toBe(stream);
    // In place, as inject.
    const dir = mkdtempSync(join(tmpdir(), 'uninject-'));
    writeFileSync(join(dir, 'pod.yaml'), injected.stdout);
    expect(run(['uninject', '--in-place', '-f', join(dir, 'pod.yaml')]).code).toBe(0);
    expect(readFileSync(join(dir, 'pod.yaml'), 'utf8')).toBe(input);
  });
});

describe('kubectl-shaped flags', () => {
  it('takes -f/--filename (repeatable), -R for subdirectories of a -f directory, -o yaml|json and --version', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flags-'));
    copyFileSync(fixture('rollout.yaml'), join(dir, 'rollout.yaml'));
    mkdirSync(join(dir, 'sub'));
    copyFileSync(fixture('kubectl-create-deployment.yaml'), join(dir, 'sub', 'web.yaml'));
    const injected = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('injected ')).length;
    expect(injected(run(['inject', '-f', dir]).stderr)).toBe(1);
    expect(injected(run(['inject', '-R', '-f', dir]).stderr)).toBe(2);
    expect(injected(run(['inject', dir]).stderr)).toBe(2);
    const both = run(['inject', '-f', fixture('rollout.yaml'), '--filename', fixture('kubectl-create-deployment.yaml')]);
    expect(injected(both.stderr)).toBe(2);
    // -o json of YAML input: the same objects, as kubectl prints them (several as a List).
    const asYaml = docs(both.stdout);
    const asJson = JSON.parse(
      run(['inject', '-o', 'json', '-f', fixture('rollout.yaml'), '-f', fixture('kubectl-create-deployment.yaml')]).stdout,
    ) as { kind: string; items: unknown[] };
    expect(asJson).toEqual({ apiVersion: 'v1', kind: 'List', items: asYaml });
    const fromJson = run(['inject', '-o', 'yaml', '-f', fixture('deployment.json')]);
    expect(docs(fromJson.stdout)).toEqual([JSON.parse(run(['inject', fixture('deployment.json')]).stdout)]);
    expect(run(['inject', '-o', 'xml', '-f', fixture('rollout.yaml')]).code).toBe(2);
    expect(run(['inject', '--version']).stdout).toMatch(/^drain-sidecar \d+\.\d+\.\d+\n$/);
    const json = run(['check', '-o', 'json', '-f', fixture('rollout.yaml')]);
    expect(Array.isArray(JSON.parse(json.stdout))).toBe(true);
  });
});

describe('drain-sidecar check', () => {
  const SEEDED = resolve(import.meta.dirname, '../fixtures/check/seeded.yaml');

  it('finds each seeded misconfiguration with its severity, in text and JSON', () => {
    const json = run(['check', '--output', 'json', SEEDED]);
    expect(json.code).toBe(1);
    const found = (JSON.parse(json.stdout) as Finding[]).map((f) => [f.workload, f.severity]);
    expect(found).toEqual([
      ['Deployment/hook-on-named-port', 'error'],
      ['Deployment/hook-on-app-port', 'error'],
      ['Deployment/hook-too-long', 'error'],
      ['Deployment/grace-mismatch', 'error'],
      ['Deployment/app-port-missing', 'warning'],
      ['Deployment/sidecar-missing', 'error'],
      ['Deployment/regular-sidecar', 'info'],
      ['Deployment/no-readiness-probe', 'warning'],
      ['Deployment/neg-without-min-ready', 'warning'],
      ['Deployment/spot-grace-too-long', 'warning'],
      ['Pod/labelled-not-injected', 'error'],
    ]);
    const text = run(['check', SEEDED]);
    expect(text.stdout).toContain(
      'error   Deployment/hook-on-named-port container app: its preStop hook uses the named port "drain"',
    );
  });

  it('finds nothing above info in every example under k8s/, and nothing at all in what inject wrote', () => {
    const k8s = run(['check', '--output', 'json', resolve(import.meta.dirname, '../../k8s')]);
    expect(k8s.code).toBe(0);
    expect((JSON.parse(k8s.stdout) as Finding[]).filter((f) => f.severity !== 'info')).toEqual([]);
    const injected = run(['inject', fixture('two-deployments.yaml')]).stdout;
    expect(run(['check', '--output', 'json', '-'], injected).stdout).toBe('[]\n');
  });

  it('exits 2 for unreadable input', () => {
    expect(run(['check', '/nonexistent']).code).toBe(2);
  });

  it('reports a meshed pod whose hook port the mesh captures, and a mesh proxy that stops before the hook ends', () => {
    const corpus = (name: string) => readFileSync(join(import.meta.dirname, '../fixtures/corpus', name), 'utf8');
    const findings = (text: string) => JSON.parse(run(['check', '--output', 'json', '-'], text).stdout) as Finding[];
    const istio = run(['inject', '-'], corpus('istio/native-sidecar-opt-out.injected.yaml')).stdout;
    expect(findings(istio).map((f) => f.message)).not.toContainEqual(expect.stringMatching(/captures/));
    const captured = findings(istio.replace(/ *traffic\.sidecar\.istio\.io\/excludeInboundPorts: "9555"\n/, ''));
    expect(captured).toContainEqual(
      expect.objectContaining({
        severity: 'error',
        message: expect.stringContaining("the istio proxy captures the hook's port 9555"),
        fix: expect.stringContaining('add 9555 to the annotation traffic.sidecar.istio.io/excludeInboundPorts'),
      }),
    );
    const early = (list: Finding[]) => list.filter((f) => f.container?.endsWith('-proxy')).map((f) => f.message);
    expect(early(findings(istio))).toEqual([
      expect.stringContaining("stops 5 s after the hooks start, while the app's hook holds 20 s"),
    ]);
    const drained = istio.replace(
      '    istio.io/rev: default\n',
      `    istio.io/rev: default\n    proxy.istio.io/config: '{"terminationDrainDuration": "20s"}'\n`,
    );
    expect(early(findings(drained))).toEqual([]);
    const linkerd = run(['inject', '-'], corpus('linkerd/emojivoto_deployment_regular_proxy.golden.yml')).stdout;
    const [warning] = findings(linkerd).filter((f) => f.container === 'linkerd-proxy');
    expect(warning?.fix).toContain('config.alpha.linkerd.io/proxy-wait-before-exit-seconds: "20"');
    const waiting = linkerd.replace(
      '      annotations:\n',
      '      annotations:\n        config.alpha.linkerd.io/proxy-wait-before-exit-seconds: "20"\n',
    );
    expect(early(findings(waiting))).toEqual([]);
    // A native sidecar proxy (Istio's and Linkerd's default now) outlives the app: nothing to report.
    const native = run(['inject', '-'], corpus('linkerd/emojivoto_deployment.golden.yml')).stdout;
    expect(early(findings(native))).toEqual([]);
  });
});

const CORPUS = resolve(import.meta.dirname, '../fixtures/corpus');
const corpusFile = (name: string) => join(CORPUS, name);
const sidecarEnv = (pod?: PodSpec) =>
  Object.fromEntries(
    ([...(pod?.initContainers ?? []), ...(pod?.containers ?? [])].find((c) => c.name === 'drain-sidecar')?.env ?? []).map((e) => [
      e.name,
      e.value,
    ]),
  );
/** One sidecar setting of every pod template in inject's output, in order (undefined where it is not set). */
const sidecarSetting = (out: string, name: string) =>
  docs(out)
    .flatMap(podSpecs)
    .map((p) => sidecarEnv(p)[name]);

describe('drain-sidecar inject on real pod shapes', () => {
  it('injects what `kubectl create deployment -o yaml` writes (sequences not indented) at the right place', () => {
    const { code, stdout } = run(['inject', fixture('kubectl-create-deployment.yaml')]);
    expect(code).toBe(0);
    const [deployment] = docs(stdout);
    validate(deployment as Manifest);
    const [pod] = podSpecs(deployment as Manifest);
    expect(pod?.containers[0]).toMatchObject({
      name: 'nginx',
      resources: {},
      lifecycle: { preStop: { httpGet: { port: 9555 } } },
    });
    expect(stdout).toContain('      containers:\n      - image: nginx\n');
    expect(stdout).toContain('      initContainers:\n      - name: drain-sidecar\n');
  });

  it('takes the app ports from the Service that selects the pod (named targetPorts resolved), leaving out the metrics port', () => {
    const stream = `${readFileSync(corpusFile('podinfo/kustomize_deployment.yaml'), 'utf8')}---\n${readFileSync(corpusFile('podinfo/kustomize_service.yaml'), 'utf8')}`;
    const [pod] = docs(run(['inject', '-'], stream).stdout).flatMap(podSpecs);
    expect(sidecarEnv(pod).DRAIN_APP_PORTS).toBe('9898,9999');
    // Alone, the metrics port (http-metrics) is still left out.
    const [alone] = docs(run(['inject', corpusFile('podinfo/kustomize_deployment.yaml')]).stdout).flatMap(podSpecs);
    expect(sidecarEnv(alone).DRAIN_APP_PORTS).toBe('9898,9999');
    // --app-ports overrides the derivation; the workload's own annotation overrides --app-ports.
    const given = docs(run(['inject', '--app-ports', '9797', '-'], stream).stdout).flatMap(podSpecs)[0];
    expect(sidecarEnv(given).DRAIN_APP_PORTS).toBe('9797');
    const annotated = stream.replace('      annotations:\n', '      annotations:\n        drain-sidecar.dev/app-ports: "9898"\n');
    expect(
      sidecarEnv(docs(run(['inject', '--app-ports', '9797', '-'], annotated).stdout).flatMap(podSpecs)[0]).DRAIN_APP_PORTS,
    ).toBe('9898');
    expect(run(['inject', '--app-ports', '80,x', '-'], stream).code).toBe(2);
    // Proxy mode forwards HTTP/1.1: the gRPC port is refused, with the reason.
    const grpc = run(
      ['inject', '--mode', 'proxy', '-'],
      stream.replace('      annotations:\n', '      annotations:\n        drain-sidecar.dev/app-ports: "9999"\n'),
    );
    expect(grpc.stderr).toContain('proxy mode forwards HTTP/1.1, and port 9999 is declared as grpc');
    expect(grpc.code).toBe(1);
  });

  it('moves the sidecar off 9555 when the app listens there, in DRAIN_PORT, the hook and the probes alike', () => {
    // Online Boutique's ad service listens on 9555 with a 5 s grace period: refused, with a grace period that works.
    const input = readFileSync(corpusFile('online-boutique/adservice.yaml'), 'utf8');
    const refused = run(['inject', '-'], input);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('set terminationGracePeriodSeconds to at least 10');
    expect(refused.stderr).not.toMatch(/-\d/);
    const fixed = input.replace('terminationGracePeriodSeconds: 5', 'terminationGracePeriodSeconds: 10');
    const { code, stdout } = run(['inject', '-'], fixed);
    expect(code).toBe(0);
    const [pod] = docs(stdout).flatMap(podSpecs);
    expect(sidecarEnv(pod)).toMatchObject({ DRAIN_PORT: '9557', DRAIN_APP_PORTS: '9555', DRAIN_DEFAULT_SLEEP_SECONDS: '5' });
    expect(pod?.containers[0]?.lifecycle?.preStop?.httpGet).toEqual({ port: 9557, path: '/sleep?s=5' });
    expectConsistentPod(pod as PodSpec);
    // The proxy's port moves too when the app uses it.
    const proxied = run(
      ['inject', '--mode', 'proxy', '-'],
      readFileSync(fixture('kubectl-create-deployment.yaml'), 'utf8').replace('containerPort: 8080', 'containerPort: 9556'),
    );
    const [proxyPod] = docs(proxied.stdout).flatMap(podSpecs);
    expect(sidecarEnv(proxyPod)).toMatchObject({ DRAIN_PROXY_LISTEN: '9557', DRAIN_PROXY_UPSTREAM: '127.0.0.1:9556' });
    expectConsistentPod(proxyPod as PodSpec);
  });

  it('refuses a hook shorter than 5 s, and a grace period it names works once applied', () => {
    const short = run(['inject', '--sleep', '3', fixture('rollout.yaml')]);
    expect(short.code).toBe(1);
    expect(short.stderr).toContain('a 3 s hook ends before a load balancer lets go of the pod');
    for (const grace of [1, 5, 9]) {
      const input = readFileSync(fixture('kubectl-create-deployment.yaml'), 'utf8').replace(
        '    spec:\n      containers:',
        `    spec:\n      terminationGracePeriodSeconds: ${grace}\n      containers:`,
      );
      const refused = run(['inject', '-'], input);
      expect(refused.code).toBe(1);
      const advised = Number(/at least (\d+)/.exec(refused.stderr)?.[1]);
      const applied = run(
        ['inject', '-'],
        input.replace(`terminationGracePeriodSeconds: ${grace}`, `terminationGracePeriodSeconds: ${advised}`),
      );
      expect(applied.code).toBe(0);
      const [pod] = docs(applied.stdout).flatMap(podSpecs);
      expect(Number(sidecarEnv(pod).DRAIN_DEFAULT_SLEEP_SECONDS)).toBeGreaterThanOrEqual(5);
      expectConsistentPod(pod as PodSpec);
    }
  });

  it('passes a pod template that serves nothing known through unchanged, with a note, exit 0', () => {
    const input = readFileSync(corpusFile('online-boutique/loadgenerator.yaml'), 'utf8');
    const { code, stdout, stderr } = run(['inject', '-'], input);
    expect(code).toBe(0);
    expect(stdout).toBe(input);
    expect(stderr).toContain('Deployment/loadgenerator: skipped: no container declares a port');
  });

  it("never hooks a mesh proxy, and excludes the sidecar's port from the mesh's capture, merged with what is there", () => {
    const { stdout } = run(['inject', corpusFile('istio/native-sidecar-opt-out.injected.yaml')]);
    const [pod] = docs(stdout) as unknown as [{ metadata: { annotations: Record<string, string> }; spec: PodSpec }];
    expect(pod.spec.containers.map((c) => [c.name, c.lifecycle?.preStop !== undefined])).toEqual([
      ['hello', true],
      ['istio-proxy', false],
    ]);
    expect(pod.metadata.annotations['traffic.sidecar.istio.io/excludeInboundPorts']).toBe('9555');
    const merged = run(
      ['inject', '-'],
      readFileSync(corpusFile('istio/native-sidecar-opt-out.injected.yaml'), 'utf8').replace(
        '    istio.io/rev: default\n',
        '    istio.io/rev: default\n    traffic.sidecar.istio.io/excludeInboundPorts: "8081"\n',
      ),
    );
    expect(
      (docs(merged.stdout)[0] as unknown as typeof pod).metadata.annotations['traffic.sidecar.istio.io/excludeInboundPorts'],
    ).toBe('8081,9555');
  });

  it('--in-place writes all files or none, each atomically with its mode kept', () => {
    const dir = mkdtempSync(join(tmpdir(), 'inject-'));
    const good = join(dir, 'a.yaml');
    const shared = join(dir, 'b.yaml');
    copyFileSync(fixture('rollout.yaml'), good);
    chmodSync(good, 0o640);
    // A pod template reached through an alias: inject cannot edit it without editing the anchor's other users.
    writeFileSync(
      shared,
      'base: &c\n  name: a\n  ports: [{containerPort: 80}]\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - *c\n',
    );
    const before = [readFileSync(good, 'utf8'), readFileSync(shared, 'utf8')];
    const refused = run(['inject', '--in-place', dir]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`${shared}:8: spec.containers.0 is an alias (*c)`);
    expect(refused.stderr).toContain('no file written');
    expect([readFileSync(good, 'utf8'), readFileSync(shared, 'utf8')]).toEqual(before);
    // An unreadable input: nothing is written either.
    writeFileSync(shared, Buffer.from([0x6b, 0x3a, 0x20, 0xff, 0x0a]));
    expect(run(['inject', '--in-place', dir]).code).toBe(2);
    expect(readFileSync(good, 'utf8')).toBe(before[0]);
    rmSync(shared);
    expect(run(['inject', '--in-place', dir]).code).toBe(0);
    expect(readFileSync(good, 'utf8')).toContain('name: drain-sidecar');
    expect(statSync(good).mode & 0o777).toBe(0o640);
    expect(readdirSync(dir)).toEqual(['a.yaml']);
  });

  it('answers hostile input with one clear line and exit 2', () => {
    const bomb = [
      'a: &a [x,x,x,x,x,x,x,x,x]',
      ...'bcdefgh'.split('').map((k, i) => `${k}: &${k} [${`*${'abcdefg'[i]},`.repeat(9)}]`),
    ].join('\n');
    for (const input of [
      bomb,
      `${'['.repeat(100_000)}${']'.repeat(100_000)}`,
      Buffer.from([0xff, 0xfe, 0x6b, 0x00, 0x3a, 0x00]),
    ]) {
      const { code, stderr } = run(['inject', '-'], input);
      expect(code).toBe(2);
      expect(stderr.trim().split('\n')).toHaveLength(1);
      expect(stderr).toMatch(/^drain-sidecar inject: \(stdin\)/);
    }
    // A containerPort the API server would refuse is named, not read as no port.
    const stringPort = run(
      ['inject', '-'],
      'kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, ports: [{containerPort: "8080"}]}\n',
    );
    expect(stringPort.code).toBe(1);
    expect(stringPort.stderr).toContain(`Pod/p: a's containerPort "8080" is not a number`);
    // Flow-style YAML is YAML, not broken JSON.
    const flow = run(
      ['inject', '-'],
      '{apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: a, image: x, ports: [{containerPort: 80}]}]}}\n',
    );
    expect(flow.code).toBe(0);
    expectConsistentPod(podSpecs(docs(flow.stdout)[0] as Manifest)[0] as PodSpec);
  });
});
