/**
 * A TLS-terminating gRPC reverse proxy on 127.0.0.1, built on Node's own `http2`: what a production Temporal
 * frontend (or Temporal Cloud) looks like to underlay, in front of the plain-text dev server.
 *
 * - TLS with a server certificate from a CA made in the test; a client certificate signed by the client CA is
 *   required (requestCert + rejectUnauthorized): a handshake without one, or with another CA's, fails.
 * - Optionally an API key: a stream without `authorization: Bearer <key>` is answered like Temporal Cloud does,
 *   a trailers-only gRPC response with status 16 (UNAUTHENTICATED), and never reaches the server.
 * - Every other stream is forwarded to the dev server over h2c (one upstream session per client session) with
 *   its headers, body and trailers, both ways; a reset on either side resets the other (long polls are
 *   cancelled when a worker shuts down).
 * It counts what it saw (streams per client-certificate CN, refused streams, refused handshakes) so tests can
 * prove that the client and the worker really went through it.
 */
import { readFileSync } from 'node:fs';
import http2, { type ClientHttp2Session, type Http2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_FLAG_END_STREAM, NGHTTP2_INTERNAL_ERROR } = http2.constants;

export interface GrpcTlsProxyOptions {
  /** The h2c gRPC server behind the proxy, `host:port` (the dev server). */
  upstream: string;
  /** PEM files: the proxy's certificate and key, and the CA that client certificates must chain to. */
  cert: string;
  key: string;
  clientCa: string;
  /** When set, every stream must carry `authorization: Bearer <apiKey>`. */
  apiKey?: string;
}

export interface GrpcTlsProxy {
  /** `127.0.0.1:<port>` */
  address: string;
  port: number;
  /** Forwarded streams per client-certificate CN. */
  streamsByClient: Map<string, number>;
  /** gRPC methods forwarded, counted per client-certificate CN: `underlay-worker PollActivityTaskQueue` → 12. */
  calls: Map<string, number>;
  /** Streams answered UNAUTHENTICATED for a missing or wrong API key. */
  refusedStreams: number;
  /** TLS handshakes that failed (no client certificate, an untrusted one, or the client refused ours). */
  refusedHandshakes: string[];
  stop(): Promise<void>;
}

/** Request headers to forward: everything but HTTP/2 connection-level ones; `:scheme` is the upstream's. */
function requestHeaders(h: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || k === ':scheme' || k === 'connection' || k === 'keep-alive') continue;
    out[k] = v;
  }
  return out;
}

function responseHeaders(h: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined && (k === ':status' || !k.startsWith(':'))) out[k] = v;
  return out;
}

export async function startGrpcTlsProxy(opts: GrpcTlsProxyOptions): Promise<GrpcTlsProxy> {
  const streamsByClient = new Map<string, number>();
  const calls = new Map<string, number>();
  const refusedHandshakes: string[] = [];
  const sessions = new Set<Http2Session>();
  const upstreams = new WeakMap<Http2Session, ClientHttp2Session>();
  const state = { refusedStreams: 0 };

  const server = http2.createSecureServer({
    cert: readFileSync(opts.cert),
    key: readFileSync(opts.key),
    ca: readFileSync(opts.clientCa),
    requestCert: true,
    rejectUnauthorized: true,
    allowHTTP1: false,
    minVersion: 'TLSv1.2',
  });
  server.on('tlsClientError', (err) => refusedHandshakes.push(err.message));
  server.on('session', (session) => {
    sessions.add(session);
    session.on('error', () => undefined);
    session.once('close', () => {
      sessions.delete(session);
      const up = upstreams.get(session);
      if (up && !up.destroyed) up.close();
    });
  });

  const upstreamOf = (session: Http2Session): ClientHttp2Session => {
    let up = upstreams.get(session);
    if (!up || up.closed || up.destroyed) {
      up = http2.connect(`http://${opts.upstream}`);
      up.on('error', () => undefined);
      upstreams.set(session, up);
    }
    return up;
  };

  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on('error', () => undefined);
    if (opts.apiKey !== undefined && headers.authorization !== `Bearer ${opts.apiKey}`) {
      state.refusedStreams++;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '16', 'grpc-message': 'Request unauthorized.' }, { endStream: true });
      stream.resume();
      return;
    }
    const cn = String((stream.session?.socket as TLSSocket | undefined)?.getPeerCertificate().subject?.CN ?? '?');
    streamsByClient.set(cn, (streamsByClient.get(cn) ?? 0) + 1);
    const call = `${cn} ${String(headers[':path'] ?? '')
      .split('/')
      .pop()}`;
    calls.set(call, (calls.get(call) ?? 0) + 1);

    const up = upstreamOf(stream.session!).request(requestHeaders(headers));
    let trailers: OutgoingHttpHeaders | undefined;
    up.on('error', () => undefined);
    stream.pipe(up);
    up.on('response', (h, flags) => {
      if (stream.closed) return;
      if (flags & NGHTTP2_FLAG_END_STREAM) {
        // Trailers-only response (a gRPC error without a body).
        stream.respond(responseHeaders(h), { endStream: true });
        up.resume();
        return;
      }
      stream.respond(responseHeaders(h), { waitForTrailers: true });
      up.pipe(stream);
    });
    up.on('trailers', (t) => (trailers = responseHeaders(t)));
    stream.on('wantTrailers', () => stream.sendTrailers(trailers ?? { 'grpc-status': '13', 'grpc-message': 'proxy: upstream ended without trailers' }));
    // A reset on one side resets the other: a cancelled long poll must not linger upstream.
    stream.on('close', () => {
      if (!up.closed) up.close(stream.rstCode && stream.rstCode !== NGHTTP2_NO_ERROR ? stream.rstCode : NGHTTP2_CANCEL);
    });
    up.on('close', () => {
      if (!stream.closed && up.rstCode && up.rstCode !== NGHTTP2_NO_ERROR)
        stream.close(up.rstCode === NGHTTP2_CANCEL ? NGHTTP2_CANCEL : NGHTTP2_INTERNAL_ERROR);
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    address: `127.0.0.1:${port}`,
    port,
    streamsByClient,
    calls,
    get refusedStreams() {
      return state.refusedStreams;
    },
    refusedHandshakes,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sessions) s.destroy();
        server.close(() => resolve());
      }),
  };
}
