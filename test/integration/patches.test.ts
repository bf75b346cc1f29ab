// Every sidecar that inject or the webhook writes must start: a native sidecar that exits at start blocks the app's
// containers, which is worse than no sidecar. The executable is started with the environment of every sidecar injected
// into the corpus (test/fixtures/corpus) and into pods at the edges of what the sidecar accepts, each in a network
// namespace of its own (unshare -n), so that their ports cannot collide with each other or the machine's.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { runSubcommand } from '../../src/cli.js';
import type { Container, PodSpec } from '../../src/inject.js';
import { review } from '../../src/webhook.js';
import { EXECUTABLE, within } from '../process.js';

const CORPUS = resolve(import.meta.dirname, '../fixtures/corpus');
const files = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : /\.ya?ml$/.test(e.name) ? [join(dir, e.name)] : [],
  );

function inject(text: string, args: string[] = []): string {
  let out = '';
  const write = (t: string) => {
    out += t;
  };
  runSubcommand('inject', [...args, '-'], { stdin: () => Buffer.from(text), out: write, err: () => {} });
  return out;
}

/** The environment of every drain-sidecar container in a manifest stream. */
function sidecarEnvs(text: string): Record<string, string>[] {
  const specs = (o: unknown): PodSpec[] => {
    const m = o as { kind?: string; items?: unknown[]; spec?: { template?: { spec?: PodSpec } } & PodSpec };
    if (m?.kind === 'List') return (m.items ?? []).flatMap(specs);
    if (m?.kind === 'Pod') return [m.spec as PodSpec];
    return m?.spec?.template?.spec ? [m.spec.template.spec] : [];
  };
  return parseAllDocuments(text, { logLevel: 'error' })
    .flatMap((d) => specs(d.toJS()))
    .flatMap((s) => [...(s.initContainers ?? []), ...s.containers])
    .filter((c: Container) => c.name === 'drain-sidecar')
    .map((c) => Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? ''])));
}

/** Starts the executable with env in a network namespace of its own; resolves with how it ended or that it started. */
function starts(env: Record<string, string>): Promise<string> {
  const child = spawn('unshare', ['-n', EXECUTABLE], {
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  return within(
    10_000,
    'the sidecar to start or exit',
    new Promise<string>((done) => {
      const read = (chunk: Buffer) => {
        output += chunk;
        if (output.includes('"msg":"drain-sidecar started"')) {
          child.kill('SIGINT');
          done('started');
        }
      };
      child.stdout.on('data', read);
      child.stderr.on('data', read);
      child.on('exit', (code) => done(`exited ${code}: ${output.slice(-400)}`));
    }),
  ).finally(() => child.kill('SIGKILL'));
}

/** A pod the webhook reviews, with n containers of `ports` ports each. */
function pod(spec: Partial<PodSpec>, containers: number, ports: number[][] = []): unknown {
  return {
    metadata: { name: 'p', labels: { 'drain-sidecar.dev/inject': 'true' } },
    spec: {
      ...spec,
      containers: Array.from({ length: containers }, (_, i) => ({
        name: `c${i}`,
        image: 'x',
        ports: (ports[i] ?? [8000 + i]).map((containerPort) => ({ containerPort })),
      })),
    },
  };
}

function webhookEnv(object: unknown, mode?: string): { env?: Record<string, string>; warnings?: string[] } {
  const o = object as { metadata: { annotations?: Record<string, string> } };
  if (mode) o.metadata.annotations = { 'drain-sidecar.dev/mode': mode };
  const { response } = review(
    {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: { uid: 'u', kind: { group: '', version: 'v1', kind: 'Pod' }, operation: 'CREATE', object },
    },
    { image: 'x', regular: false, replaceHooks: false },
  );
  if (!response.patch) return { warnings: response.warnings ?? [] };
  const patch = JSON.parse(Buffer.from(response.patch, 'base64').toString()) as { path: string; value: unknown }[];
  const added = patch.find((p) => p.path.startsWith('/spec/initContainers'))?.value;
  const container = (Array.isArray(added) ? added[0] : added) as Container;
  return { env: Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? ''])) };
}

describe('every sidecar inject and the webhook write starts', () => {
  it('for every workload of the corpus, in sleep, drain, proxy and observe mode', async () => {
    const envs = new Map<string, Record<string, string>>();
    for (const file of files(CORPUS)) {
      const text = readFileSync(file, 'utf8');
      for (const mode of ['sleep', 'drain', 'proxy', 'observe']) {
        for (const env of sidecarEnvs(inject(text, ['--mode', mode]))) envs.set(JSON.stringify(env), env);
      }
    }
    expect(envs.size).toBeGreaterThan(10);
    const results = await Promise.all([...envs.values()].map(starts));
    expect(results.filter((r) => r !== 'started')).toEqual([]);
  });

  it('at the edges: an app on the sidecar or the proxy port; too many ports or too long a grace period is refused', async () => {
    const onSidecarPort = webhookEnv(pod({ terminationGracePeriodSeconds: 30 }, 1, [[9555]]));
    const onProxyPort = webhookEnv(pod({}, 1, [[9556]]), 'proxy');
    const manyPorts = webhookEnv(pod({}, 1, [Array.from({ length: 64 }, (_, i) => 8000 + i)]));
    const longGrace = webhookEnv(pod({ terminationGracePeriodSeconds: 43_200 }, 1));
    for (const { env } of [onSidecarPort, onProxyPort, manyPorts, longGrace]) expect(await starts(env ?? {})).toBe('started');
    // What the sidecar cannot run with is allowed without it, with the reason as a warning.
    expect(webhookEnv(pod({}, 300)).warnings).toEqual([
      expect.stringContaining('the pod has 300 app ports; the sidecar watches at most 64'),
    ]);
    expect(webhookEnv(pod({}, 1, [Array.from({ length: 65 }, (_, i) => 8000 + i)])).warnings?.[0]).toContain('65 app ports');
    expect(webhookEnv(pod({ terminationGracePeriodSeconds: 43_201 }, 1)).warnings?.[0]).toContain(
      'terminationGracePeriodSeconds is 43201; the sidecar bounds every wait to 43200 s',
    );
  });
});
