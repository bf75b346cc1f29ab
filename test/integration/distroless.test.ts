// The single executable as Kubernetes runs it in a distroless image: a root holding only the executable, its sock_diag
// addon, the shared libraries ldd lists and an /etc/passwd; uid 65532; PID 1 of its own PID namespace with /proc
// mounted; no shell.
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { get, waitForHealthz } from '../http.js';
import { ADDON, EXECUTABLE, within } from '../process.js';

const isRoot = process.getuid?.() === 0;
const PORT = 19_655;
let root = '';

/** Every file under dir, relative to it. */
function tree(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tree(dir, join(prefix, e.name)) : [join(prefix, e.name)],
  );
}

describe.skipIf(!isRoot && process.env.CI !== 'true')('the executable in a distroless-like root', () => {
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'distroless-'));
    chmodSync(root, 0o755);
    const libraries = [EXECUTABLE, ADDON]
      .flatMap((file) => execFileSync('ldd', [file], { encoding: 'utf8' }).split('\n'))
      .map((l) => /(\/\S+) \(0x/.exec(l)?.[1])
      .filter((p): p is string => p !== undefined);
    for (const lib of libraries) {
      mkdirSync(join(root, dirname(lib)), { recursive: true });
      copyFileSync(lib, join(root, lib));
    }
    copyFileSync(EXECUTABLE, join(root, 'drain-sidecar'));
    chmodSync(join(root, 'drain-sidecar'), 0o755);
    copyFileSync(ADDON, join(root, 'drain-sidecar-sockdiag.node'));
    chmodSync(join(root, 'drain-sidecar-sockdiag.node'), 0o755);
    mkdirSync(join(root, 'etc'));
    mkdirSync(join(root, 'proc'));
    writeFileSync(
      join(root, 'etc/passwd'),
      'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n',
    );
    writeFileSync(join(root, 'etc/group'), 'root:x:0:\nnonroot:x:65532:\n');
  });
  afterAll(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('holds nothing but the executable, its addon, their libraries and the user database: no shell, no node', () => {
    const files = tree(root);
    expect(files.filter((f) => !f.startsWith('lib') && !f.startsWith('etc/')).sort()).toEqual([
      'drain-sidecar',
      'drain-sidecar-sockdiag.node',
    ]);
    expect(files.some((f) => /(^|\/)(sh|bash|node)$/.test(f))).toBe(false);
  });

  it('serves as uid 65532 and PID 1, reads the app through sock_diag, and finishes a sleep on SIGTERM', async () => {
    // The app: a listener in the same network namespace (unshare makes new mount and PID namespaces only).
    const app = createServer();
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const appPort = (app.address() as { port: number }).port;
    const child = spawn(
      'unshare',
      [
        '--mount',
        '--pid',
        '--fork',
        `--mount-proc=${join(root, 'proc')}`,
        'chroot',
        '--userspec=65532:65532',
        root,
        '/drain-sidecar',
      ],
      {
        env: {
          PATH: process.env.PATH,
          DRAIN_HOST: '127.0.0.1',
          DRAIN_PORT: String(PORT),
          DRAIN_APP_PORTS: String(appPort),
          DRAIN_SHUTDOWN_HOLD_SECONDS: '0',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      await waitForHealthz(PORT, 10_000, 'the sidecar to serve /healthz');
      // unshare forks the namespace's first process; chroot then becomes the sidecar.
      const sidecarPid = Number(readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim());
      const status = readFileSync(`/proc/${sidecarPid}/status`, 'utf8');
      expect(status).toMatch(/^Uid:\s+65532\s+65532\s+65532\s+65532$/m);
      expect(status).toMatch(/^NSpid:\s+\d+\s+1$/m);
      expect((await get(PORT, '/status')).json().app).toMatchObject({
        signal: 'sock_diag',
        ports: [{ port: appPort, listening: true }],
      });
      app.close();

      const sleep = get(PORT, '/sleep?s=1');
      await new Promise((r) => setTimeout(r, 300));
      process.kill(sidecarPid, 'SIGTERM');
      const answer = await within(5000, 'the sleep to be answered', sleep);
      expect(answer.status).toBe(200);
      expect(await within(5000, 'the exit', exited)).toBe(0);
      expect(stdout).toContain('"msg":"drain finished"');
    } finally {
      child.kill('SIGKILL');
      app.close();
    }
  });
});
