// Runs the built single executable as a child process, as the kubelet runs it, and reads its JSON log lines.
import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import type { LogLine } from './helpers.js';

export const EXECUTABLE = resolve(import.meta.dirname, '../dist/drain-sidecar');
/** The sock_diag addon, which the executable loads from its own directory. */
export const ADDON = resolve(import.meta.dirname, '../dist/drain-sidecar-sockdiag.node');

export interface SidecarProcess {
  child: ChildProcess;
  port: number;
  /** The proxy's port in proxy mode, else 0. */
  proxyPort: number;
  lines: LogLine[];
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Resolves within ms or rejects naming what was awaited, so a hang fails the test instead of stalling it. */
export function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function run(args: string[], env: Record<string, string> = {}, executable = EXECUTABLE) {
  const child = spawn(executable, args, {
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
    child.on('exit', (code, signal) => done({ code, signal })),
  );
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

/** Starts the sidecar on a free loopback port and resolves once it listens. */
export async function startSidecarProcess(env: Record<string, string> = {}): Promise<SidecarProcess> {
  const proc = run([], { DRAIN_HOST: '127.0.0.1', DRAIN_PORT: '0', ...env });
  const lines: LogLine[] = [];
  let port = 0;
  let proxyPort = 0;
  const started = new Promise<void>((ready, fail) => {
    let buffer = '';
    proc.child.stdout?.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      let nl = buffer.indexOf('\n');
      while (nl !== -1) {
        const line = JSON.parse(buffer.slice(0, nl)) as LogLine;
        buffer = buffer.slice(nl + 1);
        lines.push(line);
        if (line.msg === 'drain-sidecar started') {
          port = (line.address as { port: number }).port;
          proxyPort = (line.proxyAddress as { port: number } | undefined)?.port ?? 0;
          ready();
        }
        nl = buffer.indexOf('\n');
      }
    });
    void proc.exited.then(({ code }) => fail(new Error(`sidecar exited with ${code} before listening: ${proc.stderr()}`)));
  });
  await within(10_000, 'the sidecar to listen', started);
  return { child: proc.child, port, proxyPort, lines, stderr: proc.stderr, exited: proc.exited };
}
