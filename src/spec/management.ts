/**
 * How underlay reaches a host: at `management` before onboarding, and — when the spec moves management onto the
 * bond (`network.management`) — at the new path afterwards. Pure: the connector, the steps and the CLI share it.
 */
import { vlanIfName, type ServerSpec } from './server';

export type PathName = 'initial' | 'moved';

export interface ManagementPath {
  which: PathName;
  address: string;
  port: number;
}

/** The paths a host may answer on, in the order to try them when nothing else is known. */
export function managementPaths(spec: ServerSpec): ManagementPath[] {
  const initial: ManagementPath = { which: 'initial', address: spec.management.address, port: spec.management.port };
  const moved = movedPath(spec);
  return moved ? [initial, moved] : [initial];
}

/** Where the host answers once management moved onto the bond, or undefined when the spec moves nothing. */
export function movedPath(spec: ServerSpec): ManagementPath | undefined {
  const m = spec.network.management;
  if (!m) return undefined;
  if (m.reachAt) return { which: 'moved', address: m.reachAt.address, port: m.reachAt.port ?? spec.management.port };
  const vlan = spec.vlans.find((v) => vlanIfName(v) === m.interface);
  const address = vlan?.address?.split('/')[0];
  return address ? { which: 'moved', address, port: spec.management.port } : undefined;
}

/** The spec with `management` pointing at one of its paths (what a connection to that path uses). */
export function atPath(spec: ServerSpec, path: ManagementPath): ServerSpec {
  return { ...spec, management: { ...spec.management, address: path.address, port: path.port } };
}
