// Passive signals of the app's inbound traffic, side by side in one run (issue 8): their cost per read at 1,000 and
// 10,000 connections, and how well each sees requests on pooled keep-alive connections.
//   namespace counters  /proc/net/snmp Tcp InSegs, /proc/net/netstat IpExt InOctets, /proc/net/dev eth0 rx bytes;
//                       InSegs also net of the sidecar's own traffic (2 segments per scrape answered)
//   /proc/net/tcp       per-socket fields sampled each poll (queues, timer, retransmits, rto, ato, cwnd, ...)
//   sock_diag           tcp_info through the addon: data segments in, and when payload last arrived (the chosen one)
// Two network namespaces this bench creates (root and `ip` needed) and deletes: "pod" (the app on :8080, a stand-in
// sidecar answering scrapes on :9555, the sampler) and "lb" (idle connections, a keep-alive pool sending requests at
// random times, a scraper every second, the database the app calls every 500 ms), joined by a veth pair on
// 198.18.0.0/30. Last, the cost of a read beside another namespace's sockets ("other", loopback only). Prints figures;
// asserts nothing. Usage: sudo node bench/signals.mjs
import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const POD = `dsb-pod-${process.pid}`;
const LB = `dsb-lb-${process.pid}`;
const OTHER = `dsb-other-${process.pid}`;
// Connections another pod holds on the node, both ends in its namespace (within the 20,000 descriptors of one process).
const CROWD = 9000;
const COUNTS = [1000, 10000];
const TRAFFIC_MS = 20_000;
const POLL_MS = 200;

const ip = (...args) => execFileSync('ip', args, { stdio: 'inherit' });

// Bundle the modules under test, so the sampler runs the code the sidecar runs.
const { build } = await import('esbuild');
await build({
  stdin: {
    contents: `export { Connections } from './src/connections.ts';
      export { parseNetCounter, parseTcpTable } from './src/procnet.ts';
      export { createMetrics } from './src/metrics.ts';
      export { Registry } from 'prom-client';
      export { pino } from 'pino';`,
    resolveDir: ROOT,
    loader: 'ts',
  },
  bundle: true,
  platform: 'node',
  format: 'esm',
  outfile: `${ROOT}dist/bench/signals.mjs`,
  logLevel: 'warning',
  banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
});
execFileSync(process.execPath, [`${ROOT}scripts/build-addon.mjs`], { stdio: 'inherit' });

/** A worker in a namespace, with an IPC channel (ip netns exec keeps the channel's descriptor). */
function worker(ns, role, count) {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, `${ROOT}bench/signals-worker.mjs`, role, String(count)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
  child.on('exit', () => clearTimeout(timer));
  const next = () => new Promise((resolve) => child.once('message', resolve));
  return { child, next, send: (m) => child.send(m) };
}

const pct = (n, d) => (d === 0 ? '-' : `${((100 * n) / d).toFixed(0)}%`);
const q = (values, p) => {
  const s = [...values].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(p * s.length))];
};

/** Per poll interval: did requests arrive (client's record), and did each signal say so? */
function judge(polls, requests, methods) {
  const rows = [];
  for (const m of methods) {
    let hit = 0;
    let miss = 0;
    let falseAlarm = 0;
    let quiet = 0;
    const timeErrors = [];
    const delays = [];
    for (let i = 1; i < polls.length; i++) {
      const from = polls[i - 1].at[m.at];
      const to = polls[i].at[m.at];
      const sent = requests.filter((t) => t > from && t <= to);
      const flagged = polls[i][m.key] > 0;
      if (sent.length > 0) {
        if (flagged) {
          hit++;
          for (const t of sent) delays.push(to - t);
          const estimate = m.time ? polls[i][m.time] : to;
          timeErrors.push(Math.abs(estimate - Math.max(...sent)));
        } else miss++;
      } else {
        quiet++;
        if (flagged) falseAlarm++;
      }
    }
    rows.push({
      name: m.name,
      detected: pct(hit, hit + miss),
      falseAlarms: pct(falseAlarm, quiet),
      delay50: q(delays, 0.5),
      delay99: q(delays, 0.99),
      p50: q(timeErrors, 0.5),
      p99: q(timeErrors, 0.99),
    });
  }
  return rows;
}

ip('netns', 'add', POD);
ip('netns', 'add', LB);
try {
  ip('-n', POD, 'link', 'set', 'lo', 'up');
  ip('-n', LB, 'link', 'set', 'lo', 'up');
  ip('-n', LB, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', POD);
  ip('-n', LB, 'addr', 'add', '198.18.0.1/30', 'dev', 'eth0');
  ip('-n', POD, 'addr', 'add', '198.18.0.2/30', 'dev', 'eth0');
  ip('-n', LB, 'link', 'set', 'eth0', 'up');
  ip('-n', POD, 'link', 'set', 'eth0', 'up');

  for (const count of COUNTS) {
    const lb = worker(LB, 'lb', count);
    await lb.next(); // the database listens
    const pod = worker(POD, 'pod', count);
    await pod.next(); // the app and the stand-in sidecar listen
    lb.send('connect');
    await lb.next(); // idle connections and the pool are open
    pod.send({ cost: true });
    const cost = await pod.next();

    console.log(`\n${count} idle connections to the app port, plus a pool of 8 (median of ${cost.iterations} reads):\n`);
    console.log('| signal | ms per read | vs sock_diag |');
    console.log('|---|---|---|');
    for (const [name, ms] of Object.entries(cost.ms)) {
      console.log(`| ${name} | ${ms.toFixed(2)} | ${(ms / cost.ms['sock_diag (chosen): dump + decode + count']).toFixed(2)}x |`);
    }

    pod.send({ sample: TRAFFIC_MS + 1000, pollMs: POLL_MS });
    lb.send({ traffic: TRAFFIC_MS });
    const [{ requests, scrapes }, { polls }] = await Promise.all([lb.next(), pod.next()]);
    const rows = judge(polls, requests, [
      { key: 'inSegs', at: 'counters', name: 'Tcp InSegs delta > 0' },
      { key: 'inSegsNet', at: 'counters', name: 'Tcp InSegs delta, net of own scrapes, > 0' },
      { key: 'inOctets', at: 'counters', name: 'IpExt InOctets delta > 0' },
      { key: 'devRx', at: 'counters', name: '/proc/net/dev eth0 rx bytes delta > 0' },
      { key: 'tcpFields', at: 'fields', name: '/proc/net/tcp per-socket fields changed' },
      { key: 'newConnections', at: 'proc', name: '/proc/net/tcp new connections' },
      { key: 'diagSegments', at: 'diag', name: 'sock_diag data_segs_in delta > 0 (chosen)', time: 'diagLastAt' },
    ]);
    console.log(
      `\ndetection over ${TRAFFIC_MS / 1000} s: ${requests.length} requests on the pool at random times, ` +
        `${scrapes} scrapes of the sidecar, database calls every 500 ms; polls every ${POLL_MS} ms\n`,
    );
    console.log(
      '| signal | intervals with requests detected | quiet intervals flagged (false alarms) | detection delay p50 / p99 (ms) | last-arrival time error p50 / p99 (ms) |',
    );
    console.log('|---|---|---|---|---|');
    for (const r of rows) {
      const f = (n) => (Number.isNaN(n) ? '-' : n.toFixed(1));
      console.log(
        `| ${r.name} | ${r.detected} | ${r.falseAlarms} | ${f(r.delay50)} / ${f(r.delay99)} | ${f(r.p50)} / ${f(r.p99)} |`,
      );
    }
    lb.child.kill('SIGKILL');
    pod.child.kill('SIGKILL');
  }

  // What a read costs follows the node, not the app: the same app (a pool of 8 connections) alone, then with another
  // namespace holding 2 x CROWD established sockets. A sock_diag dump walks the kernel's whole table, every namespace's
  // sockets included, whatever the port filter; /proc/net/tcp walks it too, to print the reader's namespace's.
  ip('netns', 'add', OTHER);
  const lb = worker(LB, 'lb', 0);
  const pod = worker(POD, 'pod', 0);
  try {
    ip('-n', OTHER, 'link', 'set', 'lo', 'up');
    await lb.next();
    await pod.next();
    lb.send('connect');
    await lb.next();
    pod.send({ cost: true });
    const alone = await pod.next();
    const crowd = worker(OTHER, 'crowd', CROWD);
    await crowd.next();
    pod.send({ cost: true });
    const crowded = await pod.next();
    crowd.child.kill('SIGKILL');
    console.log(
      `\nThe app with a pool of 8 connections, alone on the node and beside ${(2 * CROWD).toLocaleString('en-US')} ` +
        `established sockets in another network namespace (median of ${alone.iterations} reads):\n`,
    );
    console.log('| signal | ms per read, alone | beside the other namespace | ratio |');
    console.log('|---|---|---|---|');
    for (const [name, ms] of Object.entries(alone.ms)) {
      const other = crowded.ms[name];
      console.log(`| ${name} | ${ms.toFixed(2)} | ${other.toFixed(2)} | ${(other / ms).toFixed(2)}x |`);
    }
  } finally {
    lb.child.kill('SIGKILL');
    pod.child.kill('SIGKILL');
    ip('netns', 'del', OTHER);
  }
} finally {
  ip('netns', 'del', POD);
  ip('netns', 'del', LB);
}
