/**
 * The default Connector: one pinned-host-key SSH session per activity, wrapped as a RemoteHost.
 *
 * A host whose management moves onto the bond (spec `network.management`) answers on its initial path before
 * the move and on the moved path after it. The connector tries the path that answered last on this worker first,
 * then the other, so activities after the move (and drift checks, and rollbacks) reach the host without being
 * told where it is; the pinned host key is checked on every path. A step can ask for one path (`path`).
 */
import { ConnectionError } from '../common/errors';
import { SshSession, type SshTarget } from '../transports/ssh';
import { RemoteHost } from '../drivers/remote';
import { atPath, managementPaths, type PathName } from '../spec/management';
import type { ServerSpec } from '../spec/server';
import type { Connector } from './run-step';

export function sshTarget(spec: ServerSpec): SshTarget {
  const m = spec.management;
  return { host: m.address, port: m.port, user: m.user, hostKey: m.hostKey, credentials: m.credentials, label: spec.id };
}

/** Per server, the path that answered last on this worker (a hint; every connection still checks the host key). */
const lastPath = new Map<string, PathName>();
/** A path tried first, when another may be the right one, gets this long for its whole handshake. */
const PROBE_CONNECT_MS = 15_000;

export const sshConnector: Connector = async (spec, step, onProgress, opts = {}) => {
  const all = managementPaths(spec);
  const wanted = opts.path ? all.filter((p) => p.which === opts.path) : all;
  if (!wanted.length) throw new ConnectionError(`no ${opts.path} management path in the spec`, { host: spec.id, step });
  const hint = lastPath.get(spec.id);
  const order = [...wanted].sort((a, b) => Number(b.which === hint) - Number(a.which === hint));
  let lastErr: unknown;
  for (const [i, path] of order.entries()) {
    const target = sshTarget(atPath(spec, path));
    try {
      const session = await SshSession.connect(target, i < order.length - 1 ? { connectTimeoutMs: PROBE_CONNECT_MS } : {});
      lastPath.set(spec.id, path.which);
      const host = new RemoteHost(session, spec.id, spec.management.user === 'root', step, onProgress, path.which);
      return { host, close: () => session.close() };
    } catch (err) {
      // Only an unreachable path is worth trying the other one for: a wrong host key or credentials is final.
      if (!(err instanceof ConnectionError)) throw err;
      lastErr = err;
    }
  }
  throw lastErr;
};
