import { describe, expect, it } from 'vitest';
import { parseDrainParams, parseSleepParams } from '../../src/params.js';

const config = { defaultSleepSeconds: 20, maxSleepSeconds: 25 };
const parse = (query: string) => parseSleepParams(new URLSearchParams(query), config);

describe('parseSleepParams', () => {
  it.each([
    ['', 20, undefined],
    ['s=0', 0, 0],
    ['s=5', 5, 5],
    ['s=0.5', 0.5, 0.5],
    ['s=.25', 0.25, 0.25],
    ['s=7.', 7, 7],
    ['s=25', 25, 25],
  ])('holds %j for %s seconds', (query, seconds, requested) => {
    expect(parse(query)).toEqual({ seconds, requestedSeconds: requested, clamped: false, problems: [] });
  });

  it('clamps a request above the maximum to the maximum', () => {
    expect(parse('s=600')).toEqual({ seconds: 25, requestedSeconds: 600, clamped: true, problems: [] });
  });

  it.each([
    ['s=abc', 's must be a decimal number of seconds such as s=20; got "abc"'],
    ['s=', 's must be a decimal number of seconds such as s=20; got ""'],
    ['s=-3', 's must be a decimal number of seconds such as s=20; got "-3"'],
    ['s=20s', 's must be a decimal number of seconds such as s=20; got "20s"'],
    ['s=1e3', 's must be a decimal number of seconds such as s=20; got "1e3"'],
    ['s=Infinity', 's must be a decimal number of seconds such as s=20; got "Infinity"'],
    ['s=NaN', 's must be a decimal number of seconds such as s=20; got "NaN"'],
    ['s=1&s=2', 's is given 2 times; give it once'],
    ['sec=20', 'unknown parameter "sec"; known: s'],
  ])('falls back to the default for %j and names the problem', (query, problem) => {
    expect(parse(query)).toMatchObject({ seconds: 20, clamped: false, problems: [problem] });
  });

  it('keeps an echoed value short, so the answer stays far below the 10 KiB the kubelet reads', () => {
    const { problems } = parse(`s=${'9x'.repeat(5000)}`);
    expect(problems[0]?.length).toBeLessThan(120);
  });
});

describe('parseDrainParams', () => {
  const defaults = { defaultSleepSeconds: 20, maxSleepSeconds: 25, drainMinSeconds: 5, drainQuietSeconds: 3 };
  const drain = (query: string) => parseDrainParams(new URLSearchParams(query), defaults);

  it.each([
    ['', { minSeconds: 5, maxSeconds: 20, quietSeconds: 3 }],
    ['min=2&max=10&quiet=1.5', { minSeconds: 2, maxSeconds: 10, quietSeconds: 1.5 }],
    ['max=3', { minSeconds: 3, maxSeconds: 3, quietSeconds: 3 }],
    ['min=0&quiet=0', { minSeconds: 0, maxSeconds: 20, quietSeconds: 0 }],
  ])('reads %j', (query, expected) => {
    expect(drain(query)).toMatchObject({ ...expected, clamped: false, problems: [] });
  });

  it('clamps a max above the maximum sleep', () => {
    expect(drain('max=90')).toMatchObject({ maxSeconds: 25, clamped: true, problems: [] });
  });

  it.each([
    ['min=abc', 'min must be a decimal number of seconds such as min=20; got "abc"'],
    ['max=-1', 'max must be a decimal number of seconds such as max=20; got "-1"'],
    ['min=10&max=4', 'min (10) must not exceed max (4)'],
    ['min=100', 'min (100) must not exceed the default max (20); give max too'],
    ['s=20', 'unknown parameter "s"; known: min, max, quiet'],
  ])('falls back to all the defaults for %j and names the problem', (query, problem) => {
    expect(drain(query)).toMatchObject({ minSeconds: 5, maxSeconds: 20, quietSeconds: 3, problems: [problem] });
  });
});
