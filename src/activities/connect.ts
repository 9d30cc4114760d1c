/**
 * Connectors: how a step activity reaches its host over SSH (pinned host keys), wrapped as a RemoteHost.
 *
 * - `pooledSshConnector` (the worker's default): consecutive step activities of one host on this worker share one
 *   pooled session (src/transports/ssh-pool.ts). The session goes back to the pool only when the activity
 *   succeeded and no command on it failed at the transport level; anything else drops it, and the next step opens
 *   a new connection (host key checked again). Every lease is counted: `underlay_ssh_handshakes_total` and
 *   `underlay_ssh_handshakes_saved_total` on the worker's metrics endpoint.
 * - `sshConnector`: one session per call, closed afterwards (the CLI's plan, which needs one session in all).
 */
import { Context } from '@temporalio/activity';
import { SshSession, type SshTarget } from '../transports/ssh';
import { SshPool } from '../transports/ssh-pool';
import { RemoteHost, type CommandChannel } from '../drivers/remote';
import type { ServerSpec } from '../spec/server';
import type { Connector } from './run-step';

export const SSH_HANDSHAKES_METRIC = 'underlay_ssh_handshakes_total';
export const SSH_SAVED_METRIC = 'underlay_ssh_handshakes_saved_total';

export function sshTarget(spec: ServerSpec): SshTarget {
  const m = spec.management;
  return { host: m.address, port: m.port, user: m.user, hostKey: m.hostKey, credentials: m.credentials, label: spec.id };
}

export const sshConnector: Connector = async (spec, step, onProgress) => {
  const session = await SshSession.connect(sshTarget(spec));
  return { host: new RemoteHost(session, spec.id, spec.management.user === 'root', step, onProgress), close: () => session.close() };
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
  return async (spec, step, onProgress) => {
    const lease = await pool.acquire(sshTarget(spec));
    record(lease.reused, spec, step, pool);
    let broken = false;
    // Any transport-level failure (dropped connection, timeout, channel error) means the session is not reused.
    const channel: CommandChannel = {
      exec: (command, opts) =>
        lease.session.exec(command, opts).catch((err: unknown) => {
          broken = true;
          throw err;
        }),
    };
    return {
      host: new RemoteHost(channel, spec.id, spec.management.user === 'root', step, onProgress),
      close: (failed?: boolean) => lease.release(!failed && !broken),
    };
  };
}
