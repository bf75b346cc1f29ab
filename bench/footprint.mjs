// Footprint of the built sidecar: start-to-first-200, idle RSS, and RSS and sleep accuracy under 1000 concurrent
// /sleep?s=2 calls. Prints figures; asserts nothing. Usage: npm run build && node bench/footprint.mjs [command...]
// (default command: node dist/drain-sidecar.cjs).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';

const PORT = 19555;
const CONCURRENT = 1000;
const SLEEP_SECONDS = 2;
const STARTS = 5;
const command = process.argv.length > 2 ? process.argv.slice(2) : [process.execPath, 'dist/drain-sidecar.cjs'];
const agent = new Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY });

function get(path) {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: PORT, path, agent, timeout: 30_000 }, (res) => {
      let body = '';
      res.on('data', (chunk) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode, ms: performance.now() - start, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** RSS and anonymous RSS of a process, in MiB, from /proc. */
function memory(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field) => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rss: kib('VmRSS') / 1024, anon: kib('RssAnon') / 1024 };
}

async function start() {
  const t0 = performance.now();
  const child = spawn(command[0], command.slice(1), {
    env: { DRAIN_HOST: '127.0.0.1', DRAIN_PORT: String(PORT), DRAIN_MAX_HOOKS: String(CONCURRENT * 2), DRAIN_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  for (;;) {
    if (performance.now() - t0 > 10_000) throw new Error('the sidecar did not answer within 10 s');
    const answer = await get('/healthz').catch(() => undefined);
    if (answer?.status === 200) return { child, startMs: performance.now() - t0 };
    await new Promise((r) => setTimeout(r, 2));
  }
}

function stop(child) {
  return new Promise((resolve) => {
    child.once('exit', resolve);
    child.kill('SIGINT');
  });
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
const fmt = (n) => n.toFixed(1);

const startTimes = [];
for (let i = 0; i < STARTS; i++) {
  const { child, startMs } = await start();
  startTimes.push(startMs);
  await stop(child);
}
startTimes.sort((a, b) => a - b);

const { child } = await start();
await new Promise((r) => setTimeout(r, 1000));
const idle = memory(child.pid);

let peak = idle.rss;
const sampler = setInterval(() => {
  peak = Math.max(peak, memory(child.pid).rss);
}, 50);
const calls = await Promise.all(Array.from({ length: CONCURRENT }, () => get(`/sleep?s=${SLEEP_SECONDS}`)));
clearInterval(sampler);
const after = memory(child.pid);
await stop(child);

const ok = calls.filter((c) => c.status === 200).length;
const late = calls.map((c) => c.ms - SLEEP_SECONDS * 1000).sort((a, b) => a - b);
const held = calls.map((c) => JSON.parse(c.body).heldSeconds * 1000 - SLEEP_SECONDS * 1000).sort((a, b) => a - b);
const spread = (xs) =>
  `min ${fmt(xs[0])} ms, p50 ${fmt(quantile(xs, 0.5))} ms, p99 ${fmt(quantile(xs, 0.99))} ms, max ${fmt(xs.at(-1))} ms`;

console.log(`command: ${command.join(' ')}`);
console.log(
  `start to first 200: median ${fmt(quantile(startTimes, 0.5))} ms (min ${fmt(startTimes[0])}, max ${fmt(startTimes.at(-1))}) over ${STARTS} starts`,
);
console.log(`idle RSS: ${fmt(idle.rss)} MiB (anonymous ${fmt(idle.anon)} MiB)`);
console.log(
  `${CONCURRENT} concurrent /sleep?s=${SLEEP_SECONDS}: ${ok} answered 200; peak RSS ${fmt(peak)} MiB, after ${fmt(after.rss)} MiB`,
);
console.log(`held too long, as the sidecar measured it (heldSeconds minus ${SLEEP_SECONDS} s): ${spread(held)}`);
console.log(`answered late, as the client saw it (connect, queueing and sleep, minus ${SLEEP_SECONDS} s): ${spread(late)}`);
