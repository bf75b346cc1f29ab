// The roles of bench/signals.mjs, each in its network namespace, driven over the IPC channel:
//   lb   the database (:5432), then on 'connect' `count` idle connections and a pool of 8 to the app; on {traffic}
//        requests on the pool at random times, a scrape of the sidecar every second; answers the requests' send times
//   pod  the app (:8080, in a child process: it calls the database every 500 ms) and a stand-in sidecar (:9555) that
//        answers scrapes; on {cost} times each signal's read; on {sample} polls every signal and answers the polls
//   app  the app itself, started by pod
//   crowd `count` idle connections to itself on loopback: another pod's sockets on the node
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Agent, createServer, request } from 'node:http';
import { connect, createServer as createTcpServer } from 'node:net';
import { flood } from './lab.mjs';

const [role, countArg] = process.argv.slice(2);
const count = Number(countArg);
const APP = { host: '198.18.0.2', port: 8080 };
const SIDECAR_PORT = 9555;
const DB = { host: '198.18.0.1', port: 5432 };
const POOL = 8;
const epochNow = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const message = () => new Promise((r) => process.once('message', r));
// Every role ends with its parent (the bench kills workers between rounds; an orphaned app would keep its port).
process.on('disconnect', () => process.exit(0));

if (role === 'crowd') {
  // Another pod's sockets on the same node: count connections to a listener in this namespace, both ends here.
  const server = createTcpServer((s) => s.on('error', () => undefined));
  await new Promise((r) => server.listen(7000, '127.0.0.1', r));
  const sockets = await flood(7000, count);
  if (sockets.some((s) => s.destroyed)) throw new Error('crowd: not every connection was made');
  process.send('ready');
} else if (role === 'app') {
  const server = createServer((_req, res) => res.end('ok'));
  server.keepAliveTimeout = 600_000;
  server.maxConnections = count + 100;
  await new Promise((r) => server.listen(APP.port, '0.0.0.0', r));
  // The app's background job: a query every 500 ms on its pooled database connection, with or without requests.
  const db = connect(DB.port, DB.host);
  db.on('data', () => undefined);
  setInterval(() => db.write('SELECT 1;\n'), 500);
  process.send('ready');
} else if (role === 'lb') {
  const db = createTcpServer((s) => s.on('data', (d) => s.write(d)).on('error', () => undefined));
  await new Promise((r) => db.listen(DB.port, DB.host, r));
  process.send('ready');
  await message();
  const idle = [];
  for (let i = 0; i < count; i += 500) {
    await Promise.all(
      Array.from(
        { length: Math.min(500, count - i) },
        () =>
          new Promise((resolve, reject) => {
            const s = connect(APP.port, APP.host, () => resolve());
            s.on('error', reject);
            idle.push(s);
          }),
      ),
    );
  }
  const agent = new Agent({ keepAlive: true, maxSockets: POOL });
  // Resolves with the time the request was handed to the kernel ('finish'), once answered.
  const send = (path, port = APP.port, a = agent) =>
    new Promise((resolve, reject) => {
      let sentAt = 0;
      request({ host: APP.host, port, path, agent: a }, (res) => res.resume().on('end', () => resolve(sentAt)))
        .on('finish', () => {
          sentAt = epochNow();
        })
        .on('error', reject)
        .end();
    });
  await Promise.all(Array.from({ length: POOL }, () => send('/')));
  process.send('connected');

  const { traffic } = await message();
  const scraper = new Agent({ keepAlive: true, maxSockets: 1 });
  let scrapes = 0;
  const scraping = setInterval(() => {
    scrapes++;
    send('/metrics', SIDECAR_PORT, scraper).catch(() => undefined);
  }, 1000);
  const requests = [];
  const end = performance.now() + traffic;
  // Random gaps, mean 350 ms and often longer than a poll: intervals with and without requests in one run.
  while (performance.now() < end) {
    await sleep(-350 * Math.log(1 - Math.random()));
    requests.push(await send('/'));
  }
  clearInterval(scraping);
  process.send({ requests, scrapes });
} else {
  const { Connections, parseNetCounter, parseTcpTable, createMetrics, Registry, pino } = await import(
    '../dist/bench/signals.mjs'
  );
  const addon = { exports: {} };
  process.dlopen(addon, new URL('../dist/drain-sidecar-sockdiag.node', import.meta.url).pathname);
  const diag = addon.exports;

  // The stand-in sidecar: answers scrapes and counts them, to net its own segments out of the namespace counters.
  let ownAnswers = 0;
  const sidecar = createServer((_req, res) => {
    ownAnswers++;
    res.end('# metrics\n');
  });
  await new Promise((r) => sidecar.listen(SIDECAR_PORT, '0.0.0.0', r));
  const app = fork(new URL(import.meta.url), ['app', String(count)], { stdio: 'inherit' });
  await new Promise((r) => app.once('message', r));
  process.send('ready');

  const clock = { now: () => performance.now(), wallNow: () => new Date(), setTimeout, clearTimeout };
  const connections = (sockDiag) =>
    new Connections({
      procNetDir: '/proc/net',
      sockDiag,
      appPorts: [APP.port],
      ownPort: SIDECAR_PORT,
      clock,
      log: pino({ level: 'silent' }),
      metrics: createMetrics(new Registry(), {
        version: 'bench',
        nodeVersion: process.version,
        appPorts: [APP.port],
        snapshot: () => undefined,
      }),
      pollMs: 200,
      inTermination: () => true,
    });
  const viaDiag = connections(diag);
  const viaProc = connections(undefined);

  const proc = (file) => readFileSync(`/proc/net/${file}`, 'latin1');
  const counters = () => {
    const netstat = proc('netstat');
    const eth0 = proc('dev')
      .split('\n')
      .find((l) => l.trim().startsWith('eth0:'));
    return {
      inSegs: parseNetCounter(proc('snmp'), 'Tcp', 'InSegs'),
      inOctets: parseNetCounter(netstat, 'IpExt', 'InOctets'),
      devRx: Number(eth0.split(':')[1].trim().split(/\s+/)[0]),
    };
  };
  // Every field of /proc/net/tcp but the slot, the addresses, the inode and the kernel pointer, per app connection.
  const tcpFields = () => {
    const map = new Map();
    for (const file of ['tcp', 'tcp6']) {
      for (const line of proc(file).split('\n')) {
        const f = line.trim().split(/\s+/);
        if (f.length < 17 || !f[1].endsWith(':1F90') || f[3] === '0A') continue;
        map.set(f[2], [f[3], f[4], f[5], f[6], f[7], f[8], f[12], f[13], f[14], f[15], f[16]].join(' '));
      }
    }
    return map;
  };

  // {cost} may come several times (the bench changes what else is on the node in between); then {sample}.
  let next = await message();
  for (; next.cost; next = await message()) {
    const iterations = count >= 10000 ? 40 : 200;
    const median = (fn) => {
      const times = [];
      for (let i = 0; i < iterations; i++) {
        const t = performance.now();
        fn();
        times.push(performance.now() - t);
      }
      return times.sort((a, b) => a - b)[times.length >> 1];
    };
    process.send({
      iterations,
      ms: {
        'namespace counters: snmp + netstat + dev, read + parse': median(counters),
        '/proc/net/tcp + tcp6: bare kernel read': median(() => {
          proc('tcp');
          proc('tcp6');
        }),
        '/proc/net/tcp + tcp6 + snmp: read + parse + count (the fallback)': median(() => viaProc.poll()),
        '/proc/net/tcp + tcp6: every per-socket field': median(tcpFields),
        'sock_diag: bare dump, filtered by port in the kernel': median(() => diag.dump([APP.port])),
        'sock_diag (chosen): dump + decode + count': median(() => viaDiag.poll()),
      },
      established: { diag: viaDiag.poll().established, proc: viaProc.poll().established },
      parsed: parseTcpTable(proc('tcp')).length,
    });
  }

  const { sample, pollMs } = next;
  const polls = [];
  let before = counters();
  let ownBefore = ownAnswers;
  let fieldsBefore = tcpFields();
  viaDiag.poll();
  viaProc.poll();
  const end = performance.now() + sample;
  while (performance.now() < end) {
    await sleep(pollMs);
    // Each signal is judged against the time its own read began (the reads take milliseconds each).
    const atCounters = epochNow();
    const now = counters();
    const own = ownAnswers - ownBefore;
    const atFields = epochNow();
    const fields = tcpFields();
    let changed = 0;
    for (const [key, value] of fields) if (fieldsBefore.get(key) !== value) changed++;
    const atProc = epochNow();
    const fromProc = viaProc.poll();
    const atDiag = epochNow();
    const fromDiag = viaDiag.poll();
    polls.push({
      at: { counters: atCounters, fields: atFields, proc: atProc, diag: atDiag },
      inSegs: now.inSegs - before.inSegs,
      inSegsNet: now.inSegs - before.inSegs - 2 * own,
      inOctets: now.inOctets - before.inOctets,
      devRx: now.devRx - before.devRx,
      tcpFields: changed,
      newConnections: fromProc.ports[0].newConnections,
      diagSegments: fromDiag.ports[0].newSegments,
      // Connections keeps monotonic time; the client's record is epoch time.
      diagLastAt: performance.timeOrigin + viaDiag.lastArrivalAt,
    });
    before = now;
    ownBefore += own;
    fieldsBefore = fields;
  }
  process.send({ polls });
  app.kill('SIGKILL');
}
