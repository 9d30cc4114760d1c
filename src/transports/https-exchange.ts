/**
 * One HTTPS request/answer exchange with the limits every vendor transport needs: a deadline for the whole answer,
 * a cap on the body size, and typed errors for a peer that breaks off. What the answer means (JSON, SOAP) and
 * how trust is pinned (the agent) are the caller's.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest, type Agent } from 'node:https';
import { ConnectionError, UnexpectedOutputError, type ErrorContext, type UnderlayError } from '../common/errors';

export interface Exchange {
  host: string;
  port: number;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  /** The pinned-trust agent of the client. */
  agent: Agent;
  timeoutMs: number;
  maxBody: number;
  /** Host label and operation, for the errors. */
  context: Pick<ErrorContext, 'host' | 'command'>;
  /** Maps a socket/TLS error (refused, reset, untrusted certificate) to the client's typed error. */
  transportError(e: NodeJS.ErrnoException): UnderlayError;
}

export interface ExchangeAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

export function httpsExchange(x: Exchange): Promise<ExchangeAnswer> {
  return new Promise<ExchangeAnswer>((resolve, reject) => {
    let settled = false;
    const fail = (err: UnderlayError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      reject(err);
    };
    const req = httpsRequest({ host: x.host, port: x.port, method: x.method, path: x.path, headers: x.headers, agent: x.agent }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > x.maxBody) {
          fail(new UnexpectedOutputError(`response larger than ${x.maxBody} bytes`, x.context));
          return;
        }
        chunks.push(c);
      });
      res.on('error', (e) => fail(new ConnectionError(`response from ${x.host} broke off: ${(e as NodeJS.ErrnoException).code ?? e.message}`, x.context)));
      res.on('end', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') });
      });
    });
    const timer = setTimeout(() => fail(new ConnectionError(`no complete answer from ${x.host}:${x.port} within ${x.timeoutMs} ms`, x.context)), x.timeoutMs);
    req.on('error', (e: NodeJS.ErrnoException) => fail(x.transportError(e)));
    req.end(x.body);
  });
}
