import { describe, expect, it } from 'vitest';
import { MAX_PROBERS, Probers } from '../../src/probers.js';

describe('Probers', () => {
  it("learns an address only from the kubelet's probes, not its hooks, scrapes or curl", () => {
    const p = new Probers();
    p.saw('10.0.0.1', 'Prometheus/3.0.0');
    p.saw('10.0.0.2', 'curl/8.5.0');
    p.saw('10.0.0.3', undefined);
    p.saw('10.0.0.5', 'kube-lifecycle/1.34');
    expect(p.addresses).toEqual([]);
    p.saw('10.0.0.4', 'kube-probe/1.34');
    expect(p.addresses).toEqual(['10.0.0.4']);
  });

  it('takes an IPv4 peer of a dual-stack listener for its IPv4 address, as the kernel reports the app-side peer', () => {
    const p = new Probers();
    p.saw('::ffff:10.1.2.3', 'kube-probe/1.30');
    expect(p.addresses).toEqual(['10.1.2.3']);
    expect(p.has('10.1.2.3')).toBe(true);
    expect(p.has('::ffff:10.1.2.3')).toBe(true);
    p.saw('fd00::1', 'kube-probe/1.30');
    expect(p.has('fd00::1')).toBe(true);
  });

  it(`keeps the ${MAX_PROBERS} most recently seen, so a spoofed User-Agent cannot grow the set`, () => {
    const p = new Probers();
    for (let i = 1; i <= 10; i++) p.saw(`10.0.0.${i}`, 'kube-probe/1.34');
    p.saw('10.0.0.7', 'kube-probe/1.34');
    expect(p.addresses).toHaveLength(MAX_PROBERS);
    expect(p.addresses.at(-1)).toBe('10.0.0.7');
    expect(p.has('10.0.0.1')).toBe(false);
  });
});
