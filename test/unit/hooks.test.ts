import { Hono } from 'hono';
import { getPath } from 'hono/utils/url';
import { describe, expect, it } from 'vitest';
import { hookRoute } from '../../src/hooks.js';

// Targets as the kubelet or anything else may send them: the hook paths of real manifests, their typos, escapes and
// what Node's parser lets through.
const TARGETS = [
  '/sleep?s=20',
  '//sleep?s=20',
  '///drain?max=20',
  '/drain',
  '/observe',
  '/sl%65ep?s=5',
  '/%73leep',
  '/./sleep',
  '/sleep/../drain',
  '/x/../observe',
  '/sleep/',
  '/SLEEP',
  '/Drain',
  '/slep?s=20',
  '/sleepp',
  '/%2fsleep',
  '/sleep%2f',
  '/sleep%',
  '/sleep;s=20',
  '/observ',
  '/healthz',
  '/readyz',
  '/metrics',
  '/status',
  '/',
  '/drainage',
];

/** The API's router, with the admin app's path rule: what it would call each target. */
async function honoRoute(target: string): Promise<string> {
  const app = new Hono({ getPath: (req) => getPath(req).replace(/^\/{2,}/, '/') });
  for (const path of ['/sleep', '/drain', '/observe', '/healthz', '/readyz', '/metrics', '/status'])
    app.get(path, (c) => c.text(path.slice(1)));
  const answer = await app.request(`http://pod${target}`);
  return answer.status === 200 ? answer.text() : 'not_found';
}

describe('hookRoute', () => {
  it.each(TARGETS)('takes %s for the endpoint the API router would, and only a GET typo of a hook besides', async (target) => {
    const route = hookRoute('GET', target);
    const api = await honoRoute(target);
    if (['sleep', 'drain', 'observe'].includes(api)) expect(route).toMatchObject({ endpoint: api, meant: false });
    else if (route) expect(route.meant).toBe(true);
    // What it takes as a typo is a path the router does not serve.
    if (route?.meant) expect(api).toBe('not_found');
  });

  it('reads the query of the target, after collapsing the slashes an older kubelet sends', () => {
    expect(hookRoute('GET', '//sleep?s=20&s=3')?.query.getAll('s')).toEqual(['20', '3']);
    expect(hookRoute('HEAD', '/drain?max=7')).toMatchObject({ endpoint: 'drain', path: '/drain', meant: false });
  });

  it.each([
    ['/sleep/', 'sleep'],
    ['/SLEEP', 'sleep'],
    ['/%2fsleep', 'sleep'],
    ['/slep?s=20', 'sleep'],
    ['/Drain', 'drain'],
    ['/drian', 'drain'],
  ])('takes the typo %s as a call meant for /%s', (target, endpoint) => {
    expect(hookRoute('GET', target)).toMatchObject({ endpoint, meant: true });
  });

  it.each([
    ['POST', '/sleep'],
    ['DELETE', '/drain'],
    ['HEAD', '/sleep/'],
    ['GET', '/healthz'],
    ['GET', '/metrics'],
    ['GET', '/observ'],
    ['GET', '/'],
    [undefined, '/sleep'],
  ])('leaves %s %s to the API', (method, target) => {
    expect(hookRoute(method, target)).toBeUndefined();
  });
});
