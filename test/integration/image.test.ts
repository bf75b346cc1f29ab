// The real Dockerfile, built with podman on stand-in base images (test/image/standin-bases.sh) and run as a container:
// serves the hook on the host network, runs as 65532 with a read-only root and no capabilities, reads the app's sockets
// through its sock_diag addon there, has no shell, and `podman stop` ends it with exit 0 after a sleep in flight.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pkg from '../../package.json' with { type: 'json' };
import { get, waitForHealthz } from '../http.js';
import { within } from '../process.js';

const ROOT = resolve(import.meta.dirname, '../..');
const IMAGE = 'localhost/drain-sidecar:test';
const CONTAINER = `drain-sidecar-test-${process.pid}`;
const PORT = 19_755;
const env = { ...process.env, CONTAINERS_CONF: resolve(ROOT, 'test/image/containers.conf') };
const hasPodman = spawnSync('podman', ['--version']).status === 0 && process.getuid?.() === 0;

let app: Server | undefined;
let appPort = 0;

const podman = (...args: string[]) => execFileSync('podman', args, { env, encoding: 'utf8', cwd: ROOT, timeout: 600_000 });

describe('the Dockerfile', () => {
  it('builds on the Node version the executable pins', () => {
    const dockerfile = readFileSync(resolve(ROOT, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(
      new RegExp(`^ARG BUILD_BASE=node:${pkg.sea.nodeVersion}-bookworm-slim(@sha256:[0-9a-f]{64})?$`, 'm'),
    );
    expect(dockerfile).toMatch(/^ARG RUNTIME_BASE=gcr\.io\/distroless\/cc-debian12:nonroot@sha256:[0-9a-f]{64}$/m);
    expect(dockerfile).toMatch(/^FROM \$\{BUILD_BASE\} AS build$/m);
    expect(dockerfile).toMatch(/^FROM \$\{RUNTIME_BASE\}$/m);
    expect(dockerfile).toMatch(/^USER 65532:65532$/m);
    expect(dockerfile).toMatch(/^ENTRYPOINT \["\/drain-sidecar"\]$/m);
  });
});

describe.skipIf(!hasPodman && process.env.CI !== 'true')('the image, run with podman', () => {
  beforeAll(async () => {
    app = createServer();
    await new Promise<void>((r) => app?.listen(0, '127.0.0.1', r));
    appPort = (app.address() as { port: number }).port;
    execFileSync('bash', ['test/image/standin-bases.sh'], { env, cwd: ROOT, stdio: 'inherit', timeout: 600_000 });
    // The host's CA bundle is mounted for npm in the build stage, in case TLS to the registry is intercepted.
    const ca = '/etc/ssl/certs/ca-certificates.crt';
    podman(
      'build',
      '--pull=never',
      '--platform',
      'linux/amd64',
      '--network',
      'host',
      '-v',
      `${ca}:${ca}:ro`,
      '--build-arg',
      `NODE_EXTRA_CA_CERTS=${ca}`,
      '--build-arg',
      `VERSION=${pkg.version}`,
      // The stand-in bases carry the real tags, not the real digests.
      '--build-arg',
      `BUILD_BASE=node:${pkg.sea.nodeVersion}-bookworm-slim`,
      '--build-arg',
      'RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot',
      '-t',
      IMAGE,
      '.',
    );
    podman(
      'run',
      '-d',
      '--name',
      CONTAINER,
      '--network',
      'host',
      '--read-only',
      '--cap-drop',
      'ALL',
      '--security-opt',
      'no-new-privileges',
      '-e',
      'DRAIN_HOST=127.0.0.1',
      '-e',
      `DRAIN_PORT=${PORT}`,
      '-e',
      `DRAIN_APP_PORTS=${appPort}`,
      '-e',
      'DRAIN_SHUTDOWN_HOLD_SECONDS=0',
      IMAGE,
    );
  }, 900_000);
  afterAll(() => {
    spawnSync('podman', ['rm', '-f', CONTAINER], { env });
    app?.close();
  });

  it('serves the hook on the host network, as uid 65532', async () => {
    await waitForHealthz(PORT, 15_000, 'the container to serve /healthz');
    expect((await get(PORT, '/sleep?s=0.1')).status).toBe(200);
    const pid = podman('inspect', CONTAINER, '--format', '{{.State.Pid}}').trim();
    expect(readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(/^Uid:\s+65532\s+65532\s+65532\s+65532$/m);
  });

  it("reads the app's sockets through the sock_diag addon, with no capability", async () => {
    expect((await get(PORT, '/status')).json().app).toMatchObject({
      signal: 'sock_diag',
      ports: [{ port: appPort, listening: true }],
    });
  });

  it('holds the executable and its libraries, and no shell', () => {
    const files = execFileSync('bash', ['-c', `podman export ${CONTAINER} | tar -t`], { env, encoding: 'utf8' }).split('\n');
    expect(files).toContain('drain-sidecar');
    expect(files).toContain('drain-sidecar-sockdiag.node');
    expect(files.filter((f) => /(^|\/)(sh|bash|dash|busybox|node)$/.test(f))).toEqual([]);
    expect(podman('image', 'inspect', IMAGE, '--format', '{{.Config.User}} {{.Config.Entrypoint}}').trim()).toBe(
      '65532:65532 [/drain-sidecar]',
    );
  });

  it('runs inject on stdin: `docker run --rm -i <image> inject -`', () => {
    const manifest = readFileSync(resolve(ROOT, 'test/fixtures/inject/kubectl-create-deployment.yaml'));
    const out = execFileSync('podman', ['run', '--rm', '-i', '--network', 'none', IMAGE, 'inject', '-'], {
      env,
      input: manifest,
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(out).toContain('      initContainers:\n      - name: drain-sidecar\n');
  });

  it('answers a sleep in flight, then exits 0 on podman stop once the app is gone', async () => {
    const sleep = get(PORT, '/sleep?s=1');
    await new Promise((r) => setTimeout(r, 300));
    app?.close();
    podman('stop', '-t', '20', CONTAINER);
    expect((await within(5000, 'the sleep', sleep)).status).toBe(200);
    expect(podman('inspect', CONTAINER, '--format', '{{.State.ExitCode}}').trim()).toBe('0');
    expect(podman('logs', CONTAINER)).toContain('"msg":"drain finished"');
  });
});
