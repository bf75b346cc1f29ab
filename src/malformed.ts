// Requests the API never sees: what Node's HTTP parser rejects (clientError), and what it parsed but no URL can be made
// of (a backslash in the path). Each gets a JSON answer, a log line and a count instead of Node's bare 400. The kubelet
// sends a hook's path verbatim, so a typo such as `/sleep?s= 20` (a space) ends here, not in the API: such a hook call is
// held for the default sleep like any malformed one and answered after, because a typo must not leave the app
// unprotected.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AppDeps } from './app.js';
import type { Closes } from './clock.js';
import { hookAdmission } from './hooks.js';
import type { HookEndpoint } from './metrics.js';

export type MalformedDeps = Pick<AppDeps, 'config' | 'drain' | 'metrics' | 'log'>;

// What Node's parser errors mean for the client, as Node itself would answer them.
const PARSER_STATUS: Record<string, [number, string]> = {
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'Request Timeout'],
  HPE_HEADER_OVERFLOW: [431, 'Request Header Fields Too Large'],
};
// The start of a hook call: `GET /sleep`, `GET //drain`, followed by anything the parser or URL rules choked on.
const HOOK_LINE = /^GET +\/+(sleep|drain)(?=[?\s\\]|$)/;
const AUTHORIZATION_LINE = /\r?\nauthorization:[ \t]*([^\r\n]*?)[ \t]*\r?\n/i;
const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  408: 'Request Timeout',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
};

/** How an answer is written: to a raw socket after a parser error, or through the ServerResponse otherwise. */
type Answer = (status: number, body: object) => void;

interface Rejected {
  /** The request line and headers as far as they are known. */
  head: string;
  /** The Authorization header, when it could be read. */
  authorization: string | undefined;
  problem: string;
  /** The status for a request that is no hook call. */
  status: number;
  answer: Answer;
  /** Closes when the client goes away. */
  gone: Closes;
}

export function malformedRequests({ config, drain, metrics, log }: MalformedDeps) {
  const admit = hookAdmission({ config, drain });

  const handle = ({ head, authorization, problem, status, answer, gone }: Rejected): void => {
    metrics.invalidRequests.inc({ reason: 'malformed_http' });
    const hook = HOOK_LINE.exec(head)?.[1] as HookEndpoint | undefined;
    if (!hook) {
      log.warn({ status, problem }, 'malformed http request');
      answer(status, { error: 'bad_request', message: problem, hint: 'send a valid HTTP/1.1 request' });
      return;
    }
    const hookLog = log.child({ endpoint: hook });
    const refusal = admit(hook, authorization);
    if (refusal) {
      hookLog.warn({ status: refusal.status, problem }, 'malformed hook call refused');
      answer(refusal.status, { error: refusal.code, message: refusal.message, hint: refusal.hint });
      return;
    }
    const problems = [`${problem}: the path must not contain spaces, backslashes or raw non-ASCII characters`];
    hookLog.error({ problems, holdingSeconds: config.defaultSleepSeconds }, 'malformed hook call; holding the default');
    const hold = { endpoint: hook, ms: config.defaultSleepSeconds * 1000, gone, malformed: true, clamped: false };
    void drain.hold({ ...hold, userAgent: undefined }).then((result) => {
      if (result.outcome === 'caller_gone') return;
      answer(400, {
        error: 'bad_request',
        message: problems.join('; '),
        hint: `the pod was held for the default ${config.defaultSleepSeconds}s anyway; fix the hook path, e.g. /sleep?s=20`,
        endpoint: hook,
        episode: result.episode,
        reason: result.reason,
        heldSeconds: result.waitedSeconds,
      });
    });
  };

  return {
    /** For the server's clientError event: Node's parser rejected the request; the socket is ours to answer and close. */
    clientError(err: Error & { code?: string; rawPacket?: Buffer }, socket: Duplex): void {
      if (err.code === 'ECONNRESET' || !socket.writable) {
        socket.destroy();
        return;
      }
      const head = err.rawPacket?.toString('latin1') ?? '';
      handle({
        head,
        authorization: AUTHORIZATION_LINE.exec(head)?.[1],
        problem: `the HTTP parser rejected the request (${err.code ?? 'unknown'})`,
        status: PARSER_STATUS[err.code ?? '']?.[0] ?? 400,
        answer: (status, body) => {
          const text = JSON.stringify(body);
          socket.end(
            `HTTP/1.1 ${status} ${REASONS[status] ?? ''}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`,
          );
        },
        gone: socket,
      });
    },

    /**
     * Before the API: true when the request was answered here because no URL can be made of its target (a backslash
     * before the query, or no leading slash). A request without Host (HTTP/1.0) gets one: the API does not read it.
     */
    request(req: IncomingMessage, res: ServerResponse): boolean {
      req.headers.host ??= 'drain-sidecar';
      const url = req.url ?? '';
      const path = url.split('?', 1)[0] as string;
      if (url.startsWith('/') && !path.includes('\\')) return false;
      handle({
        head: `${req.method} ${url} `,
        authorization: req.headers.authorization,
        problem: 'the request target is not a path the API can read',
        status: 400,
        answer: (status, body) => {
          const text = JSON.stringify(body);
          res.writeHead(status, {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(text),
            connection: 'close',
          });
          res.end(text);
        },
        gone: res,
      });
      return true;
    },
  };
}
