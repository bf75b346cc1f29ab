// One teardown list per test file: what a test opens it registers with onCleanup, and `afterEach(cleanup)` closes it,
// newest first. Vitest isolates modules per file, so files do not share the list.
import type { Server } from 'node:net';

const pending: (() => unknown)[] = [];

export function onCleanup(fn: () => unknown): void {
  pending.push(fn);
}

export async function cleanup(): Promise<void> {
  for (const fn of pending.splice(0).reverse()) await fn();
}

/** Listens on a free loopback port and closes the server, and any connection it holds, after the test. */
export async function listenLocal(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onCleanup(() => {
    server.close();
    (server as { closeAllConnections?: () => void }).closeAllConnections?.();
  });
  return (server.address() as { port: number }).port;
}
