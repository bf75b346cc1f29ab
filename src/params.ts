// Hook parameters. A hook call with a typo must still protect the pod: parsing never fails, it reports problems and
// falls back to the configured default, and the caller is told what was wrong only after the protective wait.

import type { Config } from './config.js';

export interface SleepParams {
  seconds: number;
  requestedSeconds: number | undefined;
  clamped: boolean;
  problems: string[];
}

const DECIMAL = /^(\d+(\.\d*)?|\.\d+)$/;
// Echoed values are cut short: a hook answer stays far below the 10 KiB the kubelet reads.
const ECHO_MAX = 40;

const echo = (value: string) => JSON.stringify(value.length > ECHO_MAX ? `${value.slice(0, ECHO_MAX)}…` : value);

/** Reads one decimal-seconds parameter; undefined when absent, a problem when malformed. */
function readSeconds(query: URLSearchParams, name: string, problems: string[]): number | undefined {
  const all = query.getAll(name);
  if (all.length === 0) return undefined;
  if (all.length > 1) {
    problems.push(`${name} is given ${all.length} times; give it once`);
    return undefined;
  }
  const raw = all[0] as string;
  if (!DECIMAL.test(raw)) {
    problems.push(`${name} must be a decimal number of seconds such as ${name}=20; got ${echo(raw)}`);
    return undefined;
  }
  return Number(raw);
}

function unknownParams(query: URLSearchParams, known: readonly string[], problems: string[]): void {
  for (const name of new Set(query.keys())) {
    if (!known.includes(name)) problems.push(`unknown parameter ${echo(name)}; known: ${known.join(', ')}`);
  }
}

export function parseSleepParams(
  query: URLSearchParams,
  config: Pick<Config, 'defaultSleepSeconds' | 'maxSleepSeconds'>,
): SleepParams {
  const problems: string[] = [];
  unknownParams(query, ['s'], problems);
  const requested = readSeconds(query, 's', problems);
  // A misspelt parameter may have carried the intended duration; the default is the only safe guess.
  const wanted = problems.length > 0 || requested === undefined ? config.defaultSleepSeconds : requested;
  const clamped = wanted > config.maxSleepSeconds;
  return { seconds: clamped ? config.maxSleepSeconds : wanted, requestedSeconds: requested, clamped, problems };
}
