// Runs inside the bench's network namespace: an app on 127.0.0.1:8080 with `count` client connections held by a child
// process (each side needs its own file descriptors), then times the reads. Started by bench/procnet.mjs.
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';

const count = Number(process.argv[2]);
const APP_PORT = 8080;

if (process.argv[3] === 'client') {
  // The client side: open the connections in batches, report, and hold them until killed.
  const sockets = [];
  for (let i = 0; i < count; i += 500) {
    await Promise.all(
      Array.from(
        { length: Math.min(500, count - i) },
        () =>
          new Promise((resolve, reject) => {
            const s = connect(APP_PORT, '127.0.0.1', () => resolve(s));
            s.on('error', reject);
            sockets.push(s);
          }),
      ),
    );
  }
  process.send('ready');
} else {
  const { parseTcpTable, Connections, createMetrics, Registry, pino } = await import('../dist/bench/procnet.mjs');
  const held = [];
  const server = createServer((s) => held.push(s));
  await new Promise((r) => server.listen(APP_PORT, '127.0.0.1', r));
  const client = fork(new URL(import.meta.url), [String(count), 'client'], { stdio: 'inherit' });
  await new Promise((r) => client.once('message', r));
  while (held.length < count) await new Promise((r) => setTimeout(r, 10));

  const clock = { now: () => performance.now(), wallNow: () => new Date(), setTimeout, clearTimeout };
  const metrics = createMetrics(new Registry(), {
    version: 'bench',
    nodeVersion: process.version,
    appPorts: [APP_PORT],
    snapshot: () => undefined,
  });
  const connections = new Connections({
    procNetDir: '/proc/net',
    appPorts: [APP_PORT],
    ownPort: 9555,
    clock,
    log: pino({ level: 'silent' }),
    metrics,
    pollMs: 200,
    inTermination: () => false,
  });

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
  const read = (file) => readFileSync(`/proc/net/${file}`, 'latin1');
  const sockets = parseTcpTable(read('tcp')).length + parseTcpTable(read('tcp6')).length;
  // The bare kernel read: the same three files, decoded, not parsed.
  const bare = median(() => {
    read('tcp');
    read('tcp6');
    read('snmp');
  });
  const full = median(() => connections.current());
  const seen = connections.current().ports[0].established;

  const ms = (n) => `${n.toFixed(2)} ms`;
  console.log(
    `${count} connections (${sockets} sockets in the tables, ${seen} counted established on :${APP_PORT}): ` +
      `bare kernel read ${ms(bare)}, ` +
      `read + parse + count ${ms(full)} (${(full / bare).toFixed(2)}x the bare read); median of ${iterations}`,
  );
  client.kill('SIGKILL');
  process.exit(0);
}
