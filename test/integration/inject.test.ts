// `drain-sidecar inject` and `drain-sidecar check` through the built executable, on a corpus of realistic workloads
// (test/fixtures/inject, test/fixtures/check): outputs valid against the Kubernetes schemas and consistent as the
// manifests' own rules demand; untouched documents and lines byte for byte; injecting twice changes nothing.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
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
function run(args: string[], stdin?: string) {
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

  it('takes JSON and gives JSON', () => {
    const { code, stdout } = run(['inject', fixture('deployment.json')]);
    expect(code).toBe(0);
    const out = JSON.parse(stdout) as Manifest;
    validate(out);
    for (const pod of podSpecs(out)) expectConsistentPod(pod);
  });

  it('reports a conflicting exec preStop hook, leaves it and exits 1; --replace-hooks replaces it', () => {
    const input = readFileSync(fixture('statefulset-exec.yaml'), 'utf8');
    const refused = run(['inject', fixture('statefulset-exec.yaml')]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('error   StatefulSet/db container db: has a preStop hook already (exec)');
    expect(refused.stdout).toBe(input);
    const replaced = run(['inject', '--replace-hooks', fixture('statefulset-exec.yaml')]);
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
    expect(run(['inject', '--mode', 'loud', '-'], '').stderr).toContain('--mode must be sleep, drain or proxy');
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
});
