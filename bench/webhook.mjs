// The admission webhook on the built executable over TLS: reviews per second and latency (p50, p99) at 1 and 64
// concurrent clients on keep-alive connections, and its RSS idle and under load. Prints figures; asserts nothing.
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

const child = spawn(
  `${ROOT}dist/drain-sidecar`,
  [
    'webhook',
    `--tls-cert-file=${join(dir, 'tls.crt')}`,
    `--tls-key-file=${join(dir, 'tls.key')}`,
    '--port=0',
    '--host=127.0.0.1',
  ],
  {
    stdio: ['ignore', 'pipe', 'inherit'],
  },
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

const review = JSON.stringify({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: {
    uid: 'bench',
    kind: { group: '', version: 'v1', kind: 'Pod' },
    operation: 'CREATE',
    object: {
      metadata: { generateName: 'web-', labels: { app: 'web', 'drain-sidecar.dev/inject': 'true' } },
      spec: {
        containers: [
          { name: 'web', image: 'web:1', ports: [{ containerPort: 8080 }], readinessProbe: { tcpSocket: { port: 8080 } } },
        ],
      },
    },
  },
});

const rssMiB = () => Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))[1]) / 102.4) / 10;

async function load(concurrency) {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency, rejectUnauthorized: false });
  const latencies = [];
  let peak = 0;
  const end = performance.now() + SECONDS * 1000;
  const one = () =>
    new Promise((resolve, reject) => {
      const start = performance.now();
      const req = request(
        { host: '127.0.0.1', port, path: '/mutate', method: 'POST', agent, headers: { 'content-type': 'application/json' } },
        (res) => {
          res.resume();
          res.on('end', () => {
            latencies.push(performance.now() - start);
            resolve();
          });
        },
      );
      req.on('error', reject);
      req.end(review);
    });
  const worker = async () => {
    while (performance.now() < end) {
      await one();
      if (latencies.length % 500 === 0) peak = Math.max(peak, rssMiB());
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const q = (p) => latencies[Math.floor(latencies.length * p)].toFixed(2);
  return {
    concurrency,
    reviewsPerSecond: Math.round(latencies.length / SECONDS),
    p50: q(0.5),
    p99: q(0.99),
    peakRss: Math.max(peak, rssMiB()),
  };
}

const idle = rssMiB();
const rows = [await load(1), await load(64)];
child.kill('SIGTERM');
console.log(`drain-sidecar webhook over TLS (keep-alive), ${SECONDS} s per row; idle RSS ${idle} MiB\n`);
console.log('| concurrent clients | reviews/s | p50 (ms) | p99 (ms) | peak RSS (MiB) |');
console.log('|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.concurrency} | ${r.reviewsPerSecond} | ${r.p50} | ${r.p99} | ${r.peakRss} |`);
