// The sidecar started in-process, wired as main.ts wires it, with the real clock and a real socket on 127.0.0.1.
import { vi } from 'vitest';
import { systemClock } from '../src/clock.js';
import { parseConfig } from '../src/config.js';
import { createSidecar } from '../src/sidecar.js';
import { onCleanup } from './cleanup.js';
import { loadSockDiag, testWiring } from './helpers.js';

/** With the built sock_diag addon, as the executable has it; sockDiag false: the /proc/net fallback. */
export async function startSidecar(env: Record<string, string> = {}, { sockDiag = true } = {}) {
  const parsed = parseConfig({ DRAIN_HOST: '127.0.0.1', DRAIN_PORT: '0', ...env }, []);
  if (parsed.ok !== true) throw new Error(JSON.stringify(parsed));
  const { log, lines } = testWiring();
  const exit = vi.fn();
  const sidecar = await createSidecar({
    config: parsed.config,
    clock: systemClock,
    log,
    version: '0.0.0-test',
    nodeVersion: process.version,
    sockDiag: sockDiag ? loadSockDiag() : undefined,
    exit,
  });
  onCleanup(() => sidecar.stop());
  const { admin, proxy } = await sidecar.start();
  const port = admin.port;
  /** The proxy's port in proxy mode, else 0. */
  const proxyPort = proxy?.port ?? 0;
  return { ...sidecar, port, proxyPort, lines, exit };
}
