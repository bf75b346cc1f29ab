// The drill's app: an HTTP server that exits at once on SIGTERM, as a typical distroless app does (no graceful
// shutdown). With --graceful it stops accepting, finishes what is in flight and then exits.
// Usage: node drill/app.mjs <port> <name> [--graceful]
import { createServer } from 'node:http';

const [port, name, mode] = process.argv.slice(2);
const server = createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`${name}\n`);
});
server.keepAliveTimeout = 65_000;
server.listen(Number(port), '0.0.0.0');
process.on('SIGTERM', () => {
  if (mode !== '--graceful') process.exit(0);
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
