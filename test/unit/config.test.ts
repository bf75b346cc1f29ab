import { describe, expect, it } from 'vitest';
import { budgetWarnings, CONFIG_SPEC, parseConfig, redactConfig, renderHelp } from '../../src/config.js';

describe('parseConfig', () => {
  it('gives the documented defaults with an empty environment', () => {
    const result = parseConfig({}, []);
    expect(result).toMatchObject({
      ok: true,
      config: {
        port: 9555,
        host: '',
        appPorts: [],
        gracePeriodSeconds: 30,
        defaultSleepSeconds: 20,
        maxSleepSeconds: 25,
        maxHooks: 64,
        hookToken: '',
        logLevel: 'info',
      },
      warnings: [],
    });
  });

  it.each([
    ['DRAIN_PORT', '8080', 'port', 8080],
    ['DRAIN_HOST', '127.0.0.1', 'host', '127.0.0.1'],
    ['DRAIN_APP_PORTS', '8080, 8443,8080', 'appPorts', [8080, 8443]],
    ['DRAIN_APP_PORTS', '', 'appPorts', []],
    ['DRAIN_GRACE_PERIOD_SECONDS', '25', 'gracePeriodSeconds', 25],
    ['DRAIN_DEFAULT_SLEEP_SECONDS', '12.5', 'defaultSleepSeconds', 12.5],
    ['DRAIN_MAX_SLEEP_SECONDS', '28', 'maxSleepSeconds', 28],
    ['DRAIN_MAX_HOOKS', '3', 'maxHooks', 3],
    ['DRAIN_HOOK_TOKEN', 's3cret', 'hookToken', 's3cret'],
    ['DRAIN_LOG_LEVEL', 'debug', 'logLevel', 'debug'],
    ['DRAIN_SHUTDOWN_HOLD_SECONDS', '0', 'shutdownHoldSeconds', 0],
    ['DRAIN_FINAL_SCRAPE_SECONDS', '5', 'finalScrapeSeconds', 5],
  ])('reads %s=%j into %s', (env, raw, key, expected) => {
    const result = parseConfig({ [env]: raw }, []);
    expect(result.ok).toBe(true);
    if (result.ok === true) expect(result.config[key as keyof typeof result.config]).toEqual(expected);
  });

  it.each([
    ['DRAIN_PORT', '65536', '--port (DRAIN_PORT) must be a whole number from 0 to 65535; got "65536"'],
    ['DRAIN_PORT', '95a5', '--port (DRAIN_PORT) must be a whole number from 0 to 65535; got "95a5"'],
    ['DRAIN_APP_PORTS', '0', '--app-ports (DRAIN_APP_PORTS) must be a comma-separated list of ports (1-65535); "0" is not'],
    [
      'DRAIN_APP_PORTS',
      '8080,http',
      '--app-ports (DRAIN_APP_PORTS) must be a comma-separated list of ports (1-65535); "http" is not',
    ],
    ['DRAIN_GRACE_PERIOD_SECONDS', '0', '--grace-period-seconds (DRAIN_GRACE_PERIOD_SECONDS) must be a decimal number'],
    ['DRAIN_DEFAULT_SLEEP_SECONDS', '-1', '--default-sleep-seconds (DRAIN_DEFAULT_SLEEP_SECONDS) must be a decimal number'],
    ['DRAIN_DEFAULT_SLEEP_SECONDS', '20s', '--default-sleep-seconds (DRAIN_DEFAULT_SLEEP_SECONDS) must be a decimal number'],
    ['DRAIN_MAX_HOOKS', '1.5', '--max-hooks (DRAIN_MAX_HOOKS) must be a whole number'],
    ['DRAIN_LOG_LEVEL', 'verbose', '--log-level (DRAIN_LOG_LEVEL) must be one of fatal, error, warn, info, debug, trace, silent'],
  ])('rejects %s=%j naming the flag, the variable and the rule', (env, raw, message) => {
    const result = parseConfig({ [env]: raw }, []);
    expect(result.ok).toBe(false);
    if (result.ok === false) expect(result.errors[0]).toContain(message);
  });

  it('reports every error at once', () => {
    const result = parseConfig({ DRAIN_PORT: 'x', DRAIN_MAX_HOOKS: '0', DRAIN_LOG_LEVEL: 'loud' }, ['--bogus']);
    expect(result.ok).toBe(false);
    if (result.ok === false) expect(result.errors).toHaveLength(4);
  });

  it('never echoes the hook token in an error', () => {
    const result = parseConfig({ DRAIN_HOOK_TOKEN: 'topsecret', DRAIN_PORT: 'x' }, []);
    expect(JSON.stringify(result)).not.toContain('topsecret');
  });

  it('rejects an app port equal to its own port, and a default above the maximum', () => {
    const result = parseConfig(
      { DRAIN_APP_PORTS: '8080,9555', DRAIN_DEFAULT_SLEEP_SECONDS: '30', DRAIN_GRACE_PERIOD_SECONDS: '60' },
      [],
    );
    expect(result.ok).toBe(false);
    if (result.ok === false) {
      expect(result.errors).toEqual([
        expect.stringContaining("must not include the sidecar's own --port 9555"),
        expect.stringContaining('must not exceed --max-sleep-seconds'),
      ]);
    }
  });

  it('refuses what cannot work: the proxy listening on an app port or on a host name', () => {
    const onApp = parseConfig(
      { DRAIN_APP_PORTS: '8080', DRAIN_PROXY_LISTEN: '8080', DRAIN_PROXY_UPSTREAM: '127.0.0.1:9000' },
      [],
    );
    expect(onApp).toMatchObject({
      ok: false,
      errors: [expect.stringContaining("must not include the proxy's own --proxy-listen 8080")],
    });
    const named = parseConfig({ DRAIN_PROXY_LISTEN: 'example.com:9556', DRAIN_PROXY_UPSTREAM: '127.0.0.1:8080' }, []);
    expect(named).toMatchObject({ ok: false, errors: [expect.stringContaining('must be a port or IP:port')] });
    expect(parseConfig({ DRAIN_PROXY_LISTEN: '[::]:9556', DRAIN_PROXY_UPSTREAM: '127.0.0.1:8080' }, []).ok).toBe(true);
  });

  it('lets a flag win over its environment variable, in both flag spellings', () => {
    const result = parseConfig({ DRAIN_PORT: '8000', DRAIN_MAX_HOOKS: '5' }, ['--port', '8001', '--max-hooks=6']);
    expect(result).toMatchObject({ ok: true, config: { port: 8001, maxHooks: 6 } });
  });

  it('reports a flag without a value', () => {
    expect(parseConfig({}, ['--port'])).toEqual({ ok: false, errors: ['--port needs a value'] });
  });

  it('answers --help and --version before reading anything else', () => {
    expect(parseConfig({ DRAIN_PORT: 'x' }, ['--help'])).toEqual({ ok: 'help' });
    expect(parseConfig({ DRAIN_PORT: 'x' }, ['--version'])).toEqual({ ok: 'version' });
  });

  it('gives every spec entry a flag twin that --help lists', () => {
    const help = renderHelp('drain-sidecar');
    for (const spec of CONFIG_SPEC) {
      expect(spec.env).toMatch(/^DRAIN_[A-Z_]+$/);
      expect(help).toContain(`${spec.flag} (${spec.env}`);
    }
  });
});

describe('budgetWarnings', () => {
  const base = parseConfig({}, []);
  if (base.ok !== true) throw new Error('defaults must parse');

  it('warns when the default sleep leaves the app less than the kubelet minimum of 2 s', () => {
    expect(budgetWarnings({ ...base.config, gracePeriodSeconds: 21, maxSleepSeconds: 20 })).toEqual([
      expect.stringContaining('leaves the app 1s'),
    ]);
  });

  it('warns when a maximum sleep of 0 turns every hook into no hook', () => {
    const r = parseConfig({ DRAIN_MAX_SLEEP_SECONDS: '0', DRAIN_DEFAULT_SLEEP_SECONDS: '0' }, []);
    expect(r).toMatchObject({ ok: true, warnings: [expect.stringContaining('the hooks hold nothing')] });
  });

  it('warns when the maximum sleep exceeds the grace period', () => {
    expect(budgetWarnings({ ...base.config, gracePeriodSeconds: 24 })).toEqual([
      expect.stringContaining('DRAIN_MAX_SLEEP_SECONDS 25 exceeds the grace period of 24s'),
    ]);
  });

  it('is silent for the defaults and for a 25 s GKE Spot budget', () => {
    expect(budgetWarnings(base.config)).toEqual([]);
    expect(budgetWarnings({ ...base.config, gracePeriodSeconds: 25 })).toEqual([]);
  });
});

describe('redactConfig', () => {
  it('shows whether the token is set, never the token', () => {
    const result = parseConfig({ DRAIN_HOOK_TOKEN: 'topsecret' }, []);
    if (result.ok !== true) throw new Error('must parse');
    expect(redactConfig(result.config).hookToken).toBe('(set)');
    expect(JSON.stringify(redactConfig(result.config))).not.toContain('topsecret');
  });
});

describe('proxy configuration', () => {
  it.each([
    [
      { DRAIN_PROXY_LISTEN: '8080', DRAIN_PROXY_UPSTREAM: '127.0.0.1:8081' },
      { host: '', port: 8080 },
      { host: '127.0.0.1', port: 8081 },
    ],
    [
      { DRAIN_PROXY_LISTEN: '0.0.0.0:80', DRAIN_PROXY_UPSTREAM: 'localhost:3000' },
      { host: '0.0.0.0', port: 80 },
      { host: 'localhost', port: 3000 },
    ],
    [
      { DRAIN_PROXY_LISTEN: '[::]:8080', DRAIN_PROXY_UPSTREAM: '[::1]:8081' },
      { host: '::', port: 8080 },
      { host: '::1', port: 8081 },
    ],
  ])('reads %j', (env, listen, upstream) => {
    expect(parseConfig(env, [])).toMatchObject({ ok: true, config: { proxyListen: listen, proxyUpstream: upstream } });
  });

  it('is off when both are unset', () => {
    expect(parseConfig({}, [])).toMatchObject({ ok: true, config: { proxyListen: undefined, proxyUpstream: undefined } });
  });

  it("watches the upstream's port as the app port unless app ports are given", () => {
    const env = { DRAIN_PROXY_LISTEN: '8080', DRAIN_PROXY_UPSTREAM: '127.0.0.1:8081' };
    expect(parseConfig(env, [])).toMatchObject({ config: { appPorts: [8081] } });
    expect(parseConfig({ ...env, DRAIN_APP_PORTS: '9000' }, [])).toMatchObject({ config: { appPorts: [9000] } });
  });

  it.each([
    [{ DRAIN_PROXY_LISTEN: '8080' }, 'go together: set both or neither'],
    [
      { DRAIN_PROXY_LISTEN: '8080', DRAIN_PROXY_UPSTREAM: '10.0.0.5:80' },
      'must be on loopback (the app in the same pod); got 10.0.0.5',
    ],
    [{ DRAIN_PROXY_LISTEN: '8080', DRAIN_PROXY_UPSTREAM: '8081' }, '--proxy-upstream (DRAIN_PROXY_UPSTREAM) must be host:port'],
    [
      { DRAIN_PROXY_LISTEN: 'http', DRAIN_PROXY_UPSTREAM: '127.0.0.1:8081' },
      '--proxy-listen (DRAIN_PROXY_LISTEN) must be a port or host:port',
    ],
    [{ DRAIN_PROXY_LISTEN: '9555', DRAIN_PROXY_UPSTREAM: '127.0.0.1:8081' }, "must not use the sidecar's own --port 9555"],
  ])('rejects %j', (env, message) => {
    const result = parseConfig(env, []);
    expect(result.ok).toBe(false);
    if (result.ok === false) expect(result.errors.join('\n')).toContain(message);
  });
});
