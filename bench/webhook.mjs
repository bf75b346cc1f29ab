// The admission webhook on the built executable over TLS: reviews per second and latency (p50, p99) at 1 and 64
// concurrent clients on keep-alive connections, and its RSS idle and under load; then 64 clients sending reviews of a
// 2.9 MB pod (the size etcd allows), which its bound on bytes in flight answers 429 past 4 MiB. Prints figures;
// asserts nothing.
// Usage: npm run build:sea && node bench/webhook.mjs
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeCertificate } from './lab.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SECONDS = 5;
const dir = mkdtempSync(join(tmpdir(), 'bench-webhook-'));
makeCertificate(join(dir, 'tls.crt'), join(dir, 'tls.key'));

/** Starts the webhook; resolves with the child and its port. */
async function start() {
  const child = spawn(
    `${ROOT}dist/drain-sidecar`,
    [
      'webhook',
      `--tls-cert-file=${join(dir, 'tls.crt')}`,
      `--tls-key-file=${join(dir, 'tls.key')}`,
      '--port=0',
      '--host=127.0.0.1',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const port = await new Promise((resolve) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.includes('webhook started'));
      if (line) resolve(JSON.parse(line).address.port);
    });
  });
  child.stdout.resume();
  return { child, port };
}
let { child, port } = await start();

const reviewOf = (annotations) =>
  JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'bench',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      operation: 'CREATE',
      object: {
        metadata: { generateName: 'web-', annotations, labels: { app: 'web', 'drain-sidecar.dev/inject': 'true' } },
        spec: {
          containers: [
            { name: 'web', image: 'web:1', ports: [{ containerPort: 8080 }], readinessProbe: { tcpSocket: { port: 8080 } } },
          ],
        },
      },
    },
  });

const rssMiB = () => Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))[1]) / 102.4) / 10;

const small = reviewOf({});
const large = reviewOf({ 'example.com/blob': 'a'.repeat(2_900_000) });

async function load(concurrency, review = small) {
  const statuses = new Map();
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency, rejectUnauthorized: false });
  const latencies = [];
  let peak = 0;
  const end = performance.now() + SECONDS * 1000;
  const one = () =>
    new Promise((resolve) => {
      const start = performance.now();
      const req = request(
        { host: '127.0.0.1', port, path: '/mutate', method: 'POST', agent, headers: { 'content-type': 'application/json' } },
        (res) => {
          statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
          res.resume();
          res.on('end', () => {
            latencies.push(performance.now() - start);
            resolve();
          });
        },
      );
      // A refused upload may be cut before its body is sent in full: counted, not fatal.
      req.on('error', (err) => {
        statuses.set(err.code ?? 'error', (statuses.get(err.code ?? 'error') ?? 0) + 1);
        latencies.push(performance.now() - start);
        resolve();
      });
      req.end(review);
    });
  const worker = async () => {
    while (performance.now() < end) {
      await one();
      if (latencies.length % (review === small ? 500 : 8) === 0) peak = Math.max(peak, rssMiB());
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const q = (p) => latencies[Math.floor(latencies.length * p)].toFixed(2);
  return {
    concurrency: `${concurrency}${review === small ? '' : ', 2.9 MB reviews'}`,
    answers: [...statuses].map(([status, n]) => `${n} × ${status}`).join(', '),
    reviewsPerSecond: Math.round(latencies.length / SECONDS),
    p50: q(0.5),
    p99: q(0.99),
    peakRss: Math.max(peak, rssMiB()),
  };
}

const idle = rssMiB();
const rows = [await load(1), await load(64)];
child.kill('SIGTERM');
// The large reviews on a fresh process, so that its peak is theirs alone.
({ child, port } = await start());
rows.push(await load(64, large));
child.kill('SIGTERM');
console.log(`drain-sidecar webhook over TLS (keep-alive), ${SECONDS} s per row; idle RSS ${idle} MiB\n`);
console.log('| concurrent clients | reviews/s | answers | p50 (ms) | p99 (ms) | peak RSS (MiB) |');
console.log('|---|---|---|---|---|---|');
for (const r of rows)
  console.log(`| ${r.concurrency} | ${r.reviewsPerSecond} | ${r.answers} | ${r.p50} | ${r.p99} | ${r.peakRss} |`);
