/** The default Connector: one pinned-host-key SSH session per activity, wrapped as a RemoteHost. */
import { SshSession, type SshTarget } from '../transports/ssh';
import { RemoteHost } from '../drivers/remote';
import type { ServerSpec } from '../spec/server';
import type { Connector } from './run-step';

export function sshTarget(spec: ServerSpec): SshTarget {
  const m = spec.management;
  return { host: m.address, port: m.port, user: m.user, hostKey: m.hostKey, credentials: m.credentials, label: spec.id };
}

export const sshConnector: Connector = async (spec, step, onProgress) => {
  const session = await SshSession.connect(sshTarget(spec));
  return { host: new RemoteHost(session, spec.id, spec.management.user === 'root', step, onProgress), close: () => session.close() };
};
