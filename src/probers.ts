// The kubelet's address, learned from its probes of the sidecar's own port. The kubelet probes every container of the
// pod from one process in the node's network namespace, to the pod's IP: the kernel picks the same source address for
// its probes of the app ports as for those of the sidecar's. A connection to an app port from that address is a probe,
// not traffic (src/connections.ts); docs/probes.md says where that does not hold.

import { isIP } from 'node:net';

// The kubelet's probes say User-Agent kube-probe/<major>.<minor>. Not its hook calls (kube-lifecycle/...): they come
// from the same address, but only once the pod is terminating, and the probes have taught it long before.
const KUBELET_PROBE = /^kube-probe\//;
// A node has one address per family toward its pods; a few more cover a node whose address changed. The sock_diag addon
// compares at most 8 (native/sockdiag.c MAX_PROBERS).
export const MAX_PROBERS = 4;

/** An address as the kernel reports a peer: an IPv4 client of a dual-stack listener is its IPv4 address. */
function normalizeAddress(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

export class Probers {
  // Most recently seen last.
  #addresses: string[] = [];

  /** Records the peer of a call to the sidecar's own port, if it is one of the kubelet's probes. */
  saw(address: string | undefined, userAgent: string | undefined): void {
    if (!address || !userAgent || !KUBELET_PROBE.test(userAgent)) return;
    const a = normalizeAddress(address);
    if (this.#addresses.at(-1) === a) return;
    this.#addresses = [...this.#addresses.filter((x) => x !== a), a].slice(-MAX_PROBERS);
  }

  has(address: string): boolean {
    return this.#addresses.includes(normalizeAddress(address));
  }

  get addresses(): readonly string[] {
    return this.#addresses;
  }
}
