// Hook parameters. A hook call with a typo must still protect the pod: parsing never fails, it reports problems and
// falls back to the configured default, and the caller is told what was wrong only after the protective wait.

import type { Config } from './config.js';

export interface DrainParams {
  minSeconds: number;
  maxSeconds: number;
  quietSeconds: number;
  requested: { min: number | undefined; max: number | undefined; quiet: number | undefined };
  clamped: boolean;
  problems: string[];
}

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

type DrainDefaults = Pick<Config, 'defaultSleepSeconds' | 'maxSleepSeconds' | 'drainMinSeconds' | 'drainQuietSeconds'>;

/** /drain?min=A&max=B&quiet=C; any problem falls back to all three defaults, which the operator chose to be safe. */
export function parseDrainParams(query: URLSearchParams, config: DrainDefaults): DrainParams {
  const problems: string[] = [];
  unknownParams(query, ['min', 'max', 'quiet'], problems);
  const requested = {
    min: readSeconds(query, 'min', problems),
    max: readSeconds(query, 'max', problems),
    quiet: readSeconds(query, 'quiet', problems),
  };
  if (requested.min !== undefined && requested.max !== undefined && requested.min > requested.max) {
    problems.push(`min (${requested.min}) must not exceed max (${requested.max})`);
  }
  if (requested.min !== undefined && requested.max === undefined && requested.min > config.defaultSleepSeconds) {
    problems.push(`min (${requested.min}) must not exceed the default max (${config.defaultSleepSeconds}); give max too`);
  }
  const given = problems.length === 0 ? requested : { min: undefined, max: undefined, quiet: undefined };
  const max = given.max ?? config.defaultSleepSeconds;
  // A max below the default min, given alone, lowers the min with it.
  const min = given.min ?? Math.min(config.drainMinSeconds, max);
  const quiet = given.quiet ?? config.drainQuietSeconds;
  const clamped = max > config.maxSleepSeconds;
  return {
    minSeconds: Math.min(min, config.maxSleepSeconds),
    maxSeconds: clamped ? config.maxSleepSeconds : max,
    quietSeconds: quiet,
    requested,
    clamped,
    problems,
  };
}

/** A hook call's target as the sidecar reads it; kubelets before 1.26 call `//sleep?s=20`. Throws for no URL. */
export function hookUrl(target: string): URL {
  return new URL(target.replace(/^\/{2,}/, '/'), 'http://pod');
}

/**
 * The longest a hook path holds the pod, parsed as the sidecar parses it: s for /sleep, max for /drain, defaults and
 * clamping applied. Undefined for a path that is neither. For inject, check and the manifests' tests.
 */
export function hookHoldSeconds(path: string, config: DrainDefaults): number | undefined {
  const url = hookUrl(path);
  if (url.pathname === '/sleep') return parseSleepParams(url.searchParams, config).seconds;
  if (url.pathname === '/drain') return parseDrainParams(url.searchParams, config).maxSeconds;
  return undefined;
}
