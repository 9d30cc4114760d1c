/**
 * Connectors: how a step activity reaches its host over SSH (pinned host keys), wrapped as a RemoteHost.
 *
 * - `pooledSshConnector` (the worker's default): consecutive step activities of one host on this worker share one
 *   pooled session (src/transports/ssh-pool.ts). The session goes back to the pool only when the activity
 *   succeeded and no command on it failed at the transport level; anything else drops it, and the next step opens
 *   a new connection (host key checked again). Every lease is counted: `underlay_ssh_handshakes_total` and
 *   `underlay_ssh_handshakes_saved_total` on the worker's metrics endpoint.
 * - `sshConnector`: one session per call, closed afterwards (the CLI's plan, which needs one session in all).
 *
 * A host whose management moves onto the bond (spec `network.management`) answers on its initial path before
 * the move and on the moved path after it. Both connectors try the path that answered last on this worker first,
 * then the other, so activities after the move (and drift checks, and rollbacks) reach the host without being
 * told where it is; the pinned host key is checked on every new connection, on every path. A step can ask for one
 * path (`path`). The pool keys sessions by their exact target, so a session on one path is never reused for the other.
 */
import { Context } from '@temporalio/activity';
import { ConnectionError } from '../common/errors';
import { SshSession, type ConnectOptions, type SshTarget } from '../transports/ssh';
import { SshPool, type SshLease } from '../transports/ssh-pool';
import { RemoteHost, type CommandChannel } from '../drivers/remote';
import { atPath, managementPaths, type ManagementPath, type PathName } from '../spec/management';
import type { ServerSpec } from '../spec/server';
import type { StepName } from '../steps';
import type { Connector } from './run-step';

export const SSH_HANDSHAKES_METRIC = 'underlay_ssh_handshakes_total';
export const SSH_SAVED_METRIC = 'underlay_ssh_handshakes_saved_total';

export function sshTarget(spec: ServerSpec): SshTarget {
  const m = spec.management;
  return { host: m.address, port: m.port, user: m.user, hostKey: m.hostKey, credentials: m.credentials, label: spec.id };
}

/** Per server, the path that answered last on this worker (a hint; every connection still checks the host key). */
const lastPath = new Map<string, PathName>();
/** A path tried first, when another may be the right one, gets this long for its whole handshake. */
const PROBE_CONNECT_MS = 15_000;

/**
 * Opens a connection on the first path that answers (last good path first). Only an unreachable path is worth
 * trying the other one for: a wrong host key or credentials is final.
 */
async function overPaths<T>(
  spec: ServerSpec,
  step: StepName,
  path: PathName | undefined,
  open: (target: SshTarget, opts: ConnectOptions) => Promise<T>,
): Promise<{ value: T; path: ManagementPath }> {
  const all = managementPaths(spec);
  const wanted = path ? all.filter((p) => p.which === path) : all;
  if (!wanted.length) throw new ConnectionError(`no ${path} management path in the spec`, { host: spec.id, step });
  const hint = lastPath.get(spec.id);
  const order = [...wanted].sort((a, b) => Number(b.which === hint) - Number(a.which === hint));
  let lastErr: unknown;
  for (const [i, p] of order.entries()) {
    try {
      const value = await open(sshTarget(atPath(spec, p)), i < order.length - 1 ? { connectTimeoutMs: PROBE_CONNECT_MS } : {});
      lastPath.set(spec.id, p.which);
      return { value, path: p };
    } catch (err) {
      if (!(err instanceof ConnectionError)) throw err;
      lastErr = err;
    }
  }
  throw lastErr;
}

export const sshConnector: Connector = async (spec, step, onProgress, opts = {}) => {
  const { value: session, path } = await overPaths(spec, step, opts.path, (target, connect) => SshSession.connect(target, connect));
  const host = new RemoteHost(session, spec.id, spec.management.user === 'root', step, onProgress, path.which);
  return { host, close: () => session.close() };
};

/** The worker's pool (one per process): closed by the worker service when it stops. */
export const workerSshPool = new SshPool();

/** Counts a lease on the activity's metric meter and logs a reuse (outside an activity: nothing). */
function record(reused: boolean, spec: ServerSpec, step: string, pool: SshPool): void {
  let ctx: Context;
  try {
    ctx = Context.current();
  } catch {
    return;
  }
  try {
    const tags = { hypervisor: spec.hypervisor.kind };
    if (reused) ctx.metricMeter.createCounter(SSH_SAVED_METRIC, '1', 'SSH handshakes saved by reusing a pooled session').add(1, tags);
    else ctx.metricMeter.createCounter(SSH_HANDSHAKES_METRIC, '1', 'SSH connections opened by step activities (full handshake)').add(1, tags);
  } catch {
    // Metrics never fail a step.
  }
  if (reused) ctx.log.debug('reused the pooled SSH session', { server: spec.id, step, handshakesSaved: pool.stats().reused });
}

export function pooledSshConnector(pool: SshPool = workerSshPool): Connector {
  return async (spec, step, onProgress, opts = {}) => {
    const { value: lease, path } = await overPaths<SshLease>(spec, step, opts.path, (target, connect) => pool.acquire(target, connect));
    record(lease.reused, spec, step, pool);
    let broken = false;
    // Any transport-level failure (dropped connection, timeout, channel error) means the session is not reused.
    const channel: CommandChannel = {
      exec: (command, execOpts) =>
        lease.session.exec(command, execOpts).catch((err: unknown) => {
          broken = true;
          throw err;
        }),
    };
    return {
      host: new RemoteHost(channel, spec.id, spec.management.user === 'root', step, onProgress, path.which),
      close: (failed?: boolean) => lease.release(!failed && !broken),
    };
  };
}
