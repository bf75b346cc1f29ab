// Configuration: one spec table, read from environment variables and their command-line flag twins by one pure
// function. The README's configuration table is generated from the same table (see renderConfigTable).

import { isIP } from 'node:net';
import { RUNTIME_METRICS, type RuntimeMetrics } from './metrics.js';
import { parseReadinessCheck, type ReadinessCheck } from './readiness.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

// The kubelet sends SIGKILL at least this long after SIGTERM, however long the hook took.
export const KUBELET_MIN_KILL_DELAY_SECONDS = 2;

export interface Config {
  port: number;
  host: string;
  appPorts: number[];
  gracePeriodSeconds: number;
  defaultSleepSeconds: number;
  maxSleepSeconds: number;
  maxHooks: number;
  hookToken: string;
  logLevel: LogLevel;
  shutdownHoldSeconds: number;
  finalScrapeSeconds: number;
  drainMinSeconds: number;
  drainQuietSeconds: number;
  pollSeconds: number;
  startupWindowSeconds: number;
  appReadiness: ReadinessCheck | undefined;
  minReadySeconds: number | undefined;
  procNetDir: string;
  proxyListen: HostPort | undefined;
  proxyUpstream: HostPort | undefined;
  proxyMaxConnections: number;
  proxyTimeoutSeconds: number;
  runtimeMetrics: RuntimeMetrics;
}

export interface HostPort {
  host: string;
  port: number;
}

type Parser<T> = (raw: string) => T | ParseError;

export class ParseError {
  constructor(readonly rule: string) {}
}

interface Spec<K extends keyof Config> {
  key: K;
  env: string;
  flag: string;
  default: string;
  parse: Parser<Config[K]>;
  help: string;
  secret?: boolean;
}

const seconds =
  (min: number, max: number): Parser<number> =>
  (raw) => {
    const n = /^\d+(\.\d+)?$/.test(raw.trim()) ? Number(raw) : Number.NaN;
    return n >= min && n <= max ? n : new ParseError(`must be a decimal number of seconds from ${min} to ${max}`);
  };

const integer =
  (min: number, max: number): Parser<number> =>
  (raw) => {
    const n = /^\d+$/.test(raw.trim()) ? Number(raw) : Number.NaN;
    return n >= min && n <= max ? n : new ParseError(`must be a whole number from ${min} to ${max}`);
  };

const port = integer(1, 65535);

// The sock_diag addon filters on at most this many ports in the kernel (native/sockdiag.c MAX_PORTS).
export const MAX_APP_PORTS = 64;

const portList: Parser<number[]> = (raw) => {
  const items = raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const ports: number[] = [];
  for (const item of items) {
    const p = port(item);
    if (p instanceof ParseError) return new ParseError(`must be a comma-separated list of ports (1-65535); "${item}" is not`);
    if (!ports.includes(p)) ports.push(p);
  }
  return ports.length > MAX_APP_PORTS ? new ParseError(`must list at most ${MAX_APP_PORTS} ports; got ${ports.length}`) : ports;
};

const text: Parser<string> = (raw) => raw;

const optional =
  <T>(parse: Parser<T>): Parser<T | undefined> =>
  (raw) =>
    raw.trim() === '' ? undefined : parse(raw);

/** An IP address to listen on; empty means all interfaces. Names are refused: they would be resolved at listen time. */
const listenHost: Parser<string> = (raw) =>
  raw === '' || isIP(raw) !== 0 ? raw : new ParseError('must be an IP address (such as 0.0.0.0, :: or 127.0.0.1) or empty');

// The kubelet sends the token in an HTTP header: visible ASCII only. A Secret written with `echo` ends in a newline that
// no header can carry, so every hook would be refused; say so at start-up instead.
const token: Parser<string> = (raw) => {
  if (raw !== raw.trim())
    return new ParseError(
      'has leading or trailing whitespace (a Secret made with `echo` ends in a newline: use `echo -n` or `printf`)',
    );
  return /^[\x21-\x7e]*$/.test(raw)
    ? raw
    : new ParseError('must be visible ASCII characters without spaces (it is sent in an HTTP header)');
};

/** "port" or "host:port" ("[v6]:port" for IPv6); empty means unset. */
const hostPort =
  (defaultHost: string | undefined): Parser<HostPort | undefined> =>
  (raw) => {
    if (raw.trim() === '') return undefined;
    const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(raw.trim()) ?? /^()()(\d+)$/.exec(raw.trim());
    const host = m?.[1] || m?.[2] || defaultHost;
    const p = m ? integer(0, 65535)(m[3] as string) : new ParseError('');
    // Port 0 (any free port) only where listening: tests bind the proxy that way.
    if (!m || host === undefined || p instanceof ParseError || (p === 0 && defaultHost === undefined)) {
      return new ParseError(defaultHost === undefined ? 'must be host:port' : 'must be a port or host:port');
    }
    // Where it listens: an address, as for --host (a name would be resolved only at listen time, and fail there).
    if (defaultHost !== undefined && host !== '' && isIP(host) === 0) {
      return new ParseError('must be a port or IP:port (such as 9556 or 0.0.0.0:9556)');
    }
    return { host, port: p };
  };

// The proxy forwards only to the app in the same pod: any other upstream would make the sidecar an open relay. Addresses
// are checked as addresses (127.0.0.999 is none, and would go to DNS); localhost is the one name, from /etc/hosts.
const isLoopback = (host: string): boolean =>
  (isIP(host) === 4 && host.startsWith('127.')) || host === '::1' || host === 'localhost';

const oneOf =
  <T extends string>(values: readonly T[]): Parser<T> =>
  (raw) =>
    (values as readonly string[]).includes(raw) ? (raw as T) : new ParseError(`must be one of ${values.join(', ')}`);

// Twelve hours bounds every duration: far above any terminationGracePeriodSeconds in use, and it keeps timers sane.
const MAX_SECONDS = 43_200;

// The order here is the order of --help and of the README table.
export const CONFIG_SPEC: { [K in keyof Config]: Spec<K> }[keyof Config][] = [
  {
    key: 'port',
    env: 'DRAIN_PORT',
    flag: '--port',
    default: '9555',
    parse: integer(0, 65535),
    help: 'Port of the hook, probe and metrics API; 0 picks a free one (tests).',
  },
  {
    key: 'host',
    env: 'DRAIN_HOST',
    flag: '--host',
    default: '',
    parse: listenHost,
    help: 'IP address to listen on; empty means all interfaces (the kubelet calls the pod IP).',
  },
  {
    key: 'appPorts',
    env: 'DRAIN_APP_PORTS',
    flag: '--app-ports',
    default: '',
    parse: portList,
    help: "Comma-separated ports the app listens on; after SIGTERM the sidecar waits for the app's listeners to close.",
  },
  {
    key: 'gracePeriodSeconds',
    env: 'DRAIN_GRACE_PERIOD_SECONDS',
    flag: '--grace-period-seconds',
    default: '30',
    parse: seconds(1, MAX_SECONDS),
    help: "The pod's terminationGracePeriodSeconds (the Downward API does not expose it). Caps every wait.",
  },
  {
    key: 'defaultSleepSeconds',
    env: 'DRAIN_DEFAULT_SLEEP_SECONDS',
    flag: '--default-sleep-seconds',
    default: '20',
    parse: seconds(0, MAX_SECONDS),
    help: '/sleep without s, or with a malformed s, holds this long.',
  },
  {
    key: 'maxSleepSeconds',
    env: 'DRAIN_MAX_SLEEP_SECONDS',
    flag: '--max-sleep-seconds',
    default: '25',
    parse: seconds(0, MAX_SECONDS),
    help: 'A larger s is clamped to this (logged and counted).',
  },
  {
    key: 'maxHooks',
    env: 'DRAIN_MAX_HOOKS',
    flag: '--max-hooks',
    default: '64',
    parse: integer(1, 100_000),
    help: 'Hook calls held at once; one more is held for the default sleep without a slot, then gets 429.',
  },
  {
    key: 'hookToken',
    env: 'DRAIN_HOOK_TOKEN',
    flag: '--hook-token',
    default: '',
    parse: token,
    secret: true,
    help: 'If set, /sleep and /drain need the header "Authorization: Bearer <token>" (set it in httpGet.httpHeaders).',
  },
  {
    key: 'drainMinSeconds',
    env: 'DRAIN_MIN_SECONDS',
    flag: '--min-seconds',
    default: '5',
    parse: seconds(0, MAX_SECONDS),
    help: '/drain without min holds at least this long (at most its max), however quiet the app is: load balancers take seconds to start letting go.',
  },
  {
    key: 'drainQuietSeconds',
    env: 'DRAIN_QUIET_SECONDS',
    flag: '--quiet-seconds',
    default: '3',
    parse: seconds(0, MAX_SECONDS),
    help: '/drain without quiet returns idle once no request or new connection reached the app ports for this long and none is in flight (on the /proc/net fallback: none established). /drain without max returns at DRAIN_DEFAULT_SLEEP_SECONDS.',
  },
  {
    key: 'pollSeconds',
    env: 'DRAIN_POLL_SECONDS',
    flag: '--poll-seconds',
    default: '0.2',
    parse: seconds(0.01, 10),
    help: "How often the app's connections are read during a termination and the start-up window (never while idle).",
  },
  {
    key: 'startupWindowSeconds',
    env: 'DRAIN_STARTUP_WINDOW_SECONDS',
    flag: '--startup-window-seconds',
    default: '300',
    parse: seconds(0, MAX_SECONDS),
    help: 'From start-up, read the app ports every DRAIN_POLL_SECONDS for at most this long, until the first request from anything but the kubelet: when the app began listening, answered its first probe and got its first traffic (startup finished). 0: off.',
  },
  {
    key: 'appReadiness',
    env: 'DRAIN_APP_READINESS',
    flag: '--app-readiness',
    default: '',
    parse: optional((raw) => {
      const check = parseReadinessCheck(raw);
      return typeof check === 'string' ? new ParseError(check) : check;
    }),
    help: "The app's readinessProbe (inject passes it), checked on loopback during the start-up window until it first succeeds: the app's readiness, from which the delay to the first traffic is counted. Empty: counted from the app's listener.",
  },
  {
    key: 'minReadySeconds',
    env: 'DRAIN_MIN_READY_SECONDS',
    flag: '--min-ready-seconds',
    default: '',
    parse: optional(seconds(0, MAX_SECONDS)),
    help: "The workload's minReadySeconds (inject passes it): exported as min_ready_seconds, and startup finished warns when the first traffic came later after readiness. Empty: unknown, not exported.",
  },
  {
    key: 'procNetDir',
    env: 'DRAIN_PROC_NET_DIR',
    flag: '--proc-net-dir',
    default: '/proc/net',
    parse: text,
    help: "Where snmp of the pod's network namespace is read (resets, for refused connections), and tcp and tcp6 when the sock_diag addon cannot be used.",
  },
  {
    key: 'proxyListen',
    env: 'DRAIN_PROXY_LISTEN',
    flag: '--proxy-listen',
    default: '',
    parse: hostPort(''),
    help: 'Proxy mode (opt-in): the port (or host:port) the Service targets instead of the app. Empty: no proxy.',
  },
  {
    key: 'proxyUpstream',
    env: 'DRAIN_PROXY_UPSTREAM',
    flag: '--proxy-upstream',
    default: '',
    parse: hostPort(undefined),
    help: "Proxy mode: the app's host:port on loopback, e.g. 127.0.0.1:8080. Its port is watched as an app port when DRAIN_APP_PORTS is empty.",
  },
  {
    key: 'proxyMaxConnections',
    env: 'DRAIN_PROXY_MAX_CONNECTIONS',
    flag: '--proxy-max-connections',
    default: '4096',
    parse: integer(16, 1_000_000),
    help: 'Proxy mode: client connections held at once. Past it, a new connection closes the one idle longest (none idle: the new one is closed), so idle clients cannot lock out new ones.',
  },
  {
    key: 'proxyTimeoutSeconds',
    env: 'DRAIN_PROXY_TIMEOUT_SECONDS',
    flag: '--proxy-timeout-seconds',
    default: '60',
    parse: seconds(1, 3600),
    help: 'Proxy mode: how long the app may be silent (before its answer begins, counted from the end of the request body, and between chunks of it), and how long a client may pause an upload. Past it the request ends: 502 (503 during termination) counted as an upstream timeout, or the client connection closed. Raise it for long polling.',
  },
  {
    key: 'runtimeMetrics',
    env: 'DRAIN_RUNTIME_METRICS',
    flag: '--runtime-metrics',
    default: 'basic',
    parse: oneOf(RUNTIME_METRICS),
    help: "The Node runtime's own series: basic (resident memory, CPU, event-loop lag p99, heap used, open files), full (prom-client's whole default set, about 50 series), or none.",
  },
  { key: 'logLevel', env: 'DRAIN_LOG_LEVEL', flag: '--log-level', default: 'info', parse: oneOf(LOG_LEVELS), help: 'Log level.' },
  {
    key: 'shutdownHoldSeconds',
    env: 'DRAIN_SHUTDOWN_HOLD_SECONDS',
    flag: '--shutdown-hold-seconds',
    default: '2',
    parse: seconds(0, MAX_SECONDS),
    help: "After SIGTERM, keep serving at least this long for a hook call racing the signal (the kubelet starts every container's preStop at once).",
  },
  {
    key: 'finalScrapeSeconds',
    env: 'DRAIN_FINAL_SCRAPE_SECONDS',
    flag: '--final-scrape-seconds',
    default: '15',
    parse: seconds(0, MAX_SECONDS),
    help: 'Once /metrics has been scraped, wait up to this long after the last drain for one more scrape before exiting.',
  },
];

export type ConfigResult =
  | { ok: true; config: Config; warnings: string[] }
  | { ok: false; errors: string[] }
  | { ok: 'help' }
  | { ok: 'version' };

function readFlags(argv: readonly string[], errors: string[]): Map<string, string> {
  const flags = new Map<string, string>();
  const known = new Set(CONFIG_SPEC.map((s) => s.flag));
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg : arg.slice(0, eq);
    if (known.has(name)) {
      const value = eq === -1 ? argv[++i] : arg.slice(eq + 1);
      if (value === undefined) errors.push(`${name} needs a value`);
      else flags.set(name, value);
    } else if (name.startsWith('-')) {
      errors.push(`unknown flag ${name.slice(0, 40)}; see --help`);
      // Its value, if it has one, may be a secret: skip it unseen.
      if (eq === -1 && argv[i + 1] !== undefined && !argv[i + 1]?.startsWith('-')) i++;
    } else {
      errors.push(`unexpected argument #${i + 1} (not shown: it may be a secret); flags take the form --name=value`);
    }
  }
  return flags;
}

const specOf = (key: keyof Config) => CONFIG_SPEC.find((s) => s.key === key) as Spec<keyof Config>;
/** "--flag (ENV_VAR)" for a key, from the spec table. */
const nameOf = (key: keyof Config): string => `${specOf(key).flag} (${specOf(key).env})`;
const flagOf = (key: keyof Config): string => specOf(key).flag;

/** Rules between fields, checked on every field that parsed, so they are reported together with field errors. */
function crossFieldErrors(c: Partial<Config>): string[] {
  const errors: string[] = [];
  if (c.port !== undefined && c.port !== 0 && c.appPorts?.includes(c.port))
    errors.push(`${nameOf('appPorts')} must not include the sidecar's own ${flagOf('port')} ${c.port}`);
  if (c.defaultSleepSeconds !== undefined && c.maxSleepSeconds !== undefined && c.defaultSleepSeconds > c.maxSleepSeconds) {
    errors.push(
      `${nameOf('defaultSleepSeconds')} must not exceed ${nameOf('maxSleepSeconds')}: ${c.defaultSleepSeconds} > ${c.maxSleepSeconds}`,
    );
  }
  if ('proxyListen' in c && 'proxyUpstream' in c && (c.proxyListen === undefined) !== (c.proxyUpstream === undefined)) {
    errors.push(`${nameOf('proxyListen')} and ${nameOf('proxyUpstream')} go together: set both or neither`);
  }
  const { proxyListen, proxyUpstream } = c;
  if (proxyUpstream && !isLoopback(proxyUpstream.host)) {
    errors.push(
      `${nameOf('proxyUpstream')} must be on loopback (the app in the same pod); got ${proxyUpstream.host.slice(0, 80)}; use 127.0.0.1, ::1 or localhost`,
    );
  }
  // The sidecar would wait for its own listener to close, as if it were the app's.
  if (proxyListen && proxyListen.port !== 0 && c.appPorts?.includes(proxyListen.port)) {
    errors.push(`${nameOf('appPorts')} must not include the proxy's own ${flagOf('proxyListen')} ${proxyListen.port}`);
  }
  if (proxyListen && proxyListen.port !== 0 && proxyListen.port === c.port) {
    errors.push(`${nameOf('proxyListen')} must not use the sidecar's own ${flagOf('port')} ${c.port}`);
  }
  // Forwarding to itself would loop: every request would open another until the sockets run out.
  if (proxyUpstream && proxyUpstream.port === c.port) {
    errors.push(`${nameOf('proxyUpstream')} must be the app's port, not the sidecar's own ${flagOf('port')} ${c.port}`);
  }
  if (proxyUpstream && proxyListen && proxyUpstream.port === proxyListen.port) {
    errors.push(
      `${nameOf('proxyUpstream')} must be the app's port, not the proxy's own ${flagOf('proxyListen')} ${proxyListen.port}`,
    );
  }
  return errors;
}

/** Builds the configuration from the environment and flags (a flag wins over its variable); every error at once. */
export function parseConfig(env: Readonly<Record<string, string | undefined>>, argv: readonly string[]): ConfigResult {
  if (argv.includes('--help') || argv.includes('-h')) return { ok: 'help' };
  if (argv.includes('--version')) return { ok: 'version' };

  const errors: string[] = [];
  const flags = readFlags(argv, errors);
  const config: Record<string, unknown> = {};
  for (const spec of CONFIG_SPEC) {
    const raw = flags.get(spec.flag) ?? env[spec.env] ?? spec.default;
    const value = spec.parse(raw);
    if (value instanceof ParseError) {
      const shown = spec.secret ? '(hidden)' : JSON.stringify(raw.length > 80 ? `${raw.slice(0, 80)}…` : raw);
      errors.push(`${nameOf(spec.key)} ${value.rule}; got ${shown}`);
    } else config[spec.key] = value;
  }
  errors.push(...crossFieldErrors(config as Partial<Config>));
  if (errors.length > 0) return { ok: false, errors };

  const c = config as unknown as Config;
  if (c.proxyUpstream && c.appPorts.length === 0) c.appPorts = [c.proxyUpstream.port];
  return { ok: true, config: c, warnings: budgetWarnings(c) };
}

/** What cannot fit the grace budget: worth a warning at start-up, not a refusal to start. */
export function budgetWarnings(c: Config): string[] {
  const warnings: string[] = [];
  const appTime = c.gracePeriodSeconds - c.defaultSleepSeconds;
  if (appTime < KUBELET_MIN_KILL_DELAY_SECONDS) {
    warnings.push(
      `the default sleep of ${c.defaultSleepSeconds}s leaves the app ${appTime}s of a ${c.gracePeriodSeconds}s grace period; lower DRAIN_DEFAULT_SLEEP_SECONDS or raise terminationGracePeriodSeconds and DRAIN_GRACE_PERIOD_SECONDS together`,
    );
  }
  if (c.maxSleepSeconds === 0) {
    warnings.push('DRAIN_MAX_SLEEP_SECONDS is 0: every /sleep and /drain is cut to 0 s, so the hooks hold nothing');
  }
  if (c.maxSleepSeconds > c.gracePeriodSeconds) {
    warnings.push(
      `DRAIN_MAX_SLEEP_SECONDS ${c.maxSleepSeconds} exceeds the grace period of ${c.gracePeriodSeconds}s; waits are cut at the grace period`,
    );
  }
  return warnings;
}

/** The effective configuration for logs and /status: secrets are never shown, only whether they are set. */
export function redactConfig(c: Config): Record<string, unknown> {
  const shown: Record<string, unknown> = { ...c };
  for (const spec of CONFIG_SPEC) if (spec.secret) shown[spec.key] = c[spec.key] ? '(set)' : '(unset)';
  return shown;
}

export function renderHelp(name: string, subcommands: Record<string, string> = {}): string {
  const lines = [`Usage: ${name} [flags]          run the sidecar`];
  for (const [sub, summary] of Object.entries(subcommands)) lines.push(`       ${name} ${sub} --help   ${summary}`);
  lines.push('', 'Every flag has an environment variable twin; a flag wins over its variable.', '');
  for (const s of CONFIG_SPEC) {
    lines.push(`  ${s.flag} (${s.env}, default ${JSON.stringify(s.default)})`, `      ${s.help}`);
  }
  lines.push('  --help', '  --version', '');
  return lines.join('\n');
}

export function renderConfigTable(): string {
  const rows = CONFIG_SPEC.map(
    (s) => `| \`${s.env}\` | \`${s.flag}\` | ${s.default === '' ? '(empty)' : `\`${s.default}\``} | ${s.help} |`,
  );
  return ['| variable | flag | default | meaning |', '|---|---|---|---|', ...rows].join('\n');
}
