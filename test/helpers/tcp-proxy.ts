/**
 * A TCP proxy on 127.0.0.1 that can stall: a network path that stays up but stops carrying data (a hung
 * middlebox, a half-dead link). While stalled, open connections keep their sockets and get no bytes either way,
 * and new connections are accepted and then never answered. resume() forwards new connections again and closes
 * the ones accepted during the stall.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface TcpProxy {
  port: number;
  stall(): void;
  resume(): void;
  /** Connections accepted so far. */
  accepted(): number;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  let stalled = false;
  let accepted = 0;
  /** Connections accepted while stalled: closed on resume() (their handshake never happened). */
  const limbo = new Set<Socket>();
  const sockets = new Set<Socket>();
  const pairs = new Set<[Socket, Socket]>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
  };
  const server: Server = createServer((client) => {
    accepted++;
    track(client);
    if (stalled) {
      client.on('data', () => undefined); // swallowed: never forwarded, never answered
      limbo.add(client);
      client.on('close', () => limbo.delete(client));
      return;
    }
    const upstream = connect({ host: '127.0.0.1', port: targetPort });
    track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    port,
    stall: () => {
      stalled = true;
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        // Keep reading so the kernel buffers do not fill, and drop it all.
        client.on('data', () => undefined);
        upstream.on('data', () => undefined);
      }
    },
    resume: () => {
      stalled = false;
      for (const s of limbo) s.destroy();
    },
    accepted: () => accepted,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
