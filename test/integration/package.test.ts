// The CLI installed the ways people install such tools: the npm package (packed here, installed offline into an empty
// folder, run with this machine's Node.js) and the kubectl plugin it carries (kubectl-drain_sidecar on the PATH,
// called through the real kubectl).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';

const ROOT = resolve(import.meta.dirname, '../..');
const FIXTURE = join(ROOT, 'test/fixtures/inject/kubectl-create-deployment.yaml');
let bin = '';
let files: string[] = [];

beforeAll(() => {
  const dir = mkdtempSync(join(tmpdir(), 'package-'));
  // The bundle was built by the test setup; packing must not rebuild what other tests are running.
  const [pack] = JSON.parse(
    execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT, encoding: 'utf8' }),
  ) as { filename: string; files: { path: string }[] }[];
  files = (pack?.files ?? []).map((f) => f.path).sort();
  const prefix = join(dir, 'installed');
  execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--prefix', prefix, join(dir, pack?.filename ?? '')], {
    stdio: 'ignore',
  });
  bin = join(prefix, 'node_modules/.bin');
}, 60_000);

const injectedPods = (stdout: string) =>
  parseAllDocuments(stdout).map(
    (d) => (d.toJS() as { spec: { template: { spec: { initContainers?: { name: string }[] } } } }).spec.template.spec,
  );

describe('the npm package', () => {
  it('holds the command and its bundle only, with no dependency to install', () => {
    expect(files).toEqual([
      'CHANGELOG.md',
      'LICENSE',
      'README.md',
      'bin/drain-sidecar.cjs',
      'dist/drain-sidecar.cjs',
      'package.json',
    ]);
    expect(readdirSync(join(bin, '..'))).not.toContain('hono');
  });

  it('runs inject, installed, on Node.js 20', () => {
    const r = spawnSync(join(bin, 'drain-sidecar'), ['inject', '-f', FIXTURE], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(0);
    expect(injectedPods(r.stdout)[0]?.initContainers?.[0]?.name).toBe('drain-sidecar');
    expect(spawnSync(join(bin, 'drain-sidecar'), ['inject', '--version'], { encoding: 'utf8' }).stdout).toMatch(
      /^drain-sidecar \d/,
    );
  });

  it('is a kubectl plugin: `kubectl drain-sidecar inject -f`', () => {
    const r = spawnSync('kubectl', ['drain-sidecar', 'inject', '-f', FIXTURE], {
      encoding: 'utf8',
      timeout: 20_000,
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
    });
    expect(r.stderr).toContain('injected Deployment/web');
    expect(r.status).toBe(0);
    expect(injectedPods(r.stdout)[0]?.initContainers?.[0]?.name).toBe('drain-sidecar');
  });
});
