/**
 * Reboot-and-wait on a real Debian VM of the QEMU lab, run as a real activity (the production hypervisor-step
 * policy) on a real worker against the Temporal dev server — once straight through, once with the worker
 * killed (SIGKILL to its process group) while it waits for the host; a new worker must finish the step without
 * rebooting the host a second time. Boots are counted on the VM by a oneshot systemd unit the test installs.
 *
 * Its own lab (dir .lab-reboot, ports 23200+, one server + the switch) so it runs next to another lab.
 * Also: the Xen bridge attach (src/activities/xen/attach.ts) over a real LACP bond on the same VM.
 */
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaultPayloadConverter } from '@temporalio/common';
import { MockActivityEnvironment, type TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { cachedWorkflowBundle } from '../helpers/bundle';
import { bondStep } from '../../src/activities/bond';
import { sshConnector } from '../../src/activities/connect';
import type { RebootOutcome } from '../../src/activities/reboot';
import { runStep, undoStep } from '../../src/activities/run-step';
import type { RebootMark, StepChoice, StepResult, UndoResult } from '../../src/activities/step';
import { vlanStep } from '../../src/activities/vlan';
import { xenBridgeAttachStep } from '../../src/activities/xen/attach';
import { xenInstallStep, type XenInstallState } from '../../src/activities/xen/install';
import type { StepName } from '../../src/steps';
import type { ServerSpec, ServerSpecInput } from '../../src/spec/server';
import { parseServerSpec } from '../../src/spec/validate';
import { labSpecInput } from '../../lab/spec';
import { createWorker } from '../../src/workers/worker';
import { spawnDetached } from '../helpers/detached';
import { freshLab, labSpec, onHost, snapshot, stopLab } from '../helpers/lab';
import { rebootVm } from '../helpers/lab-host';
import { rebootActivities } from '../helpers/reboot-steps';
import { startTemporal } from '../helpers/temporal';
import { applicationFailureOf } from '../helpers/failures';
import { describePackageFaults } from './package-faults';

const root = resolve(__dirname, '../..');
// Read by lab/up.sh and lab/down.sh (through freshLab/stopLab) at call time.
process.env.UNDERLAY_LAB_DIR = resolve(root, '.lab-reboot');
process.env.UNDERLAY_LAB_PORT_BASE = '23200';
process.env.UNDERLAY_LAB_SERVERS = '1';
const LAB = process.env.UNDERLAY_LAB_DIR;

let env: TestWorkflowEnvironment;
let bundle: WorkflowBundleWithSourceMap;
let spec: ServerSpec;
const figures: Record<string, string> = {};

const noop = () => undefined;

before(async () => {
  freshLab(1);
  spec = labSpec('server1', { dir: LAB });
  env = await startTemporal();
  bundle = await cachedWorkflowBundle(require.resolve('../helpers/reboot-workflow'));
  // A boot counter: one line "<boot_id> <epoch s>" per boot, written by systemd once the host is up.
  await onHost(spec, async (run) => {
    await run(`cat >/etc/systemd/system/underlay-boot-counter.service <<'EOF'
[Unit]
Description=underlay lab test: record every boot
After=ssh.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "$(cat /proc/sys/kernel/random/boot_id) $(date +%%s)" >>/var/lib/underlay-boots'

[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload && systemctl enable --quiet underlay-boot-counter.service
echo "$(cat /proc/sys/kernel/random/boot_id) $(date +%s)" >/var/lib/underlay-boots`);
  });
});

after(async () => {
  await env?.teardown();
  stopLab();
  if (Object.keys(figures).length)
    console.log(
      `figures:\n${Object.entries(figures)
        .map(([k, v]) => `  ${k}: ${v}`)
        .join('\n')}`,
    );
});

async function boots(): Promise<Array<{ id: string; at: number }>> {
  const text = await onHost(spec, (run) => run('cat /var/lib/underlay-boots'));
  return text
    .trim()
    .split('\n')
    .map((l) => l.split(' '))
    .map(([id, at]) => ({ id: id!, at: Number(at) * 1000 }));
}

async function bootId(): Promise<string> {
  return (await onHost(spec, (run) => run('cat /proc/sys/kernel/random/boot_id'))).trim();
}

/** The reboot mark in the running activity's last heartbeat, if any. */
async function pendingRebootMark(handle: {
  describe(): Promise<{ raw: { pendingActivities?: Array<{ heartbeatDetails?: { payloads?: unknown[] | null } | null }> | null } }>;
}): Promise<RebootMark | undefined> {
  const d = await handle.describe();
  const payload = d.raw.pendingActivities?.[0]?.heartbeatDetails?.payloads?.[0];
  if (!payload) return undefined;
  const details = defaultPayloadConverter.fromPayload(payload as never) as { marks?: Record<string, unknown> };
  return (details.marks?.reboot as RebootMark | undefined) ?? undefined;
}

const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

describe('reboot-and-wait on a real lab VM', () => {
  test('straight through: one reboot, a new boot id, the activity completes', async () => {
    const before = await bootId();
    const bootsBefore = (await boots()).length;
    let outcome: RebootOutcome | undefined;
    const taskQueue = `reboot-straight-${Date.now()}`;
    const worker = await createWorker({
      connection: env.nativeConnection,
      namespace: 'default',
      taskQueue,
      workflowBundle: bundle,
      activities: rebootActivities(before, (o) => (outcome = o)),
      dataConverter: undefined,
    });
    const started = Date.now();
    const result = (await worker.runUntil(
      env.client.workflow.execute('rebootOnce', { taskQueue, workflowId: `reboot-straight-${Date.now()}`, args: [spec] }),
    )) as StepResult;
    const total = Date.now() - started;
    assert.equal(result.attempt, 1);
    assert.ok(result.changed);
    assert.ok(outcome, 'apply reported the reboot');
    assert.equal(outcome.from, before);
    assert.equal(outcome.issuedNow, true);
    const after = await bootId();
    assert.notEqual(after, before);
    assert.equal(outcome.to, after);
    const all = await boots();
    assert.equal(all.length, bootsBefore + 1, 'exactly one boot more');
    assert.equal(all.at(-1)!.id, after);
    figures['straight: reboot issued → new boot id over SSH (waitedMs)'] = secs(outcome.waitedMs);
    figures['straight: whole activity (observe, reboot, wait, verify)'] = secs(total);
  });

  test('the worker is killed while it waits; a new worker finishes without a second reboot', async () => {
    const before = await bootId();
    const bootsBefore = (await boots()).length;
    const taskQueue = `reboot-kill-${Date.now()}`;
    const { kill: killWorker } = spawnDetached(process.execPath, ['--import', 'tsx', resolve(root, 'test/helpers/reboot-worker.ts')], {
      cwd: root,
      env: { ...process.env, TEMPORAL_ADDRESS: env.address, TASK_QUEUE: taskQueue, BOOT_BEFORE: before },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    try {
      const handle = await env.client.workflow.start('rebootOnce', { taskQueue, workflowId: `reboot-kill-${Date.now()}`, args: [spec] });
      // Bounded (≤ 5 min): wait for the reboot mark in the activity's heartbeat, then a little into the wait.
      let mark: RebootMark | undefined;
      for (let i = 0; i < 300 && !mark; i++) {
        mark = await pendingRebootMark(handle).catch(() => undefined);
        if (!mark) await sleep(1_000);
      }
      assert.ok(mark, 'the reboot was marked within 5 min');
      assert.equal(mark.bootId, before);
      await sleep(5_000);
      killWorker();
      const killedAt = Date.now();
      assert.equal(mark.back, undefined, 'killed before the host was back');
      const worker = await createWorker({
        connection: env.nativeConnection,
        namespace: 'default',
        taskQueue,
        workflowBundle: bundle,
        activities: rebootActivities(before),
        dataConverter: undefined,
      });
      const result = (await worker.runUntil(handle.result())) as StepResult;
      const doneAt = Date.now();
      assert.ok(result.attempt >= 2, `finished on a retry (attempt ${result.attempt})`);
      const after = await bootId();
      assert.notEqual(after, before);
      const all = await boots();
      assert.equal(all.length, bootsBefore + 1, 'exactly one reboot: the new worker only waited');
      assert.equal(all.at(-1)!.id, after);
      const history = await handle.fetchHistory();
      const scheduled = (history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes).length;
      assert.equal(scheduled, 1);
      figures['kill: reboot issued → new boot up (boot counter)'] = secs(all.at(-1)!.at - mark.issuedAt);
      figures['kill: worker killed → step completed on the new worker'] = secs(doneAt - killedAt);
      figures['kill: attempts'] = String(result.attempt);
    } finally {
      killWorker();
    }
  });
});

// ---- Xen on the same real Debian host: the bridge attach over a real LACP bond, the install's plan ----------------

const silent = { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: noop };
const act = () => new MockActivityEnvironment({}, { logger: silent });
const runOn = (name: StepName, step: StepChoice, raw: unknown) => act().run(runStep, name, step, raw, sshConnector) as Promise<StepResult>;
const undoOn = (name: StepName, step: StepChoice, raw: unknown, pre: unknown) => act().run(undoStep, name, step, raw, pre, sshConnector) as Promise<UndoResult>;

/** server1 as a Xen host: bond0 (LACP with the switch VM), VLAN 100 on it, xenbr0 over bond0. */
function xenInput(attach: Record<string, unknown> = { kind: 'bridge', name: 'xenbr0' }): ServerSpecInput {
  const base = labSpecInput('server1', { dir: LAB });
  return {
    ...base,
    id: 'lab-xen-server1',
    vlans: [base.vlans![0]!],
    sriov: undefined,
    hypervisor: { kind: 'xen', dom0MemoryMb: 1024 },
    attach: attach as ServerSpecInput['attach'],
  };
}

describe('Xen steps on a real Debian host (no Xen boot here: the lab boots its kernel directly)', () => {
  test('install: the plan on a host without Xen, and a typed, final failure when its repositories lack Xen (a detached job)', async () => {
    const raw = xenInput();
    const xspec = parseServerSpec(raw);
    const packagesBefore = (await snapshot(xspec)).packages;
    const observed = (await act().run(async () => {
      const conn = await sshConnector(xspec, 'hypervisor', noop);
      try {
        const io = { host: conn.host, spec: xspec, want: xspec, sleep: (ms: number) => sleep(ms), progress: noop, marks: {}, mark: noop };
        return await xenInstallStep.observe(io);
      } finally {
        conn.close();
      }
    })) as XenInstallState;
    assert.equal(observed.dom0, false);
    assert.equal(observed.nextBoot, null, 'the lab VM has no GRUB');
    assert.deepEqual(
      xenInstallStep.plan(xspec, observed).map((c) => c.field),
      ['package xen-system-amd64', '/etc/default/grub.d/underlay-xen.cfg', 'GRUB default entry', 'running hypervisor'],
    );
    const f = await applicationFailureOf(runOn('hypervisor', xenInstallStep, raw));
    // The install ran as a detached host job (a transient systemd unit) that failed: typed, final, naming the unit.
    assert.equal(f.type, 'JobFailedError');
    assert.equal(f.nonRetryable, true);
    assert.match(
      f.message,
      /do not offer Xen \(xen-system-amd64\): job underlay-lab-xen-server1-hypervisor-install ended with result exit-code, exit status 100/,
    );
    assert.deepEqual((await snapshot(xspec)).packages, packagesBefore, 'nothing installed');
  });

  test('bridge attach: xenbr0 over the real bond0, the VLAN on bond0 still passes traffic, idempotent, back after a reboot, undone exactly', async () => {
    const raw = xenInput();
    const xspec = parseServerSpec(raw);
    const before = await snapshot(xspec);
    const t0 = Date.now();
    const bond = await runOn('bond', bondStep, raw);
    const vlan = await runOn('vlan', vlanStep, raw);
    const t1 = Date.now();
    const attach = await runOn('attach', xenBridgeAttachStep, raw);
    const t2 = Date.now();
    assert.equal(attach.changed, true);
    await onHost(xspec, async (run) => {
      const links = JSON.parse(await run('ip -j -d link show')) as Array<{
        ifname: string;
        master?: string;
        linkinfo?: { info_kind?: string };
        flags: string[];
      }>;
      const br = links.find((l) => l.ifname === 'xenbr0');
      assert.equal(br?.linkinfo?.info_kind, 'bridge');
      assert.ok(br?.flags.includes('UP'));
      assert.equal(links.find((l) => l.ifname === 'bond0')?.master, 'xenbr0');
      assert.equal((await run('cat /sys/class/net/bond0/brport/state')).trim(), '3', 'forwarding');
      await run('ping -c 1 -W 2 -I bond0.100 192.0.2.1');
    });
    const again = await runOn('attach', xenBridgeAttachStep, raw);
    assert.equal(again.changed, false, 'a re-run is a no-op');
    // Persisted through ifupdown (bridge_ports): after a real reboot the bond, its VLAN and the bridge are back.
    const t3 = Date.now();
    await rebootVm(xspec);
    await onHost(xspec, async (run) => {
      assert.match(await run('cat /etc/network/interfaces.d/underlay-bridge-xenbr0'), /^ {4}bridge_ports bond0$/m);
      let master = '';
      for (let i = 0; i < 30 && master !== 'xenbr0'; i++) {
        master = (JSON.parse(await run('ip -j link show dev bond0')) as Array<{ master?: string }>)[0]?.master ?? '';
        if (master !== 'xenbr0') await sleep(2_000);
      }
      assert.equal(master, 'xenbr0', 'bond0 is the bridge port again after the reboot');
      let pinged = false;
      for (let i = 0; i < 30 && !pinged; i++) {
        pinged = await run('ping -c 1 -W 2 -I bond0.100 192.0.2.1').then(
          () => true,
          () => false,
        );
        if (!pinged) await sleep(2_000);
      }
      assert.ok(pinged, 'VLAN 100 on the bridged bond answers after the reboot');
    });
    const rebooted = await runOn('attach', xenBridgeAttachStep, raw);
    assert.equal(rebooted.changed, false, 'nothing to re-apply after the reboot');
    figures['xen bridge: reboot, back with the bridge (persisted through ifupdown)'] = secs(Date.now() - t3);
    const u = await undoOn('attach', xenBridgeAttachStep, raw, attach.pre);
    assert.ok(u.changes.length > 0);
    await undoOn('vlan', vlanStep, raw, vlan.pre);
    await undoOn('bond', bondStep, raw, bond.pre);
    assert.deepEqual(await snapshot(xspec), before, 'the host is back to its snapshot');
    figures['xen bridge: bond + VLAN steps (LACP negotiated, gateway pinged)'] = secs(t1 - t0);
    figures['xen bridge: attach step (apply + verify)'] = secs(t2 - t1);
  });

  test('bridge attach: an uplink that carries the SSH session is refused (lockout guard), nothing changed', async () => {
    const base = xenInput({ kind: 'bridge', name: 'xenbr0', uplink: 'eth0' });
    const raw = { ...base, nics: [...base.nics, { name: 'eth0', cabled: false }], bond: undefined, vlans: [] };
    const xspec = parseServerSpec(raw);
    const before = await snapshot(xspec);
    const f = await applicationFailureOf(runOn('attach', xenBridgeAttachStep, raw));
    assert.equal(f.type, 'LockoutRiskError');
    assert.equal(f.nonRetryable, true);
    assert.match(f.message, /field attach\.uplink; .*observed "eth0"/);
    assert.deepEqual(await snapshot(xspec), before);
  });
});

// The package-database faults run on this lab's server too (a `fresh` host, its offline repo): this file runs next to
// the main lab files, which keeps them off the longest path of the suite.
describePackageFaults(() => spec);
