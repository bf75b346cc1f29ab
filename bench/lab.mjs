// What the benchmarks and the tests both set up: a throwaway certificate, and floods of connections.
import { execFileSync } from 'node:child_process';
import { connect } from 'node:net';

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
export async function flood(port, n, send) {
  const sockets = [];
  for (let i = 0; i < n; i += 500) {
    await Promise.all(
      Array.from(
        { length: Math.min(500, n - i) },
        () =>
          new Promise((resolve) => {
            const s = connect(port, '127.0.0.1');
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
