/**
 * Driving a lab from TypeScript (tests and the lab benchmark): boot one (lab/up.sh), stop it (lab/down.sh), and
 * VM snapshots (QEMU savevm/loadvm, lab/snapshot.sh) that reset a VM in seconds instead of rebooting it. All act on
 * the lab of `UNDERLAY_LAB_DIR` (default <repo>/.lab) in this process's environment.
 */
import { execFile, execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import type { LabImage } from './spec';

const root = resolve(__dirname, '..');

export interface LabUpOptions {
  /** One image variant per server (default: all `fresh`). The switch always runs `base`. */
  images?: LabImage[];
  /** Servers (K of serverK) reachable only through their data NIC eth1, via the switch. */
  dataMgmt?: number[];
  /** Where lab/up.sh prints its progress (default: this process's stderr and stdout). */
  stdio?: 'inherit' | 'pipe';
}

/** Boots a lab with `servers` server VMs after stopping any previous one of the same lab dir. */
export function upLab(servers: number, opts: LabUpOptions = {}): void {
  if (opts.images && opts.images.length !== servers) throw new Error(`upLab: ${opts.images.length} images for ${servers} servers`);
  downLab();
  execFileSync('bash', [resolve(root, 'lab/up.sh')], {
    stdio: opts.stdio ?? 'inherit',
    env: {
      ...process.env,
      UNDERLAY_LAB_SERVERS: String(servers),
      UNDERLAY_LAB_SERVER_IMAGES: opts.images?.join(' ') ?? '',
      UNDERLAY_LAB_DATA_MGMT: opts.dataMgmt?.join(' ') ?? '',
    },
    timeout: 20 * 60_000,
  });
}

/** Stops the lab's own processes (pid files) and removes its overlays. */
export function downLab(): void {
  execFileSync('bash', [resolve(root, 'lab/down.sh')], { stdio: 'inherit' });
}

const run = promisify(execFile);
const SNAPSHOT_TAG = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

async function snapshotScript(op: 'save' | 'restore', name: string, tag: string): Promise<void> {
  if (!/^(switch|server\d+)$/.test(name)) throw new Error(`not a lab VM name: ${JSON.stringify(name)}`);
  if (!SNAPSHOT_TAG.test(tag)) throw new Error(`bad snapshot tag ${JSON.stringify(tag)} (letters, digits, . _ -; at most 64)`);
  try {
    const { stderr } = await run('bash', [resolve(root, 'lab/snapshot.sh'), op, name, tag], { env: process.env, timeout: 15 * 60_000 });
    process.stderr.write(stderr);
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`lab/snapshot.sh ${op} ${name} ${tag} failed: ${(err.stderr ?? '').trim() || err.message}`);
  }
}

/**
 * Saves the running VM's whole state (RAM, devices, disk) as internal qcow2 snapshot `tag` in its overlay
 * (QEMU savevm; the VM pauses meanwhile, ~seconds for 256 MiB). A tag that exists is replaced.
 */
export function snapshotVm(name: string, tag: string): Promise<void> {
  return snapshotScript('save', name, tag);
}

/**
 * Puts the VM back to snapshot `tag` (QEMU loadvm), waits until it answers SSH again (on its port, or for a
 * server managed over its data NIC on either path) and sets its clock from the host. Open SSH sessions to the
 * VM die (their TCP state is gone); LACP with the switch re-converges by itself within seconds.
 */
export function restoreVm(name: string, tag: string): Promise<void> {
  return snapshotScript('restore', name, tag);
}

/** The tags of the VM's snapshots (lab/snapshot.sh list: QEMU `info snapshots`). */
export async function listSnapshots(name: string): Promise<string[]> {
  if (!/^(switch|server\d+)$/.test(name)) throw new Error(`not a lab VM name: ${JSON.stringify(name)}`);
  const { stdout } = await run('bash', [resolve(root, 'lab/snapshot.sh'), 'list', name], { env: process.env, timeout: 120_000 });
  // Rows: ID TAG VM-SIZE DATE VM-CLOCK ICOUNT; the ID is a number, or "--" in the "present on all disks" list.
  return stdout
    .split('\n')
    .map((l) => /^\s*(?:\d+|--)\s+(\S+)\s/.exec(l)?.[1])
    .filter((t): t is string => !!t);
}

/** Runs a command on a lab VM over the lab's shared SSH connection (lab/ssh.sh: pinned host key, lab key). */
export async function labSsh(name: string, command: string, opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  if (!/^(switch|server\d+)$/.test(name)) throw new Error(`not a lab VM name: ${JSON.stringify(name)}`);
  const child = run('bash', [resolve(root, 'lab/ssh.sh'), name, command], { env: process.env, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 16 * 2 ** 20 });
  if (opts.input !== undefined) {
    child.child.stdin?.end(opts.input);
  }
  try {
    return (await child).stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`lab/ssh.sh ${name} failed: ${(err.stderr ?? '').trim().slice(-2000) || err.message}`);
  }
}
