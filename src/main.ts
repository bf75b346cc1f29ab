// The only module that touches the process: arguments, environment, signals, stdout and exit.

import { pino } from 'pino';
import pkg from '../package.json' with { type: 'json' };
import { systemClock } from './clock.js';
import { parseConfig, redactConfig, renderHelp } from './config.js';
import { createSidecar } from './sidecar.js';

// Exit codes, as the reloaders do: 2 for configuration the user must fix, 1 for a failure at run time.
const EXIT_CONFIG = 2;
const EXIT_RUNTIME = 1;

async function main(): Promise<void> {
  const result = parseConfig(process.env, process.argv.slice(2));
  if (result.ok === 'help') {
    process.stdout.write(renderHelp('drain-sidecar'));
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

  // Synchronous writes: the last `drain finished` line must be out before the process exits.
  const log = pino(
    { level: config.logLevel, base: undefined, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ fd: 1, sync: true }),
  );
  for (const problem of warnings) log.warn({ problem }, 'configuration does not fit the grace budget');

  const sidecar = createSidecar({
    config,
    clock: systemClock,
    log,
    version: pkg.version,
    nodeVersion: process.version,
    exit: (code) => {
      log.info({ code }, 'exiting');
      process.exit(code);
    },
  });
  process.on('SIGTERM', () => sidecar.sigterm());
  process.on('SIGINT', () => sidecar.interrupt());

  try {
    const address = await sidecar.start();
    log.info({ version: pkg.version, node: process.version, address, config: redactConfig(config) }, 'drain-sidecar started');
  } catch (err) {
    log.fatal({ err }, 'cannot listen');
    process.exit(EXIT_RUNTIME);
  }
}

void main();
