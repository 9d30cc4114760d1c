/**
 * Why a Temporal connection fails, in one sentence an operator can act on.
 *
 * The SDK's own errors do not say: the client (grpc-js) reports every transport failure as "Failed to connect
 * before the deadline" after its 10 s connect timeout, and the worker's Rust core prints a rustls/hyper chain.
 * So underlay opens the same connection itself — TCP, then TLS with the same CA, client certificate and server
 * name, then HTTP/2 up to the server's SETTINGS frame (which a server that refused our certificate never sends)
 * — and names the step that failed: unreachable, the server's certificate not trusted, our client certificate
 * refused, TLS spoken to a plain-text server, or plain text to a TLS one. gRPC-level refusals (API key,
 * namespace) come from the SDK's status codes instead (connection.ts).
 */
import http2 from 'node:http2';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { TemporalConnectionError, type TemporalProblem } from '../common/errors';
import type { TemporalSettings } from './temporal-config';

const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'EADDRNOTAVAIL']);

/** OpenSSL's verification results for the server's certificate (Node puts them in `err.code`). */
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'PATH_LENGTH_EXCEEDED',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** TLS alerts a server sends when it does not accept the client's certificate (or the lack of one). */
const CLIENT_CERT_ALERT =
  /ALERT_(CERTIFICATE_REQUIRED|UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_UNKNOWN|CERTIFICATE_EXPIRED|CERTIFICATE_REVOKED|UNSUPPORTED_CERTIFICATE|ACCESS_DENIED)/;

export interface ProbeResult {
  problem?: TemporalConnectionError;
  /** The server answered HTTP/2 (over TLS when configured): the transport is fine. */
  ok: boolean;
  /** The problem will not go away by waiting (refused, no such host): no need to wait for the SDK's own verdict. */
  definite?: boolean;
}

const DEFINITE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_NONAME']);

function reason(err: NodeJS.ErrnoException | undefined, fallback: string): string {
  if (!err) return fallback;
  const code = err.code && !err.message.includes(err.code) ? `${err.code}: ` : '';
  return `${code}${err.message
    .split('\n')[0]!
    .replace(/^[0-9A-F]+:error:[0-9A-F]+:SSL routines:[^:]*:/, '')
    .replace(/:\.\.\/deps\/openssl.*$/, '')}`;
}

/** Builds the error for a transport failure seen at `stage`. */
export function classifyTransportFailure(
  s: TemporalSettings,
  stage: 'tcp' | 'tls' | 'http2',
  err: NodeJS.ErrnoException | undefined,
  fallback: string,
): TemporalConnectionError {
  const code = err?.code ?? '';
  const why = reason(err, fallback);
  const at = `Temporal at ${s.address} (profile "${s.profile}")`;
  const problem = (p: TemporalProblem, message: string) => new TemporalConnectionError(p, message);
  if (stage === 'tcp' || UNREACHABLE.has(code)) {
    return problem(
      'unreachable',
      `cannot reach ${at}: ${why} — check TEMPORAL_ADDRESS or the profile's address${s.host === '127.0.0.1' || s.host === 'localhost' ? ' (the local dev server: scripts/dev-server.sh start)' : ''}`,
    );
  }
  if (!s.tls) {
    return problem(
      'tls-required',
      `${at} did not answer plain-text gRPC (${why}): it probably requires TLS — set TEMPORAL_TLS=true and its CA (TEMPORAL_TLS_SERVER_CA_CERT_PATH or server_ca_cert_path)`,
    );
  }
  const tls = s.tls;
  if (UNTRUSTED.has(code)) {
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || code === 'HOSTNAME_MISMATCH') {
      return problem(
        'tls-trust',
        `TLS: the certificate of ${at} is not valid for the name we checked (${why}) — set TEMPORAL_TLS_SERVER_NAME to a name it carries`,
      );
    }
    const ca = tls.caFile ? `the CA in ${tls.caFile}` : tls.caInline ? `the CA from ${tls.caInline}` : "the system's CAs";
    return problem(
      'tls-trust',
      `TLS: the certificate of ${at} is not trusted by ${ca} (${why}) — set TEMPORAL_TLS_SERVER_CA_CERT_PATH (or server_ca_cert_path) to the CA that signed it`,
    );
  }
  const cert = tls.clientCertFile ?? tls.clientCertInline;
  if (CLIENT_CERT_ALERT.test(code) || (stage === 'http2' && (code === 'ECONNRESET' || code === 'ERR_HTTP2_SESSION_ERROR' || code === ''))) {
    return problem(
      'client-certificate',
      cert
        ? `TLS: ${at} refused the client certificate ${cert} (${tls.clientSubject}) (${why}) — it must be signed by a CA the server trusts for clients`
        : `TLS: ${at} requires a client certificate (${why}) — set TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH (or client_cert_path / client_key_path)`,
    );
  }
  if (stage === 'tls' && (code === 'ECONNRESET' || code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'EPROTO' || code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG')) {
    return problem(
      'not-tls',
      `TLS: ${at} does not speak TLS (${why}) — a plain-text server (like the local dev server) needs TLS off: unset TEMPORAL_TLS and the profile's [tls]`,
    );
  }
  return problem('unreachable', `TLS handshake with ${at} failed: ${why}`);
}

/**
 * Opens TCP → TLS → HTTP/2 to the configured address with the configured TLS material and waits (bounded) for
 * the server's SETTINGS frame. Resolves, never rejects.
 */
export function probeTemporal(s: TemporalSettings, timeoutMs = 5_000): Promise<ProbeResult> {
  return new Promise<ProbeResult>((resolve) => {
    const tlsConfig = typeof s.connectionOptions.tls === 'object' ? s.connectionOptions.tls : undefined;
    let stage: 'tcp' | 'tls' | 'http2' = 'tcp';
    let done = false;
    // Our own socket, so that we see each stage: TCP connected, TLS established.
    const socket: Socket = s.tls
      ? tlsConnect({
          host: s.host,
          port: s.port,
          ALPNProtocols: ['h2'],
          ...(tlsConfig?.serverRootCACertificate ? { ca: Buffer.from(tlsConfig.serverRootCACertificate) } : {}),
          ...(tlsConfig?.clientCertPair ? { cert: Buffer.from(tlsConfig.clientCertPair.crt), key: Buffer.from(tlsConfig.clientCertPair.key) } : {}),
          // Node checks the certificate against `servername`, else the host (an IP address is checked against IP SANs).
          ...(s.tls.serverName ? { servername: s.tls.serverName } : isIP(s.host) ? {} : { servername: s.host }),
        })
      : netConnect({ host: s.host, port: s.port });
    socket.once('connect', () => (stage = s.tls ? 'tls' : 'http2'));
    socket.once('secureConnect', () => {
      stage = 'http2';
      const alpn = (socket as TLSSocket).alpnProtocol;
      if (alpn !== 'h2') {
        finish({
          ok: false,
          definite: true,
          problem: new TemporalConnectionError(
            'unreachable',
            `Temporal at ${s.address} (profile "${s.profile}") did not negotiate HTTP/2 over TLS (ALPN ${alpn || 'none'}): not a gRPC endpoint — check the address`,
          ),
        });
      }
    });
    const authority = `${s.tls ? 'https' : 'http'}://${s.host.includes(':') ? `[${s.host}]` : s.host}:${s.port}`;
    const session = http2.connect(authority, { createConnection: () => socket, settings: { enablePush: false } });
    const finish = (r: ProbeResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      session.destroy();
      socket.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => {
      const what = stage === 'tcp' ? 'no TCP connection' : stage === 'tls' ? 'no TLS handshake' : 'no HTTP/2 answer';
      finish({
        ok: false,
        problem: new TemporalConnectionError(
          'unreachable',
          `cannot reach Temporal at ${s.address} (profile "${s.profile}"): ${what} within ${timeoutMs / 1000} s`,
        ),
      });
    }, timeoutMs);
    session.once('remoteSettings', () => finish({ ok: true }));
    const failed = (err: NodeJS.ErrnoException) =>
      finish({ ok: false, definite: stage !== 'tcp' || DEFINITE.has(err.code ?? ''), problem: classifyTransportFailure(s, stage, err, 'connection failed') });
    session.once('error', failed);
    socket.once('error', failed);
    session.once('close', () =>
      finish({
        ok: false,
        definite: stage !== 'tcp',
        problem: classifyTransportFailure(s, stage, undefined, stage === 'http2' ? 'the server closed the connection without answering' : 'connection closed'),
      }),
    );
  });
}
