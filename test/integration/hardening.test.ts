// The built executable under a careless user and an attacker: configuration that can never work, start-up files that
// are not what they should be, hook paths the HTTP parser rejects, and ports flooded with idle and slow connections.

import { execFileSync } from 'node:child_process';
import { copyFileSync, linkSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { flood as openConnections } from '../../bench/lab.mjs';
import { cleanup, listenLocal, onCleanup } from '../cleanup.js';
import { get, metric, rawExchange, statusLines } from '../http.js';
import { ADDON, EXECUTABLE, run, type SidecarProcess, startSidecarProcess, within } from '../process.js';

afterEach(cleanup);

function stopAfter(sidecar: SidecarProcess): SidecarProcess {
  onCleanup(() => sidecar.child.kill('SIGKILL'));
  return sidecar;
}

describe('configuration that can never work', () => {
  it.each([
    [
      'a token with a trailing newline',
      { DRAIN_HOOK_TOKEN: 's3cret\n' },
      '--hook-token (DRAIN_HOOK_TOKEN) has leading or trailing whitespace',
    ],
    [
      'more app ports than the addon filters',
      { DRAIN_APP_PORTS: Array.from({ length: 65 }, (_, i) => 1000 + i).join(',') },
      '--app-ports (DRAIN_APP_PORTS) must list at most 64 ports',
    ],
    [
      'a proxy forwarding to itself',
      { DRAIN_PROXY_LISTEN: '8080', DRAIN_PROXY_UPSTREAM: '127.0.0.1:8080' },
      "not the proxy's own --proxy-listen 8080",
    ],
    [
      'a proxy forwarding to the admin port',
      { DRAIN_PROXY_LISTEN: '8080', DRAIN_PROXY_UPSTREAM: '127.0.0.1:9555' },
      "not the sidecar's own --port 9555",
    ],
    [
      'an upstream that is no address',
      { DRAIN_PROXY_LISTEN: '8080', DRAIN_PROXY_UPSTREAM: '127.0.0.999:80' },
      'must be on loopback',
    ],
    ['a listen host that is no address', { DRAIN_HOST: 'not-an-ip' }, '--host (DRAIN_HOST) must be an IP address'],
  ])('%s exits 2 with a line naming it', async (_name, env, line) => {
    const proc = run([], env);
    expect(await within(5000, 'the exit', proc.exited)).toEqual({ code: 2, signal: null });
    expect(proc.stderr()).toContain(line);
  });

  it('reports a cross-field error together with a field error', async () => {
    const proc = run([], { DRAIN_PORT: 'x', DRAIN_DEFAULT_SLEEP_SECONDS: '30', DRAIN_MAX_SLEEP_SECONDS: '25' });
    expect(await within(5000, 'the exit', proc.exited)).toEqual({ code: 2, signal: null });
    expect(proc.stderr()).toContain('--port (DRAIN_PORT) must be a whole number');
    expect(proc.stderr()).toContain('must not exceed --max-sleep-seconds');
  });

  it('never echoes the value of a mistyped flag, which may be a secret', async () => {
    for (const args of [['--hook-tokn', 'hunter2-secret'], ['--hook-tokn=hunter2-secret'], ['hunter2-secret']]) {
      const proc = run(args);
      expect(await within(5000, 'the exit', proc.exited)).toEqual({ code: 2, signal: null });
      expect(proc.stderr()).toContain('drain-sidecar: invalid configuration');
      expect(proc.stderr()).not.toContain('hunter2');
    }
  });
});

describe('start-up files', () => {
  /** The executable (hard-linked, it is large) with an addon of our choosing beside it. */
  function executableWithAddon(addon: Buffer): string {
    const dir = mkdtempSync(join(tmpdir(), 'sidecar-'));
    onCleanup(() => rmSync(dir, { recursive: true, force: true }));
    const exe = join(dir, 'drain-sidecar');
    try {
      linkSync(EXECUTABLE, exe);
    } catch {
      copyFileSync(EXECUTABLE, exe);
    }
    writeFileSync(join(dir, 'drain-sidecar-sockdiag.node'), addon);
    return exe;
  }

  it('falls back to /proc/net with one warning when the addon file is truncated', async () => {
    const whole = readFileSync(ADDON);
    const exe = executableWithAddon(whole.subarray(0, Math.floor(whole.length / 2)));
    const proc = run([], { DRAIN_HOST: '127.0.0.1', DRAIN_PORT: '0', DRAIN_APP_PORTS: '1' }, exe);
    onCleanup(() => proc.child.kill('SIGKILL'));
    await within(
      10_000,
      'the start',
      (async () => {
        while (!proc.stdout().includes('drain-sidecar started')) await new Promise((r) => setTimeout(r, 50));
      })(),
    );
    const lines = proc
      .stdout()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.filter((l) => l.level === 'warn')).toEqual([
      expect.objectContaining({ msg: expect.stringContaining('no sock_diag addon') }),
    ]);
    const port = lines.find((l) => l.msg === 'drain-sidecar started').address.port;
    expect(await metric(port, 'drain_sidecar_connection_tracking')).toBe(1);
    expect(await metric(port, 'drain_sidecar_activity_tracking')).toBe(0);
  });

  it('starts and serves when DRAIN_PROC_NET_DIR holds a FIFO instead of a table', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'proc-net-'));
    onCleanup(() => rmSync(dir, { recursive: true, force: true }));
    execFileSync('mkfifo', [join(dir, 'tcp'), join(dir, 'snmp')]);
    const sidecar = stopAfter(await startSidecarProcess({ DRAIN_APP_PORTS: '1', DRAIN_PROC_NET_DIR: dir }));
    expect((await within(5000, '/healthz', get(sidecar.port, '/healthz'))).status).toBe(200);
  });
});

describe('hooks the HTTP parser rejects', () => {
  it.each([
    ['a space in the query', 'GET /sleep?s= 0.5 HTTP/1.1\r\nHost: pod\r\n\r\n'],
    ['raw non-ASCII in the query', 'GET /sleep?s=0.5\u00a0 HTTP/1.1\r\nHost: pod\r\n\r\n'],
    ['a double-slash /drain with a space', 'GET //drain?max= 1 HTTP/1.1\r\nHost: pod\r\n\r\n'],
    ['a backslash in the path', 'GET /sleep\\?s=0.5 HTTP/1.1\r\nHost: pod\r\n\r\n'],
  ])('%s: held for the default, then answered 400 with JSON, logged and counted', async (_name, request) => {
    const sidecar = stopAfter(await startSidecarProcess({ DRAIN_DEFAULT_SLEEP_SECONDS: '0.5', DRAIN_MIN_SECONDS: '0' }));
    const start = performance.now();
    const { text } = await rawExchange(sidecar.port, Buffer.from(request, 'latin1'), 2000);
    const heldMs = performance.now() - start;
    expect(heldMs).toBeGreaterThanOrEqual(500);
    expect(statusLines(text)).toEqual([400]);
    const body = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4));
    expect(body).toMatchObject({ error: 'bad_request', heldSeconds: expect.any(Number), hint: expect.stringContaining('held') });
    expect(body.heldSeconds).toBeGreaterThanOrEqual(0.5);
    const endpoint = request.includes('drain') ? 'drain' : 'sleep';
    expect(await metric(sidecar.port, `drain_sidecar_hook_calls_total{endpoint="${endpoint}",outcome="malformed"}`)).toBe(1);
    expect(await metric(sidecar.port, 'drain_sidecar_invalid_requests_total{reason="malformed_http"}')).toBe(1);
    expect(sidecar.lines).toContainEqual(
      expect.objectContaining({ level: 'error', msg: 'malformed hook call; holding the default' }),
    );
  });

  it('answers other requests the parser rejects at once with JSON, logged and counted', async () => {
    const sidecar = stopAfter(await startSidecarProcess());
    for (const request of [
      'GET /healthz HTTP/1.0\r\nX: \u0001\r\n\r\n',
      'GET /a\\b HTTP/1.1\r\nHost: pod\r\n\r\n',
      'NONSENSE\r\n\r\n',
    ]) {
      const { text, closed } = await rawExchange(sidecar.port, Buffer.from(request, 'latin1'));
      expect(statusLines(text)).toEqual([400]);
      expect(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: 'bad_request' });
      expect(closed).toBe(true);
    }
    expect(await metric(sidecar.port, 'drain_sidecar_invalid_requests_total{reason="malformed_http"}')).toBe(3);
    expect(sidecar.lines.filter((l) => l.msg === 'malformed http request')).toHaveLength(3);
  });

  it('serves an HTTP/1.0 request without Host', async () => {
    const sidecar = stopAfter(await startSidecarProcess());
    const { text } = await rawExchange(sidecar.port, 'GET /healthz HTTP/1.0\r\n\r\n');
    expect(text).toMatch(/^HTTP\/1\.1 200 /);
  });

  it('refuses a parser-rejected hook without the token, when one is set', async () => {
    const sidecar = stopAfter(await startSidecarProcess({ DRAIN_HOOK_TOKEN: 'tok', DRAIN_DEFAULT_SLEEP_SECONDS: '0.3' }));
    const { text } = await rawExchange(sidecar.port, 'GET /sleep?s= 1 HTTP/1.1\r\nHost: pod\r\n\r\n');
    expect(statusLines(text)).toEqual([401]);
    const held = await rawExchange(
      sidecar.port,
      'GET /sleep?s= 1 HTTP/1.1\r\nHost: pod\r\nAuthorization: Bearer tok\r\n\r\n',
      3000,
    );
    expect(statusLines(held.text)).toEqual([400]);
  });
});

/**
 * Floods port with n connections, closed after the test; from a loopback address of their own where given: connections
 * the client closes first wait out TIME_WAIT on the client's ports, and 10,000 of them must not use up those of the
 * tests that follow.
 */
async function flood(port: number, n: number, send?: string, localAddress?: string): Promise<Socket[]> {
  const sockets = await openConnections(port, n, send, localAddress);
  onCleanup(() => {
    for (const s of sockets) s.destroy();
  });
  return sockets;
}

describe('connection floods', () => {
  it('serves /healthz and a hook from a new client with 10,000 idle and 1,000 slow-header connections on the admin port', {
    timeout: 60_000,
  }, async () => {
    const sidecar = stopAfter(await startSidecarProcess());
    await flood(sidecar.port, 10_000);
    await flood(sidecar.port, 1_000, 'GET /healthz HTTP/1.1\r\nHost: po');
    expect((await within(5000, '/healthz', get(sidecar.port, '/healthz'))).status).toBe(200);
    const hook = await within(5000, 'the hook', get(sidecar.port, '/sleep?s=0.2'));
    expect(hook.status).toBe(200);
    expect(hook.ms).toBeGreaterThanOrEqual(200);
    expect(
      await metric(sidecar.port, 'drain_sidecar_shed_connections_total{listener="admin",reason="evicted_idle"}'),
    ).toBeGreaterThan(10_000);
  });

  it.each([
    ['an Upgrade request', 'GET /healthz HTTP/1.1\r\nHost: pod\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n', '127.0.11.1'],
    ['a CONNECT request', 'CONNECT pod:80 HTTP/1.1\r\nHost: pod:80\r\n\r\n', '127.0.12.1'],
    ['a request the parser rejects', 'GET /healthz HTTP/1.1\r\nHost: pod\r\nX: \u0001\r\n\r\n', '127.0.13.1'],
    [
      'a head larger than the parser takes',
      `GET /healthz HTTP/1.1\r\nHost: pod\r\nX: ${'a'.repeat(20_000)}\r\n\r\n`,
      '127.0.14.1',
    ],
  ])(
    'serves /healthz and a hook with 10,000 connections held open after %s on the admin port',
    {
      timeout: 60_000,
    },
    async (_name, request, source) => {
      const sidecar = stopAfter(await startSidecarProcess());
      // Each client sends its request and half-closes, as the reported attack did, leaving its side to the server.
      const sockets = await flood(sidecar.port, 10_000, request, source);
      for (const s of sockets) s.end();
      await new Promise((r) => setTimeout(r, 500));
      for (const wait of [0, 1000]) {
        await new Promise((r) => setTimeout(r, wait));
        expect((await within(5000, '/healthz', get(sidecar.port, '/healthz'))).status).toBe(200);
        const hook = await within(5000, 'the hook', get(sidecar.port, '/sleep?s=0.2'));
        expect(hook.status).toBe(200);
        expect(hook.ms).toBeGreaterThanOrEqual(200);
      }
    },
  );

  it('holds the kubelet hook call sent a second into a storm of 2,000 tokenless hook calls', { timeout: 60_000 }, async () => {
    const sidecar = stopAfter(await startSidecarProcess({ DRAIN_DEFAULT_SLEEP_SECONDS: '2' }));
    await flood(sidecar.port, 2_000, 'GET /sleep?s=3 HTTP/1.1\r\nHost: pod\r\n\r\n', '127.0.15.1');
    await new Promise((r) => setTimeout(r, 1000));
    const kubelet = await within(10_000, "the kubelet's hook", get(sidecar.port, '/sleep?s=2'));
    // Admitted, or past the bound held as long as a malformed call and then refused: held either way, and answered.
    expect([200, 429]).toContain(kubelet.status);
    expect(kubelet.ms).toBeGreaterThanOrEqual(1900);
    expect((await within(5000, '/healthz', get(sidecar.port, '/healthz'))).status).toBe(200);
  });

  it('keeps the admin port healthy and serves a new proxy client with 10,000 idle connections on the proxy port', {
    timeout: 60_000,
  }, async () => {
    const appPort = await listenLocal(createServer((_req, res) => res.end('app')));
    const sidecar = stopAfter(
      await startSidecarProcess({
        DRAIN_PROXY_LISTEN: '127.0.0.1:0',
        DRAIN_PROXY_UPSTREAM: `127.0.0.1:${appPort}`,
      }),
    );
    const { proxyPort } = sidecar;
    await flood(proxyPort, 10_000);
    await flood(proxyPort, 1_000, 'GET / HTTP/1.1\r\nHost: po');
    expect((await within(5000, '/healthz', get(sidecar.port, '/healthz'))).status).toBe(200);
    const answer = await within(5000, 'a proxied request', get(proxyPort, '/'));
    expect(answer.body).toBe('app');
    expect(
      await metric(sidecar.port, 'drain_sidecar_shed_connections_total{listener="proxy",reason="evicted_idle"}'),
    ).toBeGreaterThan(6_000);
  });
});
