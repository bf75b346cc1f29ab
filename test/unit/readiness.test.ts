import { describe, expect, it } from 'vitest';
import { parseReadinessCheck } from '../../src/readiness.js';

describe('parseReadinessCheck', () => {
  it.each([
    ['http://:8080/ready', { scheme: 'http', port: 8080, path: '/ready' }],
    ['http://:8080', { scheme: 'http', port: 8080, path: '/' }],
    ['https://:8443/healthz?full=1', { scheme: 'https', port: 8443, path: '/healthz?full=1' }],
    ['tcp://:5432', { scheme: 'tcp', port: 5432, path: '/' }],
  ])('reads %s', (raw, expected) => {
    expect(parseReadinessCheck(raw)).toEqual(expected);
  });

  it.each([
    ['http://example.com:8080/ready', 'a host: the check goes to loopback, never elsewhere'],
    ['http://:0/ready', 'port 0'],
    ['http://:70000/ready', 'a port out of range'],
    ['grpc://:9000', 'a scheme the check cannot replay'],
    ['tcp://:5432/path', 'a path with tcp'],
    ['8080', 'no scheme'],
  ])('refuses %s (%s) with the form to use', (raw) => {
    expect(parseReadinessCheck(raw)).toMatch(/^(must be http:\/\/:PORT\/PATH|takes no path)/);
  });
});
