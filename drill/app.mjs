// The drill's app: an HTTP server that exits at once on SIGTERM, as a typical distroless app does (no graceful
// shutdown). With --graceful it stops accepting, finishes what is in flight and then exits. With READY_AFTER_SECONDS
// set, its readiness path /healthz answers 503 until then, as an app warming up does.
// Usage: node drill/app.mjs <port> <name> [--graceful]
import { createServer } from 'node:http';

const [port, name, mode] = process.argv.slice(2);
const readyAt = performance.now() + Number(process.env.READY_AFTER_SECONDS ?? 0) * 1000;
const server = createServer((req, res) => {
  const ready = req.url !== '/healthz' || performance.now() >= readyAt;
  res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' });
  res.end(`${name}\n`);
});
server.keepAliveTimeout = 65_000;
server.listen(Number(port), '0.0.0.0');
process.on('SIGTERM', () => {
  if (mode !== '--graceful') process.exit(0);
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
