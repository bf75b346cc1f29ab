// What the benchmarks (and some tests) set up alike: a throwaway certificate, floods of connections, the executable.
import { execFileSync, spawn } from 'node:child_process';
import { request } from 'node:http';
import { connect, createServer } from 'node:net';

/** A self-signed P-256 certificate for localhost and 127.0.0.1, written to certFile and keyFile (via a rename). */
export function makeCertificate(certFile, keyFile, cn = 'localhost') {
  const args = ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1'];
  args.push('-subj', `/CN=${cn}`, '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1');
  execFileSync('openssl', [...args, '-keyout', `${keyFile}.new`, '-out', `${certFile}.new`], { stdio: 'ignore' });
  execFileSync('mv', ['-f', `${keyFile}.new`, keyFile]);
  execFileSync('mv', ['-f', `${certFile}.new`, certFile]);
}

/**
 * Opens n connections to 127.0.0.1:port in batches of 500 (the accept queue is finite); each writes `send` once
 * connected, when given. Resolves with the sockets once every one has connected or failed.
 */
export async function flood(port, n, send, localAddress) {
  const sockets = [];
  for (let i = 0; i < n; i += 500) {
    await Promise.all(
      Array.from(
        { length: Math.min(500, n - i) },
        () =>
          new Promise((resolve) => {
            const s = connect({ port, host: '127.0.0.1', localAddress });
            sockets.push(s);
            s.on('error', () => resolve());
            s.on('close', () => resolve());
            s.on('connect', () => {
              if (send) s.write(send);
              resolve();
            });
          }),
      ),
    );
  }
  return sockets;
}

/**
 * Starts a drain-sidecar executable on a free loopback port and resolves once it has logged its start, with the admin
 * port and the proxy's (when the build logs it). stderr: 'inherit' or 'ignore' (a warning of the executable's own).
 */
/** The environment the image gives the executable (Dockerfile ENV). */
export const IMAGE_ENV = { MALLOC_ARENA_MAX: '1' };

export async function startSidecar(exe, env = {}, stderr = 'inherit', args = []) {
  const child = spawn(exe, args, {
    env: { PATH: process.env.PATH, DRAIN_HOST: '127.0.0.1', DRAIN_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', stderr],
  });
  const ports = await new Promise((resolve, reject) => {
    let out = '';
    const onData = (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.includes('"drain-sidecar started"'));
      if (!line) return;
      child.stdout.off('data', onData);
      child.stdout.resume();
      const { address, proxyAddress } = JSON.parse(line);
      resolve({ admin: address.port, proxy: proxyAddress?.port });
    };
    child.stdout.on('data', onData);
    child.on('exit', (code) => reject(new Error(`${exe} exited ${code}: ${out}`)));
  });
  return { child, ...ports };
}

/** A loopback port free now: for an address a build does not log. */
export async function freePort() {
  const probe = createServer();
  await new Promise((r) => probe.listen(0, '127.0.0.1', r));
  const { port } = probe.address();
  await new Promise((r) => probe.close(r));
  return port;
}

/** GET 127.0.0.1:port/path, the body read and dropped; resolves when it has ended. */
export function get(port, path, agent) {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent }, (res) => {
      res.resume();
      res.on('end', resolve);
    });
    req.on('error', reject);
    req.end();
  });
}
