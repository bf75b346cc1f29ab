// The app's readiness, checked by the sidecar itself during the start-up window: the app's own readinessProbe replayed
// on loopback (inject passes it as DRAIN_APP_READINESS), with the kubelet's rule for success (HTTP 200-399, or a TCP
// connection made). The kubelet's own probes are seen only when the app's side of their connection lingers in TIME_WAIT,
// which depends on which side closes first; this check sees every answer. The kubelet marks the pod ready at its first
// successful probe after this moment, so a delay counted from here is never shorter than the one minReadySeconds must
// cover.

import { request } from 'node:http';
import { connect } from 'node:net';

/** The source address of the sidecar's own connections to the app, so that they are told from traffic and probes. */
export const OWN_ADDRESS = '127.0.0.87';

export interface ReadinessCheck {
  scheme: 'http' | 'https' | 'tcp';
  port: number;
  /** Path and query, for http and https. */
  path: string;
}

/** "http://:8080/ready", "https://:8443/healthz" or "tcp://:5432": the host is always the pod's loopback. */
export function parseReadinessCheck(raw: string): ReadinessCheck | string {
  const m = /^(https?|tcp):\/\/:(\d{1,5})(\/[^\s]*)?$/.exec(raw.trim());
  const port = Number(m?.[2]);
  if (!m || !(port >= 1 && port <= 65535)) return 'must be http://:PORT/PATH, https://:PORT/PATH or tcp://:PORT';
  if (m[1] === 'tcp' && m[3] !== undefined) return 'takes no path with tcp://';
  return { scheme: m[1] as ReadinessCheck['scheme'], port, path: m[3] ?? '/' };
}

/** One check: true when the app answered as the kubelet counts success; false on any other answer, error or timeout. */
export async function checkReadiness(check: ReadinessCheck, timeoutMs: number, userAgent: string): Promise<boolean> {
  const options = { host: '127.0.0.1', port: check.port, localAddress: OWN_ADDRESS, timeout: timeoutMs };
  if (check.scheme === 'tcp') {
    return new Promise((resolve) => {
      const socket = connect(options, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('timeout', () => socket.destroy());
      socket.on('error', () => resolve(false));
      socket.on('close', () => resolve(false));
    });
  }
  // Loaded only for an app that serves TLS on its probe port: most sidecars never pay for the TLS stack.
  const send = check.scheme === 'https' ? (await import('node:https')).request : request;
  return new Promise((resolve) => {
    const req = send(
      {
        ...options,
        path: check.path,
        agent: false,
        // As the kubelet: any certificate, no keep-alive.
        rejectUnauthorized: false,
        headers: { 'User-Agent': userAgent, Accept: '*/*', Connection: 'close' },
      },
      (res) => {
        res.resume();
        const status = res.statusCode ?? 0;
        resolve(status >= 200 && status < 400);
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.on('close', () => resolve(false));
    req.end();
  });
}
