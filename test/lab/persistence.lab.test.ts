/**
 * Persistence through the host's own network manager, on the lab's real Debian hosts — one per manager
 * (ifupdown, systemd-networkd, NetworkManager), each booted with its data NICs configured by that manager as an
 * installer leaves them, KVM and Open vSwitch already installed (image variants, lab/README.md):
 *
 *   onboard → reboot for real → LACP with the switch, both gateways, 4 VFs, the macvtap network, nothing to plan
 *   → `underlay rollback` → the manager's files byte for byte as before, the NICs given back → reboot again →
 *   the pre-onboarding network.
 *
 * The three are onboarded as one fleet (`onboardFleet` over their spec files, one worker): the ifupdown host as the
 * canary, the fleet waiting for an operator's approval, then the other two as one wave — a fleet of the lab's real
 * servers end to end; the rest of each host's life runs side by side. On the networkd host, before its rollback, drift
 * health: a switch leg taken out of the LACP bond, a gateway dropped, and the switch announcing another port on a
 * cable are each reported as needing an operator with the right field — and nothing is re-applied.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { createActivities } from '../../src/activities';
import { sshConnector } from '../../src/activities/connect';
import { planOnboarding, renderPlan } from '../../src/activities/plan';
import { PLATFORM_STEP_SET } from '../../src/activities/registry';
import { loadRollback } from '../../src/activities/rollback';
import { controlFleet, queryFleet, startFleet } from '../../src/cli/fleet';
import { startRollback } from '../../src/cli/onboarding';
import { driftWorkflowId, onboardingWorkflowId } from '../../src/common/config';
import type { ServerSpec } from '../../src/spec/server';
import { createWorker } from '../../src/workers/worker';
import type { driftCheck } from '../../src/workflows/drift';
import type { DriftCheckResult } from '../../src/workflows/drift-messages';
import type { onboardServer } from '../../src/workflows/onboard';
import { freshLab, labSpec, snapshot, stopLab } from '../helpers/lab';
import { assertOnboarded, managerFiles, onSwitch, rebootVm, switchPorts } from '../helpers/lab-host';
import { startTemporal, workflowBundle } from '../helpers/temporal';
import { eventually } from '../helpers/eventually';

const MANAGERS = [
  { server: 'server1', image: 'ifupdown', manager: 'ifupdown' },
  { server: 'server2', image: 'networkd', manager: 'networkd' },
  { server: 'server3', image: 'nm', manager: 'networkmanager' },
] as const;

// Its own lab (dir .lab-persist, ports 25600+), so it can run next to another lab file (scripts/test.sh decides).
// Read by lab/up.sh and lab/down.sh (through freshLab/stopLab) at call time.
process.env.UNDERLAY_LAB_DIR = resolve(__dirname, '../../.lab-persist');
process.env.UNDERLAY_LAB_PORT_BASE = '25600';

let env: TestWorkflowEnvironment;
let worker: Worker;
let running: Promise<void>;
const taskQueue = `lab-persist-${Date.now()}`;
const figures: Record<string, string> = {};
const secs = (ms: number) => `${(ms / 1000).toFixed(0)} s`;

before(async () => {
  freshLab(3, { images: MANAGERS.map((m) => m.image) });
  env = await startTemporal();
  worker = await createWorker({
    connection: env.nativeConnection,
    namespace: 'default',
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: createActivities(),
  });
  running = worker.run();
});
after(async () => {
  worker?.shutdown();
  await running?.catch(() => undefined);
  await env?.teardown();
  stopLab();
  console.log('persistence figures:', JSON.stringify(figures, null, 2));
});

async function checkDrift(spec: ServerSpec): Promise<DriftCheckResult> {
  const handle = await env.client.workflow.start<typeof driftCheck>('driftCheck', {
    taskQueue,
    workflowId: driftWorkflowId(spec.id),
    memo: { mode: 'remediate' },
    args: [{ spec, mode: 'remediate', approvalTimeout: '1m' }],
  });
  return handle.result();
}

/** Drift checks until one reports `step` needing an operator with a problem on `field` (bounded: the switch's timers). */
async function untilUnhealthy(spec: ServerSpec, step: string, field: RegExp): Promise<DriftCheckResult> {
  let last: DriftCheckResult | undefined;
  for (let i = 0; i < 12; i++) {
    last = await checkDrift(spec);
    const d = last.diffs.find((x) => x.step === step);
    if (last.status === 'needs-operator' && d?.health?.some((h) => field.test(h.field))) return last;
    await sleep(5_000);
  }
  assert.fail(`${spec.id}: no needs-operator report for ${step} ${field}: ${JSON.stringify(last)}`);
}

async function untilClean(spec: ServerSpec): Promise<void> {
  let last: DriftCheckResult | undefined;
  for (let i = 0; i < 12; i++) {
    last = await checkDrift(spec);
    if (last.status === 'clean') return;
    await sleep(5_000);
  }
  assert.fail(`${spec.id}: not clean again: ${JSON.stringify(last)}`);
}

/** Drift health on an onboarded host: each fault reported with its field, nothing re-applied, clean once undone. */
async function driftHealth(spec: ServerSpec): Promise<void> {
  const ports = switchPorts(spec);
  const t0 = Date.now();
  // A leg out of the switch's LACP bond: the host's eth2 loses its partner and leaves the aggregator.
  await onSwitch(`ip link set dev ${ports.eth2} nomaster`);
  try {
    const r = await untilUnhealthy(spec, 'bond', /^(eth2\.(aggregator|lacp)|bond0\.(ports|partner|churn))$/);
    assert.deepEqual(r.remediation, undefined, 'nothing re-applied');
    // Often with the cable too: the switch's lldpd re-registers a port that leaves its bond, and the host hears no
    // neighbour on eth2 for a while — an operator should look at both.
    assert.match(r.reason ?? '', /needs an operator: (.*, )?bond \(.* look at /);
  } finally {
    await onSwitch(`ip link set dev ${ports.eth2} down; ip link set dev ${ports.eth2} master ${ports.bond}; ip link set dev ${ports.eth2} up`);
  }
  await untilClean(spec);
  // A VLAN gateway gone.
  await onSwitch('ip addr del 198.18.1.1/24 dev vlan200');
  try {
    const r = await untilUnhealthy(spec, 'vlan', /^bond0\.200\.gateway$/);
    assert.deepEqual(r.unhealthySteps, ['vlan']);
  } finally {
    await onSwitch('ip addr add 198.18.1.1/24 dev vlan200');
  }
  await untilClean(spec);
  // The cable of eth1 now ends on another port: the switch announces swp9 on it.
  await onSwitch(`lldpcli configure ports ${ports.eth1} lldp portidsubtype local swp9`);
  try {
    const r = await untilUnhealthy(spec, 'cable', /^eth1\.lldp$/);
    const h = r.diffs.find((d) => d.step === 'cable')!.health!.find((x) => x.field === 'eth1.lldp')!;
    assert.equal(h.expected, `leaf-01/${ports.eth1}`);
    assert.equal(h.observed, 'leaf-01/swp9');
  } finally {
    await onSwitch(`lldpcli configure ports ${ports.eth1} lldp portidsubtype local ${ports.eth1}`);
  }
  await untilClean(spec);
  figures['drift health (3 faults, each seen and cleared)'] = secs(Date.now() - t0);
}

/** What each host was before onboarding: its manager's files and its runtime network. */
type Before = { files0: Awaited<ReturnType<typeof managerFiles>>; host0: Awaited<ReturnType<typeof snapshot>> };

/**
 * The three onboarded as one fleet over their spec files: the ifupdown host alone first (the canary), the fleet
 * waiting for approval, then the networkd and NetworkManager hosts as one wave (cap 2). Each host's onboarding is the
 * fleet's child `onboard-<id>`, whose result is checked as a single onboarding's would be.
 */
async function onboardAsFleet(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'underlay-persist-fleet-'));
  try {
    const files = MANAGERS.map((m) => {
      const spec = labSpec(m.server);
      const file = join(dir, `${spec.id}.json`);
      writeFileSync(file, JSON.stringify(spec));
      return file;
    });
    const name = `persist-${process.pid}`;
    const t = Date.now();
    const h = await startFleet(env.client, name, { source: { kind: 'files', files }, canary: { size: 1, approval: 'wait' }, concurrency: 2 }, { taskQueue });
    // The canary onboards alone; the fleet then waits for an operator (bounded: 10 min under TCG).
    const p = await eventually(
      'the canary onboarded and the fleet awaiting approval (or stopped)',
      async () => {
        const q = await queryFleet(env.client, name);
        return (q.phase === 'awaiting-approval' || q.phase === 'stopped') && q;
      },
      600_000,
      2_000,
    );
    assert.equal(p.phase, 'awaiting-approval', JSON.stringify(p.failures));
    assert.deepEqual(
      { onboarded: p.counts.onboarded, started: p.counts.started, canary: p.waves[0]?.canary },
      { onboarded: 1, started: 1, canary: true },
      'the canary (the ifupdown host) onboarded alone, nothing else started',
    );
    figures['fleet: canary (ifupdown) onboarded, awaiting approval'] = secs(Date.now() - t);
    await controlFleet(env.client, name, 'approve', { by: 'lab' });
    const done = await h.result();
    figures['fleet: the other two (one wave) onboarded'] = secs(Date.now() - t);
    assert.equal(done.phase, 'completed');
    assert.equal(done.canary?.approvedBy, 'lab');
    assert.deepEqual(done.counts, { ...done.counts, seen: 3, started: 3, onboarded: 3, failed: 0 });
    assert.deepEqual(
      done.waves.map((w) => [w.canary, w.onboarded]),
      [
        [true, 1],
        [false, 2],
      ],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function lifecycle(m: (typeof MANAGERS)[number], { files0, host0 }: Before): Promise<void> {
  const spec = labSpec(m.server);
  // The fleet's child onboarding of this host: its result as a single onboarding's.
  const result = await env.client.workflow.getHandle<typeof onboardServer>(onboardingWorkflowId(spec.id)).result();
  for (const s of ['bond', 'vlan', 'sriov', 'attach'] as const) assert.equal(result.steps[s].state, 'done', `${m.manager}: ${s}`);
  assert.equal(result.steps.hypervisor.state, 'unchanged', `${m.manager}: KVM is in the image`);
  assert.match(result.steps.bond.summary ?? '', new RegExp(`persisted through ${m.manager}`));
  const files1 = await managerFiles(spec);
  assert.notDeepEqual(files1, files0, `${m.manager}: the manager's files changed`);

  let t = Date.now();
  figures[`${m.manager}: reboot after onboarding`] = secs(await rebootVm(spec));
  await assertOnboarded(spec);
  figures[`${m.manager}: back and verified after the reboot`] = secs(Date.now() - t);
  assert.deepEqual(await managerFiles(spec), files1, `${m.manager}: the files survive the reboot unchanged`);

  if (m.manager === 'networkd') await driftHealth(spec);

  // An idle onboarded host (libvirtd has exited after its 2-minute idle timeout by now): nothing to plan.
  const plan = await planOnboarding(spec, sshConnector, PLATFORM_STEP_SET);
  assert.ok(
    plan.steps.every((s) => !s.changes.length && !s.error && !s.health?.length),
    `${m.manager}: ${renderPlan(plan)}`,
  );

  t = Date.now();
  const rb = await (await startRollback(env.client, await loadRollback(env.client, spec.id), { taskQueue })).result();
  figures[`${m.manager}: rollback`] = secs(Date.now() - t);
  assert.deepEqual(
    rb.compensations.map((c) => [c.step, c.outcome]),
    [
      ['attach', 'restored'],
      ['sriov', 'restored'],
      ['vlan', 'restored'],
      ['bond', 'restored'],
    ],
  );
  assert.deepEqual(await managerFiles(spec), files0, `${m.manager}: the manager's files byte for byte as before`);
  assert.deepEqual(await snapshot(spec), host0, `${m.manager}: the runtime as before (NICs given back)`);

  t = Date.now();
  await rebootVm(spec);
  assert.deepEqual(await managerFiles(spec), files0, `${m.manager}: still as before after a reboot`);
  assert.deepEqual(await snapshot(spec), host0, `${m.manager}: the pre-onboarding network after a reboot`);
  figures[`${m.manager}: reboot after rollback, verified`] = secs(Date.now() - t);
}

describe('persistence through the host’s network manager (ifupdown, networkd, NetworkManager)', () => {
  test('onboard as one fleet (canary, approval, a wave), reboot, drift health, rollback byte for byte, reboot: each manager', async () => {
    const before = await Promise.all(
      MANAGERS.map(async (m): Promise<Before> => ({ files0: await managerFiles(labSpec(m.server)), host0: await snapshot(labSpec(m.server)) })),
    );
    await onboardAsFleet();
    const outcomes = await Promise.allSettled(MANAGERS.map((m, i) => lifecycle(m, before[i]!)));
    const failed = outcomes.map((o, i) => (o.status === 'rejected' ? `${MANAGERS[i]!.manager}: ${String(o.reason?.stack ?? o.reason)}` : '')).filter(Boolean);
    assert.deepEqual(failed, []);
  });
});
