// Termination drill: the rollout 503s of the field report, recreated with real processes, a real load balancer (nginx)
// and a real Prometheus, and what drain-sidecar changes. The race scenarios (k, l) recreate the report's second outage
// at the other end of the rollout: a new pod ready before its load balancer sends to it, and no healthy upstream. For each scenario: an "old" and a "new" pod, each an app plus
// the built sidecar sharing a network namespace (as root with `ip`; otherwise ports on loopback); a client sending a
// steady rate through nginx; a kubelet emulator deleting the old pod as the kubelet does (docs/kubelet.md); nginx dropping the
// old pod only after a propagation delay D. Prints a table per scenario and writes JSON and Markdown.
// Usage: npm run drill -- [--full] [--scenarios a,b,c,e,f,k,l] [--delay D] [--out DIR]
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { writeSection } from '../scripts/sections.mjs';
import { writeNginxConfig } from './nginx.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SIDECAR = join(ROOT, 'dist/drain-sidecar');
const APP_PORT = 8080;
const SIDECAR_PORT = 9555;
// Proxy mode: the load balancer targets the sidecar's proxy port, which forwards to the app on loopback.
const PROXY_PORT = 8000;
const LB_PORT = 18_480;
const PROM_PORT = 19_490;
const KUBELET_UA = 'kube-lifecycle/1.34';
const PROBE_UA = 'kube-probe/1.34';

const { values: opts } = parseArgs({
  options: {
    full: { type: 'boolean', default: false },
    scenarios: { type: 'string', default: 'a,b,c,d,e,f,g,h,i,j,k,l' },
    delay: { type: 'string' },
    out: { type: 'string', default: join(ROOT, 'drill/results') },
    // Write the figures into drill/README.md and README.md (a full run of every scenario).
    docs: { type: 'boolean', default: false },
  },
});
// Short: fits CI. Full: the field report's proportions (a 30 s grace period, several seconds of propagation).
const variant = opts.full
  ? { name: 'full', delay: 6, grace: 30, rate: 50, before: 3, after: 6, lbAdd: 15 }
  : { name: 'short', delay: 2.5, grace: 12, rate: 40, before: 1.5, after: 3, lbAdd: 5.5 };
if (opts.delay) variant.delay = Number(opts.delay);

const D = variant.delay;
const SCENARIOS = {
  a: { title: 'no hook (the field report)', order: 'native' },
  b: { title: `/sleep?s=${D + 3} (longer than D)`, order: 'native', hook: `/sleep?s=${D + 3}` },
  c: { title: '/drain', order: 'native', hook: `/drain?min=1&max=${variant.grace - 5}&quiet=1` },
  d: { title: `proxy mode, /sleep?s=${D + 3}`, order: 'native', hook: `/sleep?s=${D + 3}`, proxy: true },
  e: {
    title: `/sleep?s=${Math.max(0.5, D - 1.5)} (shorter than D)`,
    order: 'native',
    hook: `/sleep?s=${Math.max(0.5, D - 1.5)}`,
  },
  f: { title: `/sleep?s=${D + 3}, regular sidecar order`, order: 'regular', hook: `/sleep?s=${D + 3}` },
  g: {
    title: `proxy mode, /sleep?s=${Math.max(0.5, D - 1.5)} (shorter than D)`,
    order: 'native',
    hook: `/sleep?s=${Math.max(0.5, D - 1.5)}`,
    proxy: true,
  },
  // Observer mode: the app's native preStop.sleep holds it, the sidecar's own hook calls /observe.
  h: { title: `native preStop.sleep ${D + 3} s, observed`, order: 'native', nativeSleep: D + 3 },
  i: { title: `native preStop.sleep ${D + 3} s, observed, regular sidecar`, order: 'regular', nativeSleep: D + 3 },
  j: {
    title: `native preStop.sleep ${Math.max(0.5, D - 1.5)} s (shorter than D), observed`,
    order: 'native',
    nativeSleep: Math.max(0.5, D - 1.5),
  },
  // The new pod's race: the load balancer sends to a new pod only L s after it started (a NEG once its own health
  // check passed); the rollout deletes the old pod once the new one has been ready for minReadySeconds.
  k: { title: 'rollout, minReadySeconds 0 (the second outage)', race: true, minReady: 0 },
  // minReadySeconds as the recording rule recommends it from what (k)'s new pod measured.
  l: { title: 'rollout, minReadySeconds as recommended', race: true, minReady: 'recommended' },
};
// The load balancer's own address: its connections to the pods are not the kubelet's (whose probes and hooks come from
// the node's address toward the pod), as a cloud load balancer's come from its own range.
const LB_SOURCE = () => (isolated ? '198.18.254.1' : '127.0.0.2');
// The recording rule's recommendation (k8s/monitoring): the longest delay seen, plus a quarter, plus 2 s.
const recommendedMinReady = (delaySeconds) => Math.ceil(delaySeconds * 1.25 + 2);

const isolated = process.getuid?.() === 0 && spawnSync('ip', ['-V']).status === 0;
const work = mkdtempSync(join(tmpdir(), 'drain-drill-'));
const now = () => performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// What to undo: for the whole drill (Prometheus), and for the scenario running now (pods, nginx).
const cleanups = [];
let scenarioCleanups = [];

// ---- pods -------------------------------------------------------------------------------------------------------

let podCount = 0;
/** A pod: its own network namespace and address (or loopback ports), the app and the sidecar inside it. */
function createPod(name, scenario) {
  const k = ++podCount;
  const pod = { name, scenario, k, appPort: APP_PORT, sidecarPort: SIDECAR_PORT, proxyPort: PROXY_PORT, procs: {} };
  if (isolated) {
    pod.ns = `drill-${process.pid}-${k}`;
    pod.ip = `198.18.${k}.2`;
    const host = `drh${process.pid % 10_000}x${k}`;
    const ip = (...a) => execFileSync('ip', a);
    ip('netns', 'add', pod.ns);
    ip('link', 'add', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.ns);
    ip('addr', 'add', `198.18.${k}.1/30`, 'dev', host);
    ip('link', 'set', host, 'up');
    ip('-n', pod.ns, 'addr', 'add', `${pod.ip}/30`, 'dev', 'eth0');
    ip('-n', pod.ns, 'link', 'set', 'eth0', 'up');
    ip('-n', pod.ns, 'link', 'set', 'lo', 'up');
    ip('-n', pod.ns, 'route', 'add', `${LB_SOURCE()}/32`, 'via', `198.18.${k}.1`);
    pod.removeSandbox = () => spawnSync('ip', ['netns', 'del', pod.ns]);
  } else {
    pod.ip = '127.0.0.1';
    pod.appPort = APP_PORT + 10 * k;
    pod.sidecarPort = SIDECAR_PORT + 10 * k;
    pod.proxyPort = PROXY_PORT + 10 * k;
    pod.removeSandbox = () => undefined;
  }
  // Where the load balancer sends: the app's port, or in proxy mode the sidecar's proxy (set when the pod starts).
  pod.servePort = pod.appPort;
  scenarioCleanups.push(() => {
    for (const p of Object.values(pod.procs)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    pod.removeSandbox();
  });
  return pod;
}

function startInPod(pod, role, command, env = {}) {
  const argv = pod.ns ? ['ip', 'netns', 'exec', pod.ns, ...command] : command;
  const log = createWriteStream(join(work, `${pod.scenario}-${pod.name}-${role}.log`));
  const child = spawn(argv[0], argv.slice(1), { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  child.exited = new Promise((r) => child.once('exit', () => r(now())));
  pod.procs[role] = child;
  return child;
}

/** Starts the pod's containers without waiting for them. */
function spawnPod(pod, proxy, extraEnv = {}, appEnv = {}) {
  startInPod(pod, 'app', [process.execPath, join(ROOT, 'drill/app.mjs'), String(pod.appPort), pod.name], appEnv);
  startInPod(pod, 'sidecar', [SIDECAR], {
    DRAIN_PORT: String(pod.sidecarPort),
    DRAIN_APP_PORTS: String(pod.appPort),
    DRAIN_GRACE_PERIOD_SECONDS: String(variant.grace),
    DRAIN_DEFAULT_SLEEP_SECONDS: String(Math.min(20, variant.grace - 5)),
    DRAIN_MAX_SLEEP_SECONDS: String(variant.grace - 2),
    DRAIN_POLL_SECONDS: '0.1',
    DRAIN_FINAL_SCRAPE_SECONDS: '5',
    ...(proxy && { DRAIN_PROXY_LISTEN: String(pod.proxyPort), DRAIN_PROXY_UPSTREAM: `127.0.0.1:${pod.appPort}` }),
    ...extraEnv,
  });
  pod.servePort = proxy ? pod.proxyPort : pod.appPort;
}

async function startPod(pod, proxy) {
  spawnPod(pod, proxy);
  await waitFor(`${pod.name} to serve`, async () => (await httpGet(pod.ip, pod.appPort, '/')).status === 200);
  await waitFor(`${pod.name}'s sidecar`, async () => (await httpGet(pod.ip, pod.sidecarPort, '/healthz')).status === 200);
  await waitFor(`${pod.name} to serve through its port`, async () => (await httpGet(pod.ip, pod.servePort, '/')).status === 200);
}

// ---- HTTP --------------------------------------------------------------------------------------------------------

/** One GET; resolves with the status, or with the error code instead of rejecting. */
function httpGet(host, port, path, { headers = {}, agent = false, timeoutMs = 3000 } = {}) {
  return new Promise((resolve) => {
    const req = request({ host, port, path, headers, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (err) => resolve({ status: 0, error: err.code ?? err.message }));
    req.end();
  });
}

async function waitFor(what, check, ms = 15_000) {
  const end = now() + ms;
  while (now() < end) {
    if (await check().catch(() => false)) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

// ---- the load balancer -----------------------------------------------------------------------------------------

const nginxDir = join(work, 'nginx');
function nginxConfig(pods, down = []) {
  // Pooled keep-alive connections to the pods, as cloud load balancers keep them; no retry on another pod and no
  // passive health check, so an error reaches the client as it did in the field report. A pod marked down is known and
  // sent nothing; with every pod down nginx answers 502 and logs "no live upstreams", a cloud load balancer's
  // "no healthy upstream".
  return writeNginxConfig({
    dir: nginxDir,
    port: LB_PORT,
    servers: [...pods.map((p) => `${p.ip}:${p.servePort}`), ...down.map((p) => `${p.ip}:${p.servePort} down`)],
    serverOptions: 'max_fails=0',
    locationExtra: `      proxy_next_upstream off;\n      proxy_connect_timeout 1s;\n      proxy_read_timeout 3s;\n      proxy_bind ${LB_SOURCE()};`,
  });
}

/** How many times nginx has logged that it had no live upstream. */
function noLiveUpstreams() {
  try {
    return readFileSync(join(nginxDir, 'error.log'), 'utf8').split('no live upstreams').length - 1;
  } catch {
    return 0;
  }
}

async function startNginx(pods, down = []) {
  nginxConfig(pods, down);
  const nginx = spawn('nginx', ['-p', nginxDir, '-c', join(nginxDir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: 'inherit' });
  // SIGTERM: the master stops its workers too (after SIGKILL they would keep the port).
  scenarioCleanups.push(() => nginx.kill('SIGTERM'));
  await waitFor('nginx', async () => (await httpGet('127.0.0.1', LB_PORT, '/')).status === 200);
  return {
    drop: (pods, down = []) => {
      nginxConfig(pods, down);
      execFileSync('nginx', ['-p', nginxDir, '-c', join(nginxDir, 'nginx.conf'), '-s', 'reload'], { stdio: 'ignore' });
    },
    stop: () =>
      new Promise((r) => {
        nginx.once('exit', r);
        nginx.kill('SIGQUIT');
      }),
  };
}

// ---- Prometheus ----------------------------------------------------------------------------------------------------

const promDir = join(work, 'prometheus');
async function startPrometheus() {
  mkdirSync(promDir, { recursive: true });
  writeFileSync(join(promDir, 'targets.json'), '[]');
  writeFileSync(
    join(promDir, 'prometheus.yml'),
    `global: { scrape_interval: 1s, scrape_timeout: 900ms }
scrape_configs:
  - job_name: drain-sidecar
    file_sd_configs: [{ files: ['${promDir}/targets.json'], refresh_interval: 1s }]
`,
  );
  const prom = spawn(
    'prometheus',
    [
      `--config.file=${promDir}/prometheus.yml`,
      `--storage.tsdb.path=${promDir}/data`,
      `--web.listen-address=127.0.0.1:${PROM_PORT}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  prom.stderr.pipe(createWriteStream(join(promDir, 'prometheus.log')));
  cleanups.push(() => prom.kill('SIGKILL'));
  await waitFor('Prometheus', async () => (await httpGet('127.0.0.1', PROM_PORT, '/-/ready')).status === 200, 30_000);
}

function scrapeTargets(pods) {
  const groups = pods.map((p) => ({ targets: [`${p.ip}:${p.sidecarPort}`], labels: { scenario: p.scenario, pod: p.name } }));
  writeFileSync(join(promDir, 'targets.json'), JSON.stringify(groups));
}

/** The latest value of a PromQL expression over the last 10 minutes, or null. */
async function promValue(expr) {
  const path = `/api/v1/query?query=${encodeURIComponent(`last_over_time((${expr})[10m:1s])`)}`;
  const { status, body } = await httpGet('127.0.0.1', PROM_PORT, path);
  if (status !== 200) return null;
  const result = JSON.parse(body).data.result;
  return result.length ? Number(result[0].value[1]) : null;
}

// ---- the client ------------------------------------------------------------------------------------------------

/** Sends variant.rate requests a second through nginx and records each result with the time it was sent. */
function startClient() {
  const results = [];
  let stopped = false;
  const loop = (async () => {
    const interval = 1000 / variant.rate;
    let next = now();
    while (!stopped) {
      const sentAt = now();
      // A new connection per request, like the field report's curl loop: no client-side keep-alive races with reloads.
      void httpGet('127.0.0.1', LB_PORT, '/', { timeoutMs: 5000 }).then((r) =>
        results.push({ sentAt, kind: classify(r), pod: r.body?.trim() }),
      );
      next += interval;
      await sleep(Math.max(0, next - now()));
    }
  })();
  return {
    results,
    stop: async () => {
      stopped = true;
      await loop;
      // Let the last requests finish or time out.
      await sleep(5500);
    },
  };
}

/** nginx answers 502 when the pod refuses or is unreachable, 504 when it does not answer in time. */
function classify({ status, error }) {
  if (status === 200) return 'ok';
  if (status === 502) return 'refused/unreachable (502)';
  if (status === 504) return 'timeout (504)';
  if (status === 503) return 'refused by the sidecar (503)';
  return status ? `http ${status}` : `client ${error}`;
}

// ---- the kubelet ---------------------------------------------------------------------------------------------------

/** Resolves true if the process exits within ms. */
const exitsWithin = (proc, ms) => Promise.race([proc.exited.then(() => true), sleep(ms).then(() => false)]);

/** Deletes a pod as the kubelet does (docs/kubelet.md); returns the timeline, in seconds from t0. */
async function deletePod(pod, scenario, t0) {
  const graceMs = variant.grace * 1000;
  const at = () => (now() - t0) / 1000;
  const timeline = {};
  // Every container's preStop hook starts now, the sidecar's own included; each container gets SIGTERM once its hook
  // returned, and a native sidecar only after every app container has exited too.
  let observed;
  if (scenario.nativeSleep !== undefined) {
    observed = httpGet(pod.ip, pod.sidecarPort, '/observe', {
      headers: { 'User-Agent': KUBELET_UA, Accept: '*/*' },
      timeoutMs: graceMs,
    }).then((answer) => {
      timeline.observeSeconds = at();
      timeline.observeAnswer = answer.body ? JSON.parse(answer.body) : answer.error;
    });
  }
  // A regular sidecar without a hook of its own gets SIGTERM at once, while the app's hook is starting.
  if (scenario.order === 'regular' && !observed) pod.procs.sidecar.kill('SIGTERM');
  if (observed && scenario.order === 'regular') void observed.then(() => pod.procs.sidecar.kill('SIGTERM'));
  if (scenario.nativeSleep !== undefined) {
    // The kubelet's native sleep action: it waits, and nothing outside the pod sees it.
    await sleep(scenario.nativeSleep * 1000);
    timeline.hookSeconds = at();
  } else if (scenario.hook) {
    // The kubelet's httpGet: URL from the path, its User-Agent, waits up to the grace period, ignores the status.
    const answer = await httpGet(pod.ip, pod.sidecarPort, scenario.hook, {
      headers: { 'User-Agent': KUBELET_UA, Accept: '*/*' },
      timeoutMs: graceMs,
    });
    timeline.hookSeconds = at();
    timeline.hookAnswer = answer.body ? JSON.parse(answer.body) : answer.error;
  }
  const hookMs = now() - t0;
  pod.procs.app.kill('SIGTERM');
  if (!(await exitsWithin(pod.procs.app, Math.max(graceMs - hookMs, 2000)))) pod.procs.app.kill('SIGKILL');
  timeline.appExitSeconds = ((await pod.procs.app.exited) - t0) / 1000;
  // A native sidecar gets SIGTERM only after every app container has exited (and its own hook returned); everything is
  // killed at the grace end.
  if (scenario.order === 'native') {
    if (observed) await Promise.race([observed, sleep(Math.max(graceMs - (now() - t0), 0))]);
    pod.procs.sidecar.kill('SIGTERM');
  }
  if (!(await exitsWithin(pod.procs.sidecar, Math.max(graceMs - (now() - t0), 2000)))) pod.procs.sidecar.kill('SIGKILL');
  const sidecarExit = await pod.procs.sidecar.exited;
  timeline.sidecarExitSeconds = (sidecarExit - t0) / 1000;
  timeline.sidecarExitCode = pod.procs.sidecar.exitCode;
  timeline.terminationSeconds = at();
  // The pod sandbox goes: connections to its address now time out or find no route.
  pod.removeSandbox();
  return timeline;
}

// ---- a scenario ----------------------------------------------------------------------------------------------------

/** What the client saw, in seconds from t0: every result in order, the errors by kind, the first and last error. */
function outcomes(client, t0) {
  const results = client.results.map((r) => ({ ...r, t: (r.sentAt - t0) / 1000 })).sort((x, y) => x.t - y.t);
  const errors = {};
  for (const r of results) if (r.kind !== 'ok') errors[r.kind] = (errors[r.kind] ?? 0) + 1;
  const ok = results.filter((r) => r.kind === 'ok').length;
  return {
    results,
    requests: results.length,
    ok,
    errors,
    errorCount: results.length - ok,
    firstError: results.find((r) => r.kind !== 'ok')?.t ?? null,
    lastError: results.findLast((r) => r.kind !== 'ok')?.t ?? null,
  };
}

async function runScenario(id, scenario) {
  scenarioCleanups = [];
  const old = createPod('old', id);
  const fresh = createPod('new', id);
  await Promise.all([startPod(old, scenario.proxy), startPod(fresh, scenario.proxy)]);
  scrapeTargets([old, fresh]);
  const lb = await startNginx([old, fresh]);
  await waitFor('the first scrapes', async () => (await promValue(`up{scenario="${id}",pod="old"}`)) === 1, 20_000);

  const client = startClient();
  await sleep(variant.before * 1000);
  const t0 = now();
  // The endpoint change reaches the load balancer only after the propagation delay D.
  const propagated = sleep(D * 1000).then(() => lb.drop([fresh]));
  const timeline = await deletePod(old, scenario, t0);
  // The pod is gone: Prometheus's pod discovery drops it.
  scrapeTargets([fresh]);
  await propagated;
  await sleep(variant.after * 1000);
  await client.stop();

  const q = (metric) => promValue(`sum(${metric}{scenario="${id}",pod="old"})`);
  const sidecar = {
    drainSeconds: await q('drain_sidecar_drain_duration_seconds_sum'),
    drainEpisodes: await q('drain_sidecar_drain_duration_seconds_count'),
    lateConnections: await q('drain_sidecar_late_connections_total'),
    lateRequestsEstimate: await q('drain_sidecar_late_requests_estimate_total'),
    // Observed once per episode in which traffic arrived; none: no figure.
    lastArrivalSeconds: (await q('drain_sidecar_last_arrival_seconds_count'))
      ? await q('drain_sidecar_last_arrival_seconds_sum')
      : null,
    refusedEstimate: await q('drain_sidecar_refused_connections_estimate_total'),
    hookCalls: await q('drain_sidecar_hook_calls_total'),
    proxyRefused: scenario.proxy ? await q('drain_sidecar_proxy_refused_requests_total') : null,
    proxyLateRequests: scenario.proxy ? await q('drain_sidecar_proxy_late_requests_total') : null,
    lastRequestArrivalSeconds: (await q('drain_sidecar_last_request_arrival_seconds_count'))
      ? await q('drain_sidecar_last_request_arrival_seconds_sum')
      : null,
  };
  await lb.stop();
  for (const c of scenarioCleanups.splice(0)) c();

  const { results, ...outcome } = outcomes(client, t0);
  // What the sidecar could have counted: refusals between the app's exit and the sidecar's.
  const refusedWhileSidecarAlive = results.filter(
    (r) => r.kind.startsWith('refused') && r.t >= timeline.appExitSeconds && r.t <= timeline.sidecarExitSeconds,
  ).length;
  // What the passive mode should see: requests the old pod's app answered after the hook call (t0).
  const servedLate = results.filter((r) => r.pod === 'old' && r.t >= 0);
  return {
    id,
    title: scenario.title,
    oldPodServedLate: servedLate.length,
    oldPodLastServedSeconds: servedLate.at(-1)?.t ?? null,
    order: scenario.order,
    ...outcome,
    refusedWhileSidecarAlive,
    refusedBySidecar: results.filter((r) => r.kind.startsWith('refused by the sidecar')).length,
    appStoppedSeconds: timeline.observeAnswer?.appStoppedSeconds ?? null,
    ...timeline,
    sidecar,
  };
}

// ---- the new pod's race ----------------------------------------------------------------------------------------------

/**
 * The kubelet's probes of a new pod, every second from the node's address as pkg/probe/http makes them (a new connection
 * each, User-Agent kube-probe): the app's port, and the sidecar's, each on a ticker of its own as the kubelet's probe
 * workers are. Resolves `ready` at the first answer 200 from the app.
 */
function probePod(pod, t0) {
  let stopped = false;
  let markReady;
  const ready = new Promise((r) => {
    markReady = r;
  });
  const headers = { 'User-Agent': PROBE_UA, Connection: 'close' };
  const every = async (offsetMs, probe) => {
    await sleep(offsetMs);
    while (!stopped) {
      await probe();
      await sleep(1000);
    }
  };
  let isReady = false;
  const loops = [
    every(0, async () => {
      const app = await httpGet(pod.ip, pod.appPort, '/healthz', { headers, timeoutMs: 1000 });
      if (!isReady && app.status === 200) {
        isReady = true;
        markReady((now() - t0) / 1000);
      }
    }),
    every(500, () => httpGet(pod.ip, pod.sidecarPort, '/readyz', { headers, timeoutMs: 1000 })),
  ];
  return {
    ready,
    stop: async () => {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

/**
 * A rollout's other end: the new pod starts at t0 and the kubelet probes it; the load balancer adds it only L seconds
 * later, once its own health check passes, as a NEG does; the rollout deletes the old pod once the new one has been
 * ready for minReadySeconds, and the old pod's endpoint leaves the load balancer D seconds after that.
 */
async function runRace(id, scenario, minReady) {
  scenarioCleanups = [];
  const L = variant.lbAdd;
  const old = createPod('old', id);
  const fresh = createPod('new', id);
  await startPod(old, false);
  scrapeTargets([old, fresh]);
  const lb = await startNginx([old], [fresh]);
  await waitFor('the first scrapes', async () => (await promValue(`up{scenario="${id}",pod="old"}`)) === 1, 20_000);
  const noLiveBefore = noLiveUpstreams();

  const client = startClient();
  await sleep(variant.before * 1000);
  const t0 = now();
  const at = () => (now() - t0) / 1000;
  const timeline = { minReadySeconds: minReady, lbAddSeconds: L };
  const inLb = { old: true, fresh: false };
  const updateLb = () => {
    const live = [...(inLb.old ? [old] : []), ...(inLb.fresh ? [fresh] : [])];
    const down = [...(inLb.old ? [] : [old]), ...(inLb.fresh ? [] : [fresh])];
    lb.drop(live, down);
  };
  // The app warms up for a second and a half before its readiness path answers 200; inject passes its readinessProbe.
  spawnPod(
    fresh,
    false,
    { DRAIN_MIN_READY_SECONDS: String(minReady), DRAIN_APP_READINESS: `http://:${fresh.appPort}/healthz` },
    { READY_AFTER_SECONDS: '1.5' },
  );
  const added = sleep(L * 1000).then(() => {
    inLb.fresh = true;
    updateLb();
    timeline.lbAddedSeconds = at();
  });
  const kubelet = probePod(fresh, t0);
  timeline.readySeconds = await kubelet.ready;
  await sleep(minReady * 1000);
  // The Deployment controller deletes the old pod; its endpoint reaches the load balancer D seconds later.
  const deletedAt = now();
  timeline.oldDeletedSeconds = at();
  const dropped = sleep(D * 1000).then(() => {
    inLb.old = false;
    updateLb();
    timeline.oldDroppedSeconds = at();
  });
  const termination = await deletePod(old, { order: 'native', hook: `/sleep?s=${D + 3}` }, deletedAt);
  await Promise.all([added, dropped]);
  scrapeTargets([fresh]);
  await sleep(variant.after * 1000);
  await client.stop();
  const { startup, probes } = JSON.parse((await httpGet(fresh.ip, fresh.sidecarPort, '/status')).body);
  const q = (metric) => promValue(`sum(${metric}{scenario="${id}",pod="new"})`);
  const sidecar = {
    firstTrafficDelaySum: await q('drain_sidecar_first_traffic_delay_seconds_sum'),
    firstTrafficDelayCount: await q('drain_sidecar_first_traffic_delay_seconds_count'),
    minReadySeconds: await q('drain_sidecar_min_ready_seconds'),
  };
  await kubelet.stop();
  await lb.stop();
  const lbNoLiveUpstream = noLiveUpstreams() - noLiveBefore;
  for (const c of scenarioCleanups.splice(0)) c();

  const { results, ...outcome } = outcomes(client, t0);
  return {
    id,
    title: scenario.title.replace('as recommended', `${minReady} (recommended)`),
    race: true,
    ...outcome,
    lbNoLiveUpstream,
    firstServedByNewSeconds: results.find((r) => r.pod === 'new')?.t ?? null,
    sidecarExitCode: termination.sidecarExitCode,
    ...timeline,
    startup,
    probes,
    recommendedMinReadySeconds:
      startup.firstTrafficDelaySeconds === null ? null : recommendedMinReady(startup.firstTrafficDelaySeconds),
    sidecar,
  };
}

// ---- output --------------------------------------------------------------------------------------------------------

const fmt = (n, digits = 1) => (n === null || n === undefined ? '-' : Number.isInteger(n) ? String(n) : n.toFixed(digits));
function raceMarkdown(rows) {
  const head = [
    'scenario',
    'requests',
    'errors',
    'errors by kind',
    'nginx: no live upstream',
    'new pod ready (s)',
    'old pod deleted (s)',
    'load balancer dropped the old pod (s)',
    'load balancer added the new pod (s)',
    'sidecar: app listening (s)',
    'sidecar: app ready (s)',
    'sidecar: first traffic (s)',
    'sidecar: first traffic after readiness (s)',
    'recommended minReadySeconds',
  ];
  return table(head, rows, (r) => {
    const s = r.startup;
    return `${r.lbNoLiveUpstream} | ${fmt(r.readySeconds)} | ${fmt(r.oldDeletedSeconds)} | ${fmt(r.oldDroppedSeconds)} | ${fmt(r.lbAddedSeconds)} | ${fmt(s.appListeningSeconds)} | ${fmt(s.appReadySeconds)} | ${fmt(s.firstTrafficSeconds)} | ${fmt(s.firstTrafficDelaySeconds)} | ${fmt(r.recommendedMinReadySeconds)}`;
  });
}

/** A Markdown table: each row opens with the scenario, its requests and errors, then the cells rest(row) gives. */
function table(head, rows, rest) {
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const r of rows) {
    const kinds =
      Object.entries(r.errors)
        .map(([k, n]) => `${n} ${k}`)
        .join(', ') || '-';
    lines.push(`| (${r.id}) ${r.title} | ${r.requests} | ${r.errorCount} | ${kinds} | ${rest(r)} |`);
  }
  return lines.join('\n');
}

function markdown(rows) {
  const head = [
    'scenario',
    'requests',
    'errors',
    'errors by kind',
    'hook returned (s)',
    'app exited (s)',
    'termination (s)',
    'sidecar: drain (s)',
    'late conns',
    'late requests (estimate)',
    'last arrival (s)',
    'client: old pod answered after hook',
    'client: last of them (s)',
    'refused (estimate)',
    'client refused while sidecar alive',
    'proxy: late requests',
    'proxy: last request (s)',
    'proxy: refused',
    'client 503s',
    'observe: app stopped (s)',
  ];
  return table(
    head,
    rows,
    (r) =>
      `${fmt(r.hookSeconds)} | ${fmt(r.appExitSeconds)} | ${fmt(r.terminationSeconds)} | ${fmt(r.sidecar.drainSeconds)} | ${fmt(r.sidecar.lateConnections)} | ${fmt(r.sidecar.lateRequestsEstimate)} | ${fmt(r.sidecar.lastArrivalSeconds)} | ${r.oldPodServedLate} | ${fmt(r.oldPodLastServedSeconds)} | ${fmt(r.sidecar.refusedEstimate)} | ${r.refusedWhileSidecarAlive} | ${fmt(r.sidecar.proxyLateRequests)} | ${fmt(r.sidecar.lastRequestArrivalSeconds)} | ${fmt(r.sidecar.proxyRefused)} | ${r.refusedBySidecar} | ${fmt(r.appStoppedSeconds)}`,
  );
}

/**
 * Nothing addressed to the drill's range may leave the machine: once a pod's sandbox is deleted its /30 route goes with
 * it, and without this the default route would carry the load balancer's and Prometheus's packets off the host. The
 * range is routed into a namespace of its own that forwards nothing, where packets vanish: a deleted pod's address
 * then times out, as it does in a cloud network (the field report's `connection timeout`).
 */
function containDrillRange() {
  const ns = `drill-${process.pid}-void`;
  const host = `drh${process.pid % 10_000}v`;
  const ip = (...a) => execFileSync('ip', a);
  ip('netns', 'add', ns);
  cleanups.push(() => spawnSync('ip', ['netns', 'del', ns]));
  ip('link', 'add', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
  ip('addr', 'add', '198.18.255.1/30', 'dev', host);
  ip('link', 'set', host, 'up');
  ip('-n', ns, 'addr', 'add', '198.18.255.2/30', 'dev', 'eth0');
  ip('-n', ns, 'link', 'set', 'eth0', 'up');
  // The load balancer's own source address, on this host (its packets to the pods take each pod's /30 route).
  ip('addr', 'add', `${LB_SOURCE()}/32`, 'dev', host);
  ip('route', 'replace', '198.18.0.0/15', 'via', '198.18.255.2');
}

async function main() {
  if (isolated) containDrillRange();
  if (!isolated)
    console.log(
      'not root or no `ip`: pods share the loopback network (ports differ); refused estimates include every reset on the machine',
    );
  console.log(
    `drill (${variant.name}): D=${D}s propagation delay, grace ${variant.grace}s, ${variant.rate} requests/s through nginx; pods ${isolated ? 'in their own network namespaces (198.18.0.0/15)' : 'on loopback ports'}`,
  );
  await startPrometheus();
  const rows = [];
  for (const id of opts.scenarios.split(',')) {
    const scenario = SCENARIOS[id];
    if (!scenario) throw new Error(`unknown scenario ${id}; known: ${Object.keys(SCENARIOS).join(', ')}`);
    if (scenario.race) {
      // What the previous race scenario's new pod measured, as the recording rule turns it into a setting; without
      // one, what covers L whenever the pod got ready.
      const measured = rows.findLast((r) => r.race && r.recommendedMinReadySeconds !== null)?.recommendedMinReadySeconds;
      const minReady = scenario.minReady === 'recommended' ? (measured ?? recommendedMinReady(variant.lbAdd)) : scenario.minReady;
      const row = await runRace(id, scenario, minReady);
      rows.push(row);
      console.log(
        `(${id}) ${row.title}: ${row.requests} requests, ${row.errorCount} errors, first traffic ${fmt(row.startup.firstTrafficSeconds)} s after start (L = ${variant.lbAdd} s)`,
      );
      continue;
    }
    const row = await runScenario(id, scenario);
    rows.push(row);
    console.log(
      `(${id}) ${row.title}: ${row.requests} requests, ${row.errorCount} errors, termination ${fmt(row.terminationSeconds)} s`,
    );
  }
  const races = rows.filter((r) => r.race);
  const drains = rows.filter((r) => !r.race);
  const table = [drains.length ? markdown(drains) : '', races.length ? raceMarkdown(races) : ''].filter(Boolean).join('\n\n');
  console.log(`\n${table}\n`);
  mkdirSync(opts.out, { recursive: true });
  const report = { variant: { ...variant, isolated }, scenarios: rows };
  writeFileSync(join(opts.out, 'latest.json'), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(
    join(opts.out, 'latest.md'),
    `Drill (${variant.name}, D=${D}s, grace ${variant.grace}s, ${variant.rate} req/s)\n\n${table}\n`,
  );
  console.log(`written: ${join(opts.out, 'latest.json')}, latest.md; logs in ${work}`);
  if (opts.docs) writeDocs(drains, markdown(drains), races);
}

/** The drill's figures in the docs: the whole table in drill/README.md, the comparison's figures in README.md. */
function writeDocs(rows, table, races) {
  const by = Object.fromEntries(rows.map((r) => [r.id, r]));
  const { a, b, c, e, h } = by;
  if (!a || !b || !c || !e) throw new Error('--docs needs scenarios a, b, c and e');
  const when = new Date().toISOString().slice(0, 10);
  writeSection(
    join(ROOT, 'drill/README.md'),
    'drill-table',
    `Run of ${when} (\`npm run drill -- --${variant.name} --docs\`; ${variant.name} variant: D = ${D} s, grace ${variant.grace} s, ${variant.rate} requests/s, ${isolated ? 'pods in network namespaces' : 'pods on loopback ports'}):\n\n${table}`,
  );
  const pct = (n, d) => `${((100 * n) / d).toFixed(1)}%`;
  writeSection(
    join(ROOT, 'README.md'),
    'drill-figures',
    [
      `From the termination drill (\`npm run drill -- --${variant.name} --docs\`, ${when}; nginx as the load balancer, D = ${D} s before it stops sending to a deleted pod, ${variant.rate} requests/s; [drill/README.md](drill/README.md)):`,
      '',
      `| what happened | no hook | a fixed sleep longer than D | \`/drain\` | a fixed sleep shorter than D |${h ? ' a native `preStop.sleep` longer than D, observed |' : ''}`,
      `|---|---|---|---|---|${h ? '---|' : ''}`,
      `| requests lost | ${a.errorCount} of ${a.requests} (${pct(a.errorCount, a.requests)}) | ${b.errorCount} of ${b.requests} | ${c.errorCount} of ${c.requests} | ${e.errorCount} of ${e.requests} |${h ? ` ${h.errorCount} of ${h.requests} |` : ''}`,
      `| the hook held the app (s) | - | ${fmt(b.hookSeconds)} | ${fmt(c.hookSeconds)} | ${fmt(e.hookSeconds)} |${h ? ` ${fmt(h.hookSeconds)} (the sidecar measured ${fmt(h.appStoppedSeconds)} until the app stopped) |` : ''}`,
      `| requests that arrived after the drain began, as the sidecar counted them | - | ${fmt(b.sidecar.lateRequestsEstimate)} (the client saw ${b.oldPodServedLate}) | ${fmt(c.sidecar.lateRequestsEstimate)} | ${fmt(e.sidecar.lateRequestsEstimate)} |${h ? ` ${fmt(h.sidecar.lateRequestsEstimate)} (the client saw ${h.oldPodServedLate}) |` : ''}`,
      `| when the last of them arrived (s into the drain) | - | ${fmt(b.sidecar.lastArrivalSeconds)} | ${fmt(c.sidecar.lastArrivalSeconds)} | ${fmt(e.sidecar.lastArrivalSeconds)} |${h ? ` ${fmt(h.sidecar.lastArrivalSeconds)} |` : ''}`,
      `| refused during termination, as the sidecar estimated (the client saw) | ${fmt(a.sidecar.refusedEstimate)} (${a.refusedWhileSidecarAlive}) | ${fmt(b.sidecar.refusedEstimate)} | ${fmt(c.sidecar.refusedEstimate)} | ${fmt(e.sidecar.refusedEstimate)} (${e.refusedWhileSidecarAlive}) |${h ? ` ${fmt(h.sidecar.refusedEstimate)} (${h.refusedWhileSidecarAlive}) |` : ''}`,
      '',
      `\`/drain\` ended the wait ${fmt(b.hookSeconds - c.hookSeconds)} s sooner than the fixed sleep, with nothing lost; the sidecar timed the last late request at ${fmt(b.sidecar.lastArrivalSeconds)} s, the load balancer's real deprogram time, which is what to set a sleep from.`,
    ].join('\n'),
  );
  const [k, l] = [races.find((r) => r.id === 'k'), races.find((r) => r.id === 'l')];
  if (!k || !l) throw new Error('--docs needs scenarios k and l');
  const setting = `${variant.name} variant: the load balancer adds a new pod ${variant.lbAdd} s after it started, D = ${D} s, ${variant.rate} requests/s`;
  writeSection(
    join(ROOT, 'drill/README.md'),
    'drill-race-table',
    `Run of ${when} (\`npm run drill -- --${variant.name} --docs\`; ${setting}; seconds from the new pod's start):\n\n${raceMarkdown(races)}`,
  );
  writeSection(
    join(ROOT, 'README.md'),
    'race-figures',
    [
      `From the drill's rollout scenarios (\`npm run drill -- --${variant.name} --docs\`, ${when}; ${setting}; [drill/README.md](drill/README.md)):`,
      '',
      `| what happened | \`minReadySeconds: 0\` | \`minReadySeconds: ${l.minReadySeconds}\` (recommended from the first run) |`,
      '|---|---|---|',
      `| requests lost (nginx: no live upstream) | ${k.errorCount} of ${k.requests} (${k.lbNoLiveUpstream}) | ${l.errorCount} of ${l.requests} (${l.lbNoLiveUpstream}) |`,
      `| the new pod ready, as the kubelet emulator saw it (s) | ${fmt(k.readySeconds)} | ${fmt(l.readySeconds)} |`,
      `| the old pod deleted (s) | ${fmt(k.oldDeletedSeconds)} | ${fmt(l.oldDeletedSeconds)} |`,
      `| the load balancer added the new pod (s) | ${fmt(k.lbAddedSeconds)} | ${fmt(l.lbAddedSeconds)} |`,
      `| the sidecar: first traffic (s after its start) | ${fmt(k.startup.firstTrafficSeconds)} | ${fmt(l.startup.firstTrafficSeconds)} |`,
      `| the sidecar: first traffic after readiness (s) | ${fmt(k.startup.firstTrafficDelaySeconds)} | ${fmt(l.startup.firstTrafficDelaySeconds)} |`,
      '',
      `With \`minReadySeconds: 0\` the rollout deleted the old pod ${fmt(k.oldDeletedSeconds - k.readySeconds)} s after the new one was ready, and for ${fmt(k.lastError - k.firstError)} s the load balancer had no backend it would send to. The new pod's sidecar measured the first traffic ${fmt(k.startup.firstTrafficDelaySeconds)} s after readiness; the recording rule turns that into \`minReadySeconds: ${l.minReadySeconds}\` (ceil(${fmt(k.startup.firstTrafficDelaySeconds)} × 1.25 + 2)), and the same rollout with it lost nothing.`,
    ].join('\n'),
  );
  console.log('written: drill/README.md, README.md (drill figures)');
}

try {
  await main();
} finally {
  // Pods and nginx first, then Prometheus, and the blackhole route last, once nothing can send to the range.
  for (const c of [...scenarioCleanups, ...cleanups.reverse()]) c();
  if (!process.env.DRILL_KEEP_LOGS) rmSync(work, { recursive: true, force: true });
}
