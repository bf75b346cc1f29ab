// The only module that touches the process: arguments, environment, signals, stdout and exit.

import { readFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { isSea } from 'node:sea';
import { setFlagsFromString } from 'node:v8';
import { type Logger, pino } from 'pino';
import pkg from '../package.json' with { type: 'json' };
import { systemClock } from './clock.js';
import { parseConfig, redactConfig, renderHelp } from './config.js';
import { createLogger } from './log.js';
import { createSidecar } from './sidecar.js';
import { isWholeElf, type SockDiag } from './sockdiag.js';

// Exit codes, as the reloaders do: 2 for configuration the user must fix, 1 for a failure at run time.
const EXIT_CONFIG = 2;
const EXIT_RUNTIME = 1;

// The sock_diag addon ships next to the executable (or next to the bundle, for `node dist/drain-sidecar.cjs`).
const SOCK_DIAG_FILE = 'drain-sidecar-sockdiag.node';

function loadSockDiag(log: Logger): SockDiag | undefined {
  const path = join(dirname(isSea() ? process.execPath : (process.argv[1] ?? '')), SOCK_DIAG_FILE);
  try {
    if (!isWholeElf(readFileSync(path)))
      throw new Error('the addon file is truncated or not an ELF shared object for this machine');
    const module = { exports: {} as SockDiag };
    process.dlopen(module, path);
    return module.exports;
  } catch (err) {
    log.warn({ err, path }, 'no sock_diag addon; reading /proc/net/tcp, which does not see requests on pooled connections');
    return undefined;
  }
}

// The subcommands, loaded only when called: the sidecar in every pod should not pay for the YAML parser and the
// webhook's code.
const SUBCOMMANDS = {
  inject: 'add drain-sidecar and its hooks to Kubernetes manifests',
  uninject: 'take out of Kubernetes manifests what inject put in',
  check: 'report drain misconfiguration in Kubernetes manifests',
  webhook: 'serve the mutating admission webhook that injects it into opted-in pods',
} as const;

/** A subcommand (inject, uninject, check): synchronous writes, so nothing is lost to process.exit on a pipe. */
async function subcommand(name: 'inject' | 'uninject' | 'check', argv: string[]): Promise<never> {
  const { runSubcommand } = await import('./cli.js');
  const code = runSubcommand(name, argv, {
    stdin: () => readFileSync(0),
    out: (text) => writeSync(1, text),
    err: (text) => writeSync(2, text),
  });
  return process.exit(code);
}

/** `drain-sidecar webhook`: serves until SIGTERM or SIGINT, then closes and exits 0. */
async function webhook(argv: string[]): Promise<void> {
  const { createWebhook, parseWebhookArgs, WEBHOOK_HELP } = await import('./webhook.js');
  let config: ReturnType<typeof parseWebhookArgs>;
  try {
    config = parseWebhookArgs(argv);
  } catch (err) {
    process.stderr.write(`drain-sidecar webhook: ${(err as Error).message}\n`);
    return process.exit(EXIT_CONFIG);
  }
  if (config === 'help') {
    process.stdout.write(WEBHOOK_HELP);
    return process.exit(0);
  }
  const log = createLogger('info', pino.destination({ fd: 1, sync: true }));
  try {
    const server = createWebhook(config, log.child({ component: 'webhook' }));
    const address = await server.start();
    log.info({ version: pkg.version, address, image: config.image }, 'drain-sidecar webhook started');
    const stop = () => void server.stop().then(() => process.exit(0));
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  } catch (err) {
    log.fatal({ err }, 'cannot serve the webhook');
    process.exit(EXIT_RUNTIME);
  }
}

async function main(): Promise<void> {
  const [first, ...rest] = process.argv.slice(2);
  if (first === 'inject' || first === 'uninject' || first === 'check') return subcommand(first, rest);
  if (first === 'webhook') return webhook(rest);
  const result = parseConfig(process.env, process.argv.slice(2));
  if (result.ok === 'help') {
    process.stdout.write(renderHelp('drain-sidecar', SUBCOMMANDS));
    return process.exit(0);
  }
  if (result.ok === 'version') {
    process.stdout.write(`drain-sidecar ${pkg.version} (node ${process.version})\n`);
    return process.exit(0);
  }
  if (!result.ok) {
    process.stderr.write(`drain-sidecar: invalid configuration:\n${result.errors.map((e) => `  ${e}\n`).join('')}`);
    return process.exit(EXIT_CONFIG);
  }
  const { config, warnings } = result;
  // Passive mode answers a few hook calls and scrapes per drain: V8's optimizing tiers (Maglev, TurboFan) would keep
  // their compiled code and zones for nothing (bench/memory.mjs measures the private memory they cost after traffic).
  // Proxy mode keeps them: it forwards every request. Compiler flags apply to what is compiled after this point.
  if (!config.proxyUpstream) for (const flag of ['--no-maglev', '--no-opt']) setFlagsFromString(flag);

  // Synchronous writes: the last `drain finished` line must be out before the process exits.
  const log = createLogger(config.logLevel, pino.destination({ fd: 1, sync: true }));
  for (const problem of warnings) log.warn({ problem }, 'configuration does not fit the grace budget');

  const sidecar = await createSidecar({
    config,
    clock: systemClock,
    log,
    version: pkg.version,
    nodeVersion: process.version,
    sockDiag: config.appPorts.length > 0 ? loadSockDiag(log) : undefined,
    exit: (code) => {
      log.info({ code }, 'exiting');
      process.exit(code);
    },
  });
  process.on('SIGTERM', () => sidecar.sigterm());
  process.on('SIGINT', () => sidecar.interrupt());

  try {
    const { admin, proxy } = await sidecar.start();
    log.info(
      { version: pkg.version, node: process.version, address: admin, proxyAddress: proxy, config: redactConfig(config) },
      'drain-sidecar started',
    );
  } catch (err) {
    log.fatal({ err }, 'cannot listen');
    process.exit(EXIT_RUNTIME);
  }
}

void main();
