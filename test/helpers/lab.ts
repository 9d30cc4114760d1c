/**
 * The QEMU lab for end-to-end tests: a fresh lab per test run (lab/up.sh), the spec of each server, a
 * snapshot of a host's network/SR-IOV/package/libvirt state to prove a rollback returns it exactly, and
 * VM snapshots (QEMU savevm/loadvm, lab/snapshot.sh) to reset a VM in seconds instead of rebooting it.
 */
import { resolve } from 'node:path';
import { downLab, restoreVm, snapshotVm, upLab } from '../../lab/control';
import { labSpec, labVm, labVms, type LabDataMgmt, type LabImage, type LabSpecOptions, type LabVm } from '../../lab/spec';
import { sshTarget } from '../../src/activities/connect';
import { SshSession } from '../../src/transports/ssh';
import { RemoteHost } from '../../src/drivers/remote';
import { ConnectionError } from '../../src/common/errors';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ServerSpec } from '../../src/spec/server';

const root = resolve(__dirname, '../..');

export interface FreshLabOptions {
  /** One image variant per server (default: all `fresh`; `base` = no network manager). The switch always runs `base`. */
  images?: LabImage[];
  /** Servers (K of serverK) reachable only through their data NIC eth1, via the switch. */
  dataMgmt?: number[];
}

/**
 * Boots a fresh lab with `servers` server VMs (tearing down any previous one). Prints lab/up.sh progress. Then
 * the lab directory becomes this process's credentials directory (and that of the workers it spawns): the lab
 * specs reference the lab key `<lab dir>/id_ed25519`, and a worker reads credential files only from there.
 */
export function freshLab(servers: number, opts: FreshLabOptions = {}): void {
  upLab(servers, opts);
  process.env.UNDERLAY_CREDENTIALS_DIR = process.env.UNDERLAY_LAB_DIR ?? resolve(root, '.lab');
}

export function stopLab(): void {
  downLab();
}

export { labSpec, labVm, labVms, type LabDataMgmt, type LabImage, type LabSpecOptions, type LabVm };

export { restoreVm, snapshotVm };

/**
 * A session to a lab VM, tolerating a slow handshake: a TCG guest busy with a package install on a loaded
 * machine can miss one 20 s connect timeout (3 attempts, 5 s apart; a host-key mismatch fails at once).
 */
async function connectPatiently(spec: ServerSpec): Promise<SshSession> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await SshSession.connect(sshTarget(spec));
    } catch (err) {
      if (!(err instanceof ConnectionError) || attempt >= 3) throw err;
      await sleep(5_000);
    }
  }
}

/** Runs commands on a lab VM over one SSH session (pinned host key, lab key by reference). */
export async function onHost<T>(spec: ServerSpec, fn: (run: (cmd: string, timeoutMs?: number) => Promise<string>) => Promise<T>): Promise<T> {
  const s = await connectPatiently(spec);
  try {
    const host = new RemoteHost(s, spec.id, true);
    return await fn(async (cmd, timeoutMs = 60_000) => (await host.runLine({ text: cmd }, { description: cmd.slice(0, 80), timeoutMs })).stdout);
  } finally {
    s.close();
  }
}

interface LinkJson {
  ifname: string;
  flags: string[];
  mtu: number;
  master?: string;
  link?: string;
  address?: string;
  linkinfo?: { info_kind?: string };
  addr_info?: Array<{ family?: string; local?: string; prefixlen?: number; scope?: string }>;
}

/**
 * What onboarding may change, in a comparable form: links (name, flags, mtu, master, parent, MAC, kind),
 * addresses (without lifetimes), the PF's VF count, installed packages, libvirt networks and OVS bridges.
 */
export async function snapshot(spec: ServerSpec): Promise<Record<string, unknown>> {
  return onHost(spec, async (run) => {
    const links = JSON.parse(await run('ip -j -d link show')) as LinkJson[];
    const addrs = JSON.parse(await run('ip -j addr show')) as LinkJson[];
    return {
      links: links
        .map((l) => ({
          name: l.ifname,
          flags: [...l.flags].sort(),
          mtu: l.mtu,
          master: l.master ?? null,
          parent: l.link ?? null,
          mac: l.address,
          kind: l.linkinfo?.info_kind ?? null,
        }))
        .sort((a, b) => a.name.localeCompare(b.name)),
      addresses: Object.fromEntries(addrs.map((l) => [l.ifname, (l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen} ${a.scope}`).sort()])),
      numVfs: (await run('cat /sys/class/net/eth3/device/sriov_numvfs')).trim(),
      packages: (await run("dpkg-query -W -f='${Package} ${db:Status-Abbrev}\\n'")).trim().split('\n').sort(),
      libvirtNetworks: (await run('command -v virsh >/dev/null && virsh -q -c qemu:///system net-list --all --name || true')).trim(),
      ovsBridges: (await run('command -v ovs-vsctl >/dev/null && ovs-vsctl list-br || true')).trim(),
    };
  });
}
