/**
 * The lab benchmark: network onboarding of 1 (and, at the full size, 3) lab hosts — cable check, 802.3ad bond,
 * VLANs, SR-IOV VFs, the hypervisor step (KVM already installed: image `ifupdown`) and a libvirt macvtap network —
 * by three contenders, one after the other against the same hosts, each host restored from one VM snapshot
 * before each contender (lab/snapshot.sh):
 *   1. raw SSH: the script of bench/lab-contenders.ts, one plain `ssh` session per host, hosts in parallel;
 *   2. underlay: the real onboardServer workflow on the bench's Temporal dev server, a real in-process worker;
 *   3. ansible-playbook (ansible-core, pinned, scripts/install-ansible.sh) with the playbook and inventory of
 *      bench/lab-contenders.ts, over the same SSH with the lab's pinned known_hosts.
 * Each run is checked on the hosts afterwards by the same independent reading (LACP partner = the switch's port
 * channel, gateways answer, VF count, the libvirt network, and the hashes of the files the onboarding owns): a
 * contender whose end state differs from the raw script's is reported as such, and the timing still shown.
 * SSH handshakes are counted on the host (sshd's "Accepted publickey" lines in the guest's journal).
 *
 * Lab: `UNDERLAY_LAB_DIR` / `UNDERLAY_LAB_PORT_BASE` of the environment, else <repo>/.lab-bench and 26200. A lab
 * already running there with enough `ifupdown` servers is reused (and left running) — put back to the
 * `bench-clean` snapshot the run that booted it took, refused without one; otherwise one is booted, snapshotted,
 * and stopped afterwards. Never part of CI: `needs: 'lab'` runs only when named (`--only lab`).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { createActivities, stepSetOf } from '../src/activities';
import { startOnboarding } from '../src/cli/onboarding';
import type { ServerSpec } from '../src/spec/server';
import { createWorker } from '../src/workers/worker';
import { workerSshPool } from '../src/activities/connect';
import { observeCommands, type CommandRecord } from '../src/drivers/remote';
import { downLab, labSsh, listSnapshots, restoreVm, snapshotVm, upLab } from '../lab/control';
import { labSpec, labVms } from '../lab/spec';
import { workflowBundle } from '../test/helpers/temporal';
import { inventoryYaml, playbookYaml, rawSshScript } from './lab-contenders';
import { ratio, type BenchContext, type Scenario, type Size, type Table } from './harness';

const exec = promisify(execFile);
const root = resolve(__dirname, '..');
const SNAPSHOT = 'bench-clean';
const HOSTS: Record<Size, number[]> = { smoke: [1], medium: [1], full: [1, 3] };
const CONTENDERS = ['raw SSH', 'underlay', 'ansible-playbook'] as const;
type Contender = (typeof CONTENDERS)[number];
const RUN_TIMEOUT_MS = 20 * 60_000;

/**
 * The contenders of a run (UNDERLAY_BENCH_LAB_CONTENDERS, comma-separated `raw`, `underlay`, `ansible`; default all
 * three). The raw script always runs first: it is the baseline.
 */
export function labContenders(list: string | undefined): Contender[] {
  if (!list) return [...CONTENDERS];
  const names: Record<string, Contender> = { raw: 'raw SSH', underlay: 'underlay', ansible: 'ansible-playbook' };
  const picked = list.split(',').map((n) => {
    const c = names[n.trim()];
    if (!c) throw new Error(`UNDERLAY_BENCH_LAB_CONTENDERS: unknown contender ${JSON.stringify(n)} (raw, underlay, ansible)`);
    return c;
  });
  return CONTENDERS.filter((c) => c === 'raw SSH' || picked.includes(c));
}

interface LabPaths {
  dir: string;
  key: string;
  knownHosts: string;
}

function labPaths(): LabPaths {
  const dir = process.env.UNDERLAY_LAB_DIR!;
  return { dir, key: join(dir, 'id_ed25519'), knownHosts: join(dir, 'known_hosts') };
}

/** Reuses a running lab with `servers` ifupdown servers, or boots one. Returns whether it booted (and must stop) it. */
async function ensureLab(ctx: BenchContext, servers: number): Promise<boolean> {
  process.env.UNDERLAY_LAB_DIR ??= resolve(root, '.lab-bench');
  process.env.UNDERLAY_LAB_PORT_BASE ??= '26200';
  const dir = process.env.UNDERLAY_LAB_DIR;
  const running = await exec('bash', [resolve(root, 'lab/lab'), 'status'], { env: process.env, timeout: 120_000 }).then(
    () => true,
    () => false,
  );
  if (running) {
    const vms = labVms(dir).filter((v) => v.role === 'server');
    if (vms.length >= servers && vms.slice(0, servers).every((v) => v.image === 'ifupdown' && !v.dataMgmt)) {
      ctx.log(`lab: reusing the running lab in ${dir}`);
      return false;
    }
    throw new Error(`a lab runs in ${dir} that is not ${servers} ifupdown server(s): stop it (lab/lab down) or point UNDERLAY_LAB_DIR elsewhere`);
  }
  ctx.log(`lab: booting switch + ${servers} ifupdown server(s) in ${dir} (port base ${process.env.UNDERLAY_LAB_PORT_BASE})`);
  upLab(servers, { images: Array.from({ length: servers }, () => 'ifupdown') });
  return true;
}

/**
 * Ansible's modules need python3 on the target. The `ifupdown` image has it (openvswitch-switch pulls in
 * python3-openvswitch); an image without it gets the bookworm python3 .debs this host's apt downloads (the image
 * comes from the same suite), copied in and installed with dpkg before the snapshot.
 */
async function ensurePython(ctx: BenchContext, vm: string): Promise<string> {
  const have = (await labSsh(vm, 'command -v python3 >/dev/null && python3 -V || true')).trim();
  if (have) return have;
  const installed = new Set((await labSsh(vm, "dpkg-query -W -f='${Package}\\n'")).split('\n').filter(Boolean));
  const { stdout } = await exec(
    'apt-cache',
    ['depends', '--recurse', '--no-recommends', '--no-suggests', '--no-conflicts', '--no-breaks', '--no-replaces', '--no-enhances', 'python3'],
    {
      maxBuffer: 8 * 2 ** 20,
    },
  );
  const wanted = [...new Set(stdout.split('\n').filter((l) => /^[a-z0-9][a-z0-9.+-]+$/.test(l)))].filter((p) => !installed.has(p));
  const debs = join(process.env.UNDERLAY_CACHE ?? '/var/cache/underlay', 'bench-python3-debs');
  mkdirSync(debs, { recursive: true });
  ctx.log(`${vm}: no python3; installing ${wanted.length} bookworm packages from this host's apt (${wanted.join(' ')})`);
  await exec('apt-get', ['download', ...wanted], { cwd: debs, timeout: 10 * 60_000 });
  const chosen = readdirSync(debs).filter((n) => n.endsWith('.deb') && wanted.some((p) => n.startsWith(`${p}_`)));
  const paths = labPaths();
  const vmInfo = labVms(paths.dir).find((v) => v.name === vm)!;
  await exec('ssh', [...sshArgs(paths, vmInfo.port), 'mkdir -p /root/bench-debs'], { timeout: 120_000 });
  await exec('scp', ['-q', ...scpArgs(paths, vmInfo.port), ...chosen.map((n) => join(debs, n)), 'root@127.0.0.1:/root/bench-debs/'], { timeout: 10 * 60_000 });
  await labSsh(vm, 'dpkg -i /root/bench-debs/*.deb >/root/bench-debs.log 2>&1 && rm -rf /root/bench-debs && python3 -V', { timeoutMs: 15 * 60_000 });
  return (await labSsh(vm, 'python3 -V')).trim();
}

function sshOpts(p: LabPaths): string[] {
  return [
    '-i',
    p.key,
    '-o',
    `UserKnownHostsFile=${p.knownHosts}`,
    '-o',
    'GlobalKnownHostsFile=/dev/null',
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'BatchMode=yes',
  ];
}
function sshArgs(p: LabPaths, port: number): string[] {
  return [...sshOpts(p), '-p', String(port), 'root@127.0.0.1'];
}
function scpArgs(p: LabPaths, port: number): string[] {
  return [...sshOpts(p), '-P', String(port)];
}

/** sshd's accepted logins in the guest's journal (the restore rewinds the journal with the rest). */
async function acceptedLogins(vm: string): Promise<number> {
  return Number((await labSsh(vm, "journalctl -u ssh.service -o cat --no-pager | grep -c 'Accepted publickey' || true")).trim());
}

/** The end state, read independently of every contender: comparable across them. */
async function endState(vm: string, spec: ServerSpec): Promise<{ ok: string[]; problems: string[]; fingerprint: Record<string, unknown> }> {
  const k = vm.replace(/^server/, '');
  const switchPo = JSON.parse(await labSsh('switch', `ip -j link show po${k}`)) as Array<{ address: string }>;
  const out = await labSsh(
    vm,
    [
      'ip -j -d link show',
      'echo ---',
      ...spec.vlans.map((v) => `ping -c 1 -W 2 -I ${v.parent}.${v.id} ${v.gateway} >/dev/null 2>&1 && echo gw-${v.id}-ok || echo gw-${v.id}-silent`),
      'echo ---',
      `cat /sys/class/net/${spec.sriov!.pf}/device/sriov_numvfs`,
      'echo ---',
      `virsh -c qemu:///system net-info ${spec.attach!.kind === 'macvtap' ? spec.attach!.network : '-'} | grep -E '^(Active|Autostart):' | tr -s ' '`,
      `virsh -c qemu:///system net-dumpxml --inactive ${spec.attach!.kind === 'macvtap' ? spec.attach!.network : '-'} | grep -E '<forward|<interface'`,
      'echo ---',
      'sha256sum /etc/network/interfaces /etc/network/interfaces.d/* /etc/udev/rules.d/70-underlay-* 2>/dev/null',
    ].join('; '),
  );
  const [linksJson, gws, vfs, net, files] = out.split('---\n') as [string, string, string, string, string];
  const links = JSON.parse(linksJson) as Array<{
    ifname: string;
    linkinfo?: { info_kind?: string; info_data?: { ad_info?: unknown }; info_slave_data?: { ad_aggregator_id?: number } };
  }>;
  const bond = links.find((l) => l.ifname === spec.bond!.name);
  const ad = bond?.linkinfo?.info_data?.ad_info as { partner_mac?: string; num_ports?: number; aggregator?: number } | undefined;
  const problems: string[] = [];
  if (ad?.partner_mac !== switchPo[0]?.address) problems.push(`LACP partner ${ad?.partner_mac ?? 'none'}, not the switch's po${k} ${switchPo[0]?.address}`);
  if (ad?.num_ports !== spec.bond!.members.length) problems.push(`${ad?.num_ports ?? 0} ports in the aggregator`);
  for (const m of spec.bond!.members) {
    const agg = links.find((l) => l.ifname === m)?.linkinfo?.info_slave_data?.ad_aggregator_id;
    if (agg !== ad?.aggregator) problems.push(`${m} not in the active aggregator`);
  }
  for (const line of gws.trim().split('\n')) if (!line.endsWith('-ok')) problems.push(line);
  if (vfs.trim() !== String(spec.sriov!.numVfs)) problems.push(`sriov_numvfs ${vfs.trim()}`);
  if (!/Active: yes/.test(net) || !/Autostart: yes/.test(net)) problems.push(`libvirt network: ${net.trim().replace(/\n/g, ', ')}`);
  const fileHashes = Object.fromEntries(
    files
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [h, p] = l.split(/\s+/);
        return [p!, h!.slice(0, 12)];
      }),
  );
  return {
    ok: problems.length ? [] : ['LACP with the switch', 'gateways answer', `${vfs.trim()} VFs`, 'network active + autostart'],
    problems,
    fingerprint: { files: fileHashes, network: net.trim().split('\n').slice(2).join(' ').replace(/\s+/g, ' '), vfs: vfs.trim() },
  };
}

/** One spec per host for this row: ids differ per row, so a second underlay run is a new onboarding, not a repeat. */
function specsFor(vms: string[], hosts: number): ServerSpec[] {
  return vms.map((vm) => ({ ...labSpec(vm), id: `bench-h${hosts}-${vm}` }));
}

async function runRaw(ctx: BenchContext, vms: string[], specs: ServerSpec[]): Promise<string[]> {
  const paths = labPaths();
  const all = labVms(paths.dir);
  return Promise.all(
    vms.map(async (vm, i) => {
      const port = all.find((v) => v.name === vm)!.port;
      const script = rawSshScript(specs[i]!);
      writeFileSync(join(ctx.tmp, `raw-${vm}.sh`), script);
      const child = exec('ssh', [...sshArgs(paths, port), 'bash -s'], { timeout: RUN_TIMEOUT_MS, maxBuffer: 8 * 2 ** 20 });
      child.child.stdin?.end(script);
      const { stdout } = await child.catch((e: { stderr?: string; message: string }) => {
        throw new Error(`raw SSH on ${vm} failed: ${(e.stderr ?? '').trim().slice(-1000) || e.message}`);
      });
      return `${vm}: ${stdout
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('step '))
        .map((l) => {
          const [, name, ms] = l.split(' ');
          return `${name} ${(Number(ms) / 1000).toFixed(1)}`;
        })
        .join(', ')} s`;
    }),
  );
}

async function runUnderlay(ctx: BenchContext, specs: ServerSpec[]): Promise<string[]> {
  const taskQueue = `bench-lab-${process.pid}-${Date.now()}`;
  const worker = await createWorker({
    connection: ctx.env.nativeConnection,
    namespace: 'default',
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: createActivities(undefined, stepSetOf('kvm')),
  });
  const before = workerSshPool.stats();
  // Every host command of the run, for the breakdown of where each step's time goes.
  const commands: CommandRecord[] = [];
  const unobserve = observeCommands((r) => commands.length < 20_000 && commands.push(r));
  const t0 = Date.now();
  const notes = await worker.runUntil(async () => {
    const handles = await Promise.all(specs.map((s) => startOnboarding(ctx.env.client, s, { taskQueue, siteQueues: false })));
    await Promise.all(handles.map((h) => h.result()));
    const wall = Date.now() - t0;
    const after = workerSshPool.stats();
    const notes: string[] = [];
    for (const h of handles) {
      const steps: string[] = [];
      const scheduled = new Map<number, { name: string; at: number }>();
      const history = await h.fetchHistory();
      for (const e of history.events ?? []) {
        const at = Number(e.eventTime?.seconds ?? 0) * 1000 + Math.round((e.eventTime?.nanos ?? 0) / 1e6);
        if (e.activityTaskScheduledEventAttributes)
          scheduled.set(Number(e.eventId), { name: e.activityTaskScheduledEventAttributes.activityType?.name ?? '?', at });
        const done = e.activityTaskCompletedEventAttributes;
        if (done) {
          const s = scheduled.get(Number(done.scheduledEventId));
          if (s) steps.push(`${s.name} ${((at - s.at) / 1000).toFixed(1)}`);
        }
      }
      notes.push(`${h.workflowId}: ${steps.join(', ')} s (workflow ${(wall / 1000).toFixed(1)} s)`);
    }
    notes.push(`worker SSH pool: ${after.handshakes - before.handshakes} connections opened, ${after.reused - before.reused} leases reused`);
    return notes;
  });
  unobserve();
  return [...notes, ...commandBreakdown(commands, specs[0]?.id)];
}

/**
 * Where one host's step time went: per step, its command count and their summed wire time (the rest of the step is
 * the engine and the waits between polls), then that host's slowest commands (by summed time per description).
 */
export function commandBreakdown(commands: CommandRecord[], host: string | undefined): string[] {
  const mine = commands.filter((c) => c.host === host);
  if (!mine.length) return [];
  const perStep = new Map<string, { n: number; ms: number }>();
  const perCommand = new Map<string, { n: number; ms: number }>();
  for (const c of mine) {
    const s = perStep.get(c.step ?? '?') ?? { n: 0, ms: 0 };
    perStep.set(c.step ?? '?', { n: s.n + 1, ms: s.ms + c.ms });
    const key = `${c.step ?? '?'}: ${c.description.replace(/\s+/g, ' ').slice(0, 60)}`;
    const k = perCommand.get(key) ?? { n: 0, ms: 0 };
    perCommand.set(key, { n: k.n + 1, ms: k.ms + c.ms });
  }
  const s1 = (ms: number) => (ms / 1000).toFixed(1);
  const top = [...perCommand.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 10);
  return [
    `${host} host commands per step (count, summed s): ${[...perStep.entries()].map(([k, v]) => `${k} ${v.n}, ${s1(v.ms)}`).join('; ')}`,
    `${host} slowest commands (summed s × count): ${top.map(([k, v]) => `${k} ${s1(v.ms)}×${v.n}`).join('; ')}`,
  ];
}

async function runAnsible(ctx: BenchContext, vms: string[], specs: ServerSpec[]): Promise<string[]> {
  const paths = labPaths();
  const dir = join(ctx.tmp, `ansible-${vms.length}`);
  mkdirSync(join(dir, 'cp'), { recursive: true });
  writeFileSync(join(dir, 'playbook.yml'), playbookYaml());
  writeFileSync(
    join(dir, 'inventory.yml'),
    inventoryYaml(vms.map((vm, i) => ({ inventoryName: vm, spec: specs[i]!, privateKeyFile: paths.key, knownHostsFile: paths.knownHosts }))),
  );
  const env = {
    ...process.env,
    ANSIBLE_HOME: join(dir, 'home'),
    ANSIBLE_LOCAL_TEMP: join(dir, 'tmp'),
    ANSIBLE_SSH_CONTROL_PATH_DIR: join(dir, 'cp'),
    ANSIBLE_PIPELINING: 'True',
    ANSIBLE_NOCOLOR: '1',
    ANSIBLE_FORKS: String(Math.max(5, vms.length)),
    PYTHONDONTWRITEBYTECODE: '1',
  };
  const { stdout } = await exec(resolve(root, '.tools/ansible/bin/ansible-playbook'), ['-i', 'inventory.yml', 'playbook.yml'], {
    cwd: dir,
    env,
    timeout: RUN_TIMEOUT_MS,
    maxBuffer: 32 * 2 ** 20,
  }).catch((e: { stdout?: string; message: string }) => {
    throw new Error(`ansible-playbook failed: ${(e.stdout ?? '').trim().slice(-3000) || e.message}`);
  });
  writeFileSync(join(dir, 'output.txt'), stdout);
  const recap = stdout.slice(stdout.indexOf('PLAY RECAP')).trim().split('\n').slice(1);
  // Close the ControlPersist masters now (they would count as idle sessions of the next contender otherwise).
  for (const vm of vms) {
    const port = labVms(paths.dir).find((v) => v.name === vm)!.port;
    await exec('ssh', ['-o', `ControlPath=${join(dir, 'cp')}/%C`, '-O', 'exit', '-p', String(port), 'root@127.0.0.1'], { timeout: 30_000 }).catch(
      () => undefined,
    );
  }
  return recap.map((l) => `ansible recap ${l.replace(/\s+/g, ' ').trim()}`);
}

export const labScenario: Scenario = {
  name: 'lab',
  title: 'Network onboarding of lab hosts: underlay vs raw SSH vs ansible-playbook',
  needs: 'lab',
  async run(ctx, size) {
    const sizes = HOSTS[size];
    const contenders = labContenders(process.env.UNDERLAY_BENCH_LAB_CONTENDERS);
    const servers = Math.max(...sizes);
    ctx.log('lab: the pinned ansible-core (scripts/install-ansible.sh)');
    await exec('bash', [resolve(root, 'scripts/install-ansible.sh')], { timeout: 15 * 60_000 });
    const booted = await ensureLab(ctx, servers);
    process.env.UNDERLAY_CREDENTIALS_DIR = process.env.UNDERLAY_LAB_DIR;
    const load0 = loadavg()[0]!;
    try {
      const vmsAll = Array.from({ length: servers }, (_, i) => `server${i + 1}`);
      const pythons: string[] = [];
      for (const vm of vmsAll) {
        // A reused lab goes back to the snapshot its first run took (its hosts may carry an earlier contender's
        // onboarding); only a lab with no such snapshot — one booted now — is snapshotted, once python3 is there.
        if (!booted && (await listSnapshots(vm)).includes(SNAPSHOT)) await restoreVm(vm, SNAPSHOT);
        else if (!booted) throw new Error(`${vm} of the reused lab has no '${SNAPSHOT}' snapshot: its state is unknown; boot a fresh lab (lab/lab down)`);
        pythons.push(`${vm}: ${await ensurePython(ctx, vm)}`);
        if (booted) await snapshotVm(vm, SNAPSHOT);
      }
      const rows: Table['rows'] = [];
      const notes: string[] = [];
      const qemu = await exec('pgrep', ['-c', 'qemu-system']).then(
        (r) => Number(r.stdout.trim()),
        () => 0,
      );
      for (const hosts of sizes) {
        const vms = vmsAll.slice(0, hosts);
        const specs = specsFor(vms, hosts);
        const results: Partial<Record<Contender, { wall: number; handshakes: number; state: string }>> = {};
        let reference: string | undefined;
        for (const c of contenders) {
          for (const vm of vms) await restoreVm(vm, SNAPSHOT);
          const logins0 = await Promise.all(vms.map(acceptedLogins));
          ctx.log(`lab: ${c} on ${hosts} host(s)`);
          const t0 = Date.now();
          // A contender that fails or overruns its bound is a row saying so (with the time it had), not a lost run.
          const detail = await (c === 'raw SSH' ? runRaw(ctx, vms, specs) : c === 'underlay' ? runUnderlay(ctx, specs) : runAnsible(ctx, vms, specs)).then(
            (d) => ({ ok: true as const, d }),
            (e: unknown) => ({ ok: false as const, d: [String(e instanceof Error ? e.message : e).slice(-1500)] }),
          );
          const wall = (Date.now() - t0) / 1000;
          const logins1 = await Promise.all(vms.map(acceptedLogins));
          const states = await Promise.all(vms.map((vm, i) => endState(vm, specs[i]!)));
          const problems = states.flatMap((s, i) => s.problems.map((p) => `${vms[i]}: ${p}`));
          const fp = JSON.stringify(states.map((s) => s.fingerprint));
          if (c === 'raw SSH' && detail.ok && !problems.length) reference = fp;
          const state = !detail.ok
            ? `did not finish (${wall >= RUN_TIMEOUT_MS / 1000 - 1 ? `killed at its ${RUN_TIMEOUT_MS / 60_000}-min bound` : 'failed'})`
            : problems.length
              ? `wrong: ${problems.join('; ')}`
              : fp === reference
                ? 'onboarded, same as raw SSH'
                : 'onboarded, files differ from raw SSH';
          if (detail.ok && !problems.length && fp !== reference) notes.push(`${c}, ${hosts} host(s): end state ${fp} vs raw SSH ${reference}`);
          results[c] = { wall, handshakes: logins1.reduce((a, b) => a + b, 0) - logins0.reduce((a, b) => a + b, 0), state };
          notes.push(`${c}, ${hosts} host(s): ${detail.d.join('; ')}`);
          ctx.log(`lab: ${c}, ${hosts} host(s): ${wall.toFixed(1)} s, ${results[c].handshakes} handshakes, ${state} — ${detail.d.join('; ')}`);
        }
        const base = results['raw SSH']?.wall ?? NaN;
        for (const c of contenders) {
          const r = results[c]!;
          rows.push([c, hosts, r.wall, ratio(r.wall, base), r.handshakes, r.state]);
        }
      }
      const load1 = loadavg()[0]!;
      return {
        scenario: 'lab',
        title: this.title,
        baseline: 'the raw-SSH script on the same hosts in the same run (wall s)',
        columns: ['contender', 'hosts', 'wall s', 'vs raw SSH', 'SSH handshakes', 'end state'],
        rows,
        notes: [
          `hosts restored from one VM snapshot (savevm after python3 was checked) before every contender; order ${contenders.join(', ')}; lab image ifupdown (KVM set installed: the hypervisor step only verifies)`,
          `python3 on the hosts (for Ansible's modules): ${pythons.join(', ')}`,
          `SSH handshakes: sshd's accepted logins in each guest's journal during the run, summed over hosts`,
          `load average ${load0.toFixed(1)} at the start, ${load1.toFixed(1)} at the end; ${qemu} QEMU processes on the machine (this lab: ${servers + 1})`,
          ...notes,
        ],
      };
    } finally {
      if (booted) downLab();
    }
  },
};
