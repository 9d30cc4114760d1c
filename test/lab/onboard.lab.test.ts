/**
 * End to end on the QEMU lab: real Debian hosts (Debian's kernel: bonding, 8021q, netdevsim, openvswitch), a
 * switch VM that is a real LACP partner with lldpd, the real workflow on a real Temporal dev server, and the
 * real SSH activities. One fresh lab per run (≈ 2 min to boot); the KVM install is real (offline apt repo).
 * The least-privilege scenario (a non-root login restricted to deploy/sudoers/underlay) runs on server1 first.
 */
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { createActivities, stepSetOf, type StepSet } from '../../src/activities';
import type { Step } from '../../src/activities/step';
import { sshConnector } from '../../src/activities/connect';
import { planOnboarding, renderPlan } from '../../src/activities/plan';
import { VerificationError } from '../../src/common/errors';
import { STEPS } from '../../src/steps';
import { startOnboarding } from '../../src/cli/onboarding';
import type { ServerSpec } from '../../src/spec/server';
import { createWorker } from '../../src/workers/worker';
import { statusQuery, type OnboardingFailureReport } from '../../src/workflows/messages';
import { driftCheck } from '../../src/workflows/drift';
import { driftProgressQuery, type DriftCheckResult, type DriftMode } from '../../src/workflows/drift-messages';
import { approveDrift } from '../../src/cli/drift';
import { driftWorkflowId } from '../../src/common/config';
import type { WorkflowHandle } from '@temporalio/client';
import { spawnDetached } from '../helpers/detached';
import { describeHealthFaults } from './health-faults';
import { freshLab, labSpec, labVm, onHost, snapshot, stopLab } from '../helpers/lab';
import { describeLeastPrivilege } from './least-privilege';
import { startTemporal, workflowBundle } from '../helpers/temporal';

const root = resolve(__dirname, '../..');
const LINUX_STEPS = stepSetOf('kvm');
let env: TestWorkflowEnvironment;

before(async () => {
  // server1 has KVM and Open vSwitch installed already (image `ifupdown`): its scenarios are about the network
  // steps, resume and drift, and a second real KVM install would cost ≈ 6 min under TCG. server2 is `fresh`: the
  // real install, its resume after a worker SIGKILL, and its purge run there.
  freshLab(2, { images: ['ifupdown', 'fresh'] });
  env = await startTemporal();
  await workflowBundle();
});
after(async () => {
  await env?.teardown();
  stopLab();
});

async function inProcessWorker(taskQueue: string, steps: StepSet = LINUX_STEPS): Promise<Worker> {
  return createWorker({
    connection: env.nativeConnection,
    namespace: 'default',
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: createActivities(undefined, steps),
  });
}

/** Onboards with an in-process worker; resolves with the result or the failure. */
async function onboard(spec: ServerSpec, steps: StepSet = LINUX_STEPS) {
  const taskQueue = `lab-${spec.id}-${Date.now()}`;
  const worker = await inProcessWorker(taskQueue, steps);
  return worker.runUntil(async () => {
    const handle = await startOnboarding(env.client, spec, { taskQueue });
    const outcome = await handle.result().then(
      (result) => ({ ok: true as const, result }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    return { handle, outcome };
  });
}

function report(error: unknown): OnboardingFailureReport {
  assert.ok(error instanceof WorkflowFailedError, String(error));
  return (error.cause as { details?: unknown[] }).details?.[0] as OnboardingFailureReport;
}

/** Host facts the onboarding must produce, read independently of the step code. */
async function assertOnboarded(spec: ServerSpec): Promise<void> {
  const switchMac = await onHost(
    labSpecOfSwitch(),
    async (run) => JSON.parse(await run('ip -j link show po' + spec.id.replace(/^lab-server/, '')))[0].address as string,
  );
  await onHost(spec, async (run) => {
    const links = JSON.parse(await run('ip -j -d link show')) as Array<Record<string, any>>; // eslint-disable-line @typescript-eslint/no-explicit-any
    const bond = links.find((l) => l.ifname === 'bond0')!;
    const ad = bond.linkinfo.info_data.ad_info;
    assert.equal(ad.partner_mac, switchMac, 'LACP partner is the switch');
    assert.equal(ad.num_ports, 2);
    for (const m of ['eth1', 'eth2'])
      assert.equal(links.find((l) => l.ifname === m)!.linkinfo.info_slave_data.ad_aggregator_id, ad.aggregator, `${m} in the active aggregator`);
    await run('ping -c 1 -W 2 -I bond0.100 192.0.2.1');
    await run('ping -c 1 -W 2 -I bond0.200 198.18.1.1');
    assert.equal((await run('cat /sys/class/net/eth3/device/sriov_numvfs')).trim(), '4');
    assert.match(await run('virsh -c qemu:///system version'), /Running hypervisor: QEMU/);
  });
}

function labSpecOfSwitch(): ServerSpec {
  // The switch is reached like any lab VM; only its management block matters here.
  const s = labSpec('server1');
  const sw = labVm('switch');
  return { ...s, id: 'lab-switch', management: { ...s.management, port: sw.port, hostKey: sw.hostKey } };
}

/** Steps as on Linux, but the last one fails after applying — a fault a real host will not produce on cue. */
function failingAttach(): StepSet {
  const attach = LINUX_STEPS.attach as Step<unknown, unknown>;
  return {
    ...LINUX_STEPS,
    attach: {
      ...attach,
      verify: async (io) => {
        throw new VerificationError('injected failure after apply', { host: io.host.label, step: 'attach' });
      },
    },
  };
}

/** Steps as on Linux, but `step` fails after applying (for a remediation that must be compensated). */
function failingAfterApply(step: 'sriov'): StepSet {
  const impl = LINUX_STEPS[step] as Step<unknown, unknown>;
  return {
    ...LINUX_STEPS,
    [step]: {
      ...impl,
      verify: async (io: { host: { label: string } }) => {
        throw new VerificationError('injected failure after apply', { host: io.host.label, step });
      },
    },
  };
}

/** One drift check of a lab host, as the sweep would start it, on an in-process worker. */
async function checkDrift(
  spec: ServerSpec,
  mode: DriftMode,
  opts: { steps?: StepSet; during?: (h: WorkflowHandle<typeof driftCheck>) => Promise<void> } = {},
): Promise<DriftCheckResult> {
  const taskQueue = `lab-drift-${mode}-${Date.now()}`;
  const worker = await inProcessWorker(taskQueue, opts.steps);
  return worker.runUntil(async () => {
    const handle = await env.client.workflow.start(driftCheck, {
      taskQueue,
      workflowId: driftWorkflowId(spec.id),
      memo: { mode },
      args: [{ spec, mode, approvalTimeout: '10m' }],
    });
    await opts.during?.(handle);
    return handle.result();
  });
}

/** What an operator's hands do: delete a VLAN and lose the VF count (as a reboot without persistence would). */
async function breakHost(spec: ServerSpec): Promise<void> {
  await onHost(spec, async (run) => {
    await run('ip link del dev bond0.200');
    await run('echo 0 > /sys/class/net/eth3/device/sriov_numvfs');
  });
}

describe('onboarding real Debian hosts in the QEMU lab', () => {
  test('plan on a fresh host lists the pending changes and touches nothing', async () => {
    const spec = labSpec('server2');
    const before = await snapshot(spec);
    const plan = await planOnboarding(spec, sshConnector, LINUX_STEPS);
    const changed = plan.steps.filter((s) => s.changes.length).map((s) => s.step);
    assert.deepEqual(changed, ['bond', 'vlan', 'sriov', 'hypervisor', 'attach'], renderPlan(plan));
    assert.ok(
      plan.steps.every((s) => !s.error),
      renderPlan(plan),
    );
    assert.deepEqual(await snapshot(spec), before, 'host unchanged');
  });

  test('miscabling: swapped ports fail the cable check naming each NIC; nothing is applied', async () => {
    const spec = labSpec('server2', { swapCables: true });
    const before = await snapshot(spec);
    const { outcome } = await onboard(spec);
    assert.ok(!outcome.ok);
    const r = report(outcome.error);
    assert.equal(r.failedStep, 'cable');
    assert.match(r.error, /eth1\.lldp: expected leaf-01\/swp4, observed leaf-01\/swp3/);
    assert.match(r.error, /eth2\.lldp: expected leaf-01\/swp3, observed leaf-01\/swp4/);
    assert.deepEqual(await snapshot(spec), before, 'host unchanged');
  });

  // server2's chain (the real KVM install, ≈ 15 min under TCG, mostly the guest's own dpkg work) and server1's
  // (least privilege, resume, OVS, drift) touch different hosts and switch ports: they run side by side, each in
  // order — server1's chain mostly waits on SSH round trips, sudo and LACP timers while server2's guest installs.
  // The health faults change the switch's VLAN 100 that both use, so they run after both chains. (Measured once:
  // side by side AND the persistence lab overlapping was much slower; the persistence lab runs after this file.)
  describe('server2 and server1 side by side', { concurrency: 2 }, () => {
    describe('server2: the real KVM install, killed and resumed', { concurrency: 1 }, () => {
      test('install resumed, then rolled back: a worker SIGKILLed 30 s into the KVM install; the job is reattached (ran once), the attach fails, the purge restores the snapshot', async () => {
        const spec = labSpec('server2');
        const before = await snapshot(spec);
        const unit = `underlay-${spec.id}-hypervisor-install`;
        const taskQueue = `lab-chaos-${Date.now()}`;
        // Worker 1 is the real `underlay worker` process (real steps over SSH); it dies without warning mid-install.
        const w1 = spawnDetached(resolve(root, 'bin/underlay'), ['worker', '--task-queue', taskQueue], {
          env: { ...process.env, TEMPORAL_ADDRESS: env.address, TEMPORAL_NAMESPACE: 'default' },
          stdio: 'ignore',
        });
        try {
          const handle = await startOnboarding(env.client, spec, { taskQueue });
          // Bounded (≤ 10 min): the install job running on the host, then 30 s of it. One session for the poll:
          // a login costs the guest seconds of CPU that its install needs.
          const invocation = await onHost(spec, async (run) => {
            for (let i = 0; i < 300; i++) {
              const [state, inv] = (await run(`systemctl show -p ActiveState --value -p InvocationID --value ${unit}.service`)).trim().split('\n');
              if (state === 'active' && inv) return inv;
              await sleep(2_000);
            }
            return '';
          });
          assert.ok(invocation, 'the install job ran on the host');
          await sleep(30_000);
          const running = (await onHost(spec, (run) => run(`systemctl show -p SubState --value ${unit}.service`))).trim();
          assert.equal(running, 'running', 'still installing when the worker dies');
          w1.kill();
          const killedAt = Date.now();
          // Worker 2 finishes the onboarding — whose last step fails after applying (a fault injected on cue).
          const worker = await inProcessWorker(taskQueue, failingAttach());
          const outcome = await worker.runUntil(
            handle.result().then(
              () => ({ ok: true as const }),
              (error: unknown) => ({ ok: false as const, error }),
            ),
          );
          assert.ok(!outcome.ok);
          const r = report(outcome.error);
          assert.equal(r.failedStep, 'attach');
          assert.deepEqual(
            r.compensations.map((c) => [c.step, c.outcome]),
            [
              ['attach', 'restored'],
              ['hypervisor', 'restored'],
              ['sriov', 'restored'],
              ['vlan', 'restored'],
              ['bond', 'restored'],
            ],
            JSON.stringify(r.compensations),
          );
          assert.equal(r.timeline?.find((t) => t.step === 'hypervisor')?.attempts, 2, 'the install step ran again after the kill');
          await onHost(spec, async (run) => {
            // One run of the install unit — the invocation seen before the kill — and apt configured qemu once.
            const invocations = new Set(
              (await run(`journalctl -q --no-pager -o json _SYSTEMD_UNIT=${unit}.service`))
                .trim()
                .split('\n')
                .filter(Boolean)
                .map((l) => (JSON.parse(l) as { _SYSTEMD_INVOCATION_ID?: string })._SYSTEMD_INVOCATION_ID),
            );
            assert.deepEqual([...invocations], [invocation], 'the job was reattached, never started again');
            assert.equal((await run(`journalctl -q --no-pager -o cat _SYSTEMD_UNIT=${unit}.service | grep -c '^Setting up qemu-system-x86 '`)).trim(), '1');
            assert.equal((await run('dpkg --audit; ls -A /var/lib/dpkg/updates')).trim(), '', 'dpkg --audit clean');
            // systemctl show separates the units' answers with an empty line.
            const loaded = (await run(`systemctl show -p LoadState --value ${unit}.service ${unit.replace(/install$/, 'purge')}.service`))
              .split('\n')
              .filter(Boolean);
            assert.deepEqual(loaded, ['not-found', 'not-found'], 'jobs released');
          });
          assert.deepEqual(await snapshot(spec), before, 'the package set (and network) of before');
          console.log(`install resumed + rolled back: the onboarding ended ${Math.round((Date.now() - killedAt) / 1000)} s after the worker was killed`);
        } finally {
          w1.kill();
        }
      });
    });

    describe('server1: least privilege, resume, Open vSwitch, drift', { concurrency: 1 }, () => {
      // First, on the host as its image booted: the network steps applied and compensated as a non-root login
      // restricted to the sudoers fragment (least-privilege.ts); the host ends as it began.
      describeLeastPrivilege('server1', onboard);

      test('resume: the worker dies during the bond step; a new worker finishes without repeating steps; macvtap attached', async () => {
        const spec = labSpec('server1');
        const taskQueue = `lab-resume-${Date.now()}`;
        const { kill: killWorker } = spawnDetached(resolve(root, 'bin/underlay'), ['worker', '--task-queue', taskQueue], {
          env: { ...process.env, TEMPORAL_ADDRESS: env.address, TEMPORAL_NAMESPACE: 'default' },
          stdio: 'ignore',
        });
        try {
          const handle = await startOnboarding(env.client, spec, { taskQueue });
          // Bounded wait (≤ 5 min) for the bond step to be running, then kill the worker without warning.
          let killed = false;
          for (let i = 0; i < 1500 && !killed; i++) {
            const st = await handle.query(statusQuery).catch(() => undefined);
            if (st?.currentStep === 'bond' && st.steps.bond.state === 'running') {
              killWorker();
              killed = true;
            } else await sleep(200);
          }
          assert.ok(killed, 'caught the bond step running');
          const worker = await inProcessWorker(taskQueue);
          const result = await worker.runUntil(handle.result());
          // The lab's data NICs boot admin-up, so the cable check has nothing to change, and KVM is in this image;
          // every other step applies.
          assert.equal(result.steps.cable.state, 'unchanged');
          assert.equal(result.steps.hypervisor.state, 'unchanged');
          for (const s of STEPS.filter((x) => x !== 'cable' && x !== 'hypervisor' && x !== 'dpdk')) assert.equal(result.steps[s].state, 'done', s);
          assert.ok((result.steps.bond.attempts ?? 0) >= 2, 'bond retried on the new worker');
          const history = await handle.fetchHistory();
          const scheduled = (history.events ?? [])
            .filter((e) => e.activityTaskScheduledEventAttributes)
            .map((e) => e.activityTaskScheduledEventAttributes!.activityType!.name);
          assert.deepEqual(
            scheduled,
            ['checkCabling', 'configureBond', 'configureVlans', 'enableSriov', 'installHypervisor', 'attachNetwork'],
            'each step scheduled once: completed steps are not repeated',
          );
          await assertOnboarded(spec);
          await onHost(spec, async (run) => assert.match(await run('virsh -c qemu:///system net-info underlay-macvtap'), /Active:\s+yes/));
        } finally {
          killWorker();
        }
      });

      test('OVS attach: the same host re-onboarded with an Open vSwitch attach (installed with the image); everything else already holds', async () => {
        const spec = labSpec('server1', { attach: 'ovs' });
        const { outcome } = await onboard(spec);
        assert.ok(outcome.ok, String(!outcome.ok && outcome.error));
        for (const s of ['cable', 'bond', 'vlan', 'sriov', 'hypervisor'] as const) assert.equal(outcome.result.steps[s].state, 'unchanged', s);
        assert.equal(outcome.result.steps.attach.state, 'done');
        await onHost(spec, async (run) => {
          assert.deepEqual((await run('ovs-vsctl list-ports br-underlay')).trim().split('\n').sort(), ['bond0', 'vm-v100']);
          assert.equal((await run('ovs-vsctl get port vm-v100 tag')).trim(), '100');
        });
        await assertOnboarded(spec);
        const plan = await planOnboarding(spec, sshConnector, LINUX_STEPS);
        assert.ok(
          plan.steps.every((s) => !s.changes.length && !s.error),
          renderPlan(plan),
        );
      });

      describe('drift on the onboarded host (server1, OVS attach)', () => {
        const spec = labSpec('server1', { attach: 'ovs' });
        let clean: Record<string, unknown>;
        let drifted: Record<string, unknown>;

        test('report: a deleted VLAN and a lost VF count are exactly the drift; nothing is changed', async () => {
          clean = await snapshot(spec);
          await breakHost(spec);
          drifted = await snapshot(spec);
          assert.notDeepEqual(drifted, clean);
          const r = await checkDrift(spec, 'report');
          assert.equal(r.status, 'drifted', JSON.stringify(r));
          assert.deepEqual(r.driftedSteps, ['vlan', 'sriov']);
          assert.deepEqual(await snapshot(spec), drifted, 'report changes nothing');
        });

        test('a remediation that fails is compensated back to the drifted state and reported', async () => {
          const r = await checkDrift(spec, 'remediate', { steps: failingAfterApply('sriov') });
          assert.equal(r.status, 'failed', JSON.stringify(r));
          assert.equal(r.remediation?.failedStep, 'sriov');
          assert.match(r.remediation?.error ?? '', /injected failure after apply/);
          assert.deepEqual(
            r.remediation?.compensations?.map((c) => [c.step, c.outcome]),
            [
              ['sriov', 'restored'],
              ['vlan', 'restored'],
            ],
          );
          assert.deepEqual(await snapshot(spec), drifted, 'back to the drifted state, not half-fixed');
        });

        test('remediate: re-applies only the drifted steps and verifies; the host is as onboarded', async () => {
          const r = await checkDrift(spec, 'remediate');
          assert.equal(r.status, 'remediated', JSON.stringify(r));
          assert.deepEqual(r.remediation?.steps, ['vlan', 'sriov']);
          await assertOnboarded(spec);
          assert.deepEqual(await snapshot(spec), clean);
        });

        test('approve: nothing changes until approved, then the drift is remediated', async () => {
          await breakHost(spec);
          const r = await checkDrift(spec, 'approve', {
            during: async (handle) => {
              let phase: string | undefined;
              for (let i = 0; i < 600 && phase !== 'awaiting-approval'; i++) {
                phase = (await handle.query(driftProgressQuery).catch(() => undefined))?.phase;
                if (phase !== 'awaiting-approval') await sleep(200);
              }
              assert.equal(phase, 'awaiting-approval');
              assert.deepEqual(await snapshot(spec), drifted, 'nothing changed while waiting for approval');
              const answer = await approveDrift(env.client, spec.id, { by: 'lab' });
              assert.deepEqual(answer, { serverId: spec.id, decision: 'approved', steps: ['vlan', 'sriov'] });
            },
          });
          assert.equal(r.status, 'remediated', JSON.stringify(r));
          assert.equal(r.remediation?.approvedBy, 'lab');
          assert.deepEqual(await snapshot(spec), clean);
        });
      });
    });
  });

  // Health probes on the same host, as the drift scenarios leave it (clean): health-faults.ts.
  describeHealthFaults(() => ({ env, spec: labSpec('server1', { attach: 'ovs' }) }));
});
