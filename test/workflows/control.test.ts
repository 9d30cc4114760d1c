/**
 * What an operator sees and does while onboardings run, on a real Temporal dev server with one worker over
 * fake hosts (test/helpers/fake-steps.ts): the summaries and details the Web UI shows, search attributes and
 * `underlay list`, pause / resume / approve / cancel through the CLI's functions, and `status --watch` as it
 * renders in a real pseudo-terminal (util-linux `script`).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createActivities, type StepSet } from '../../src/activities';
import type { Step } from '../../src/activities/step';
import { approveOnboardingStep, cancelOnboarding, OnboardingControlError, pauseOnboarding, resumeOnboarding } from '../../src/cli/control';
import { buildOnboardingQuery, InvalidFilterError, listOnboardings, renderList, type ListFilters } from '../../src/cli/list';
import { startOnboarding } from '../../src/cli/onboarding';
import { renderStatus } from '../../src/cli/render';
import { driftWorkflowId } from '../../src/common/config';
import { NotConvergedError, VerificationError } from '../../src/common/errors';
import { SA_OUTCOME, SA_STEP } from '../../src/common/search-attributes';
import { STEPS, type StepName } from '../../src/steps';
import { loadSpecFile } from '../../src/spec/load';
import type { ServerSpec } from '../../src/spec/server';
import type { driftCheck } from '../../src/workflows/drift';
import { stepSummary } from '../../src/steps';
import { statusQuery, type CancelAnswer, type OnboardingFailureReport, type OnboardingStatus } from '../../src/workflows/messages';
import { createWorker } from '../../src/workers/worker';
import { FakeFleet, fleetSteps, nullConnector } from '../helpers/fake-steps';
import { startTemporal, workflowBundle, runInBackground, type BackgroundWorker } from '../helpers/temporal';
import { rejectionOf } from '../helpers/failures';
import { eventually as until } from '../helpers/eventually';

/** The steps this file's spec (examples/kvm-macvtap.yaml) runs: every step but dpdk, whose section it does not set. */
const RUNBOOK = STEPS.filter((s) => s !== 'dpdk');

const root = resolve(__dirname, '../..');
let env: TestWorkflowEnvironment;
let baseSpec: ServerSpec;
let worker: BackgroundWorker | undefined;
const fleet = new FakeFleet();
const taskQueue = `control-${process.pid}`;
let seq = 0;

/** Step applies that wait for the test to let them go: a step that is running for as long as the test wants. */
class Latches {
  private readonly held = new Map<string, { entered: () => void; released: Promise<void>; release: () => void; enteredP: Promise<void> }>();

  hold(serverId: string, step: StepName): { entered: Promise<void>; release: () => void } {
    let entered!: () => void;
    let release!: () => void;
    const enteredP = new Promise<void>((r) => (entered = r));
    const released = new Promise<void>((r) => (release = r));
    this.held.set(`${serverId}/${step}`, { entered, released, release, enteredP });
    return { entered: enteredP, release };
  }

  async pass(serverId: string, step: StepName): Promise<void> {
    const l = this.held.get(`${serverId}/${step}`);
    if (!l) return;
    l.entered();
    await l.released;
  }

  releaseAll(): void {
    for (const l of this.held.values()) l.release();
  }
}
const latches = new Latches();

function latched(steps: StepSet): StepSet {
  return Object.fromEntries(
    RUNBOOK.map((s) => {
      const base = steps[s] as Step<unknown>;
      const step: Step<unknown> = {
        ...base,
        apply: async (io, observed, changes) => {
          await latches.pass(io.spec.id, s);
          return base.apply(io, observed, changes);
        },
      };
      return [s, step];
    }),
  ) as StepSet;
}

before(async () => {
  [env, baseSpec] = await Promise.all([startTemporal(), loadSpecFile('examples/kvm-macvtap.yaml')]);
  worker = runInBackground(
    await createWorker({
      connection: env.nativeConnection,
      namespace: 'default',
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities(nullConnector, latched(fleetSteps(fleet))),
    }),
  );
});
after(async () => {
  latches.releaseAll();
  await worker?.stop();
  await env?.teardown();
});

function nextSpec(over: Partial<ServerSpec> = {}): ServerSpec {
  return { ...baseSpec, id: `c${process.pid}-${++seq}`, ...over };
}

const status = (h: WorkflowHandle) => h.query(statusQuery);
const untilPhase = (h: WorkflowHandle, phase: OnboardingStatus['phase']) =>
  until(`phase ${phase}`, async () => ((s) => s.phase === phase && s)(await status(h)));

async function searchAttributes(h: WorkflowHandle) {
  const sa = (await h.describe()).typedSearchAttributes;
  return { step: sa.get(SA_STEP), outcome: sa.get(SA_OUTCOME) };
}

function failure(err: unknown): { type?: string; message: string; report: OnboardingFailureReport } {
  assert.ok(err instanceof WorkflowFailedError, `expected WorkflowFailedError, got ${String(err)}`);
  const cause = err.cause as { type?: string; message: string; details?: unknown[] };
  return { type: cause.type, message: cause.message, report: cause.details?.[0] as OnboardingFailureReport };
}

/** The summaries of the activities the workflow scheduled, in order, from its event history. */
async function activitySummaries(h: WorkflowHandle): Promise<Array<{ type: string; summary?: string }>> {
  const history = await h.fetchHistory();
  return (history.events ?? [])
    .filter((e) => e.activityTaskScheduledEventAttributes)
    .map((e) => ({
      type: e.activityTaskScheduledEventAttributes!.activityType!.name!,
      summary: e.userMetadata?.summary ? defaultPayloadConverter.fromPayload<string>(e.userMetadata.summary) : undefined,
    }));
}

describe('what the Web UI shows', () => {
  test('static summary and details, a summary on every step activity, live details, search attributes', async () => {
    const spec = nextSpec();
    const h = await startOnboarding(env.client, spec, { taskQueue });
    const result = await h.result();
    const desc = await h.describe();
    assert.equal(await desc.staticSummary(), `Onboard ${spec.id} → kvm (fra1/r12)`);
    const details = (await desc.staticDetails()) ?? '';
    assert.match(details, /\*\*Planned steps\*\*/);
    for (const s of RUNBOOK) assert.ok(details.includes(stepSummary(s, spec)), `details list ${s}`);
    assert.ok(details.includes('2. **bond** — bond0 ← ens1f0,ens1f1 · 802.3ad · fast'), details);

    const acts = await activitySummaries(h);
    assert.deepEqual(
      acts.map((a) => a.type),
      ['checkCabling', 'configureBond', 'configureVlans', 'enableSriov', 'installHypervisor', 'attachNetwork'],
    );
    assert.deepEqual(
      acts.map((a) => a.summary),
      RUNBOOK.map((s) => stepSummary(s, spec)),
    );
    assert.equal(acts[1]!.summary, 'bond0 ← ens1f0,ens1f1 · 802.3ad · fast');

    // Current details: what the UI reads with the built-in metadata query (a worker answers it).
    const meta = await h.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
    assert.match(meta.currentDetails ?? '', /\*\*c\d+-\d+\*\* · onboarded/);
    assert.ok(
      (meta.currentDetails ?? '').includes(`| ✓ bond | done · `) && (meta.currentDetails ?? '').includes(` s | ${stepSummary('bond', spec)} |`),
      meta.currentDetails,
    );
    assert.equal(result.timeline?.length, 6);
    assert.deepEqual(await searchAttributes(h), { step: 'done', outcome: 'onboarded' });
  });

  test('a failure carries its timeline (step, attempts, error, duration, rollback) in the report and the details', async () => {
    const spec = nextSpec();
    const host = fleet.host(spec.id);
    host.faults = [
      { step: 'bond', phase: 'verify', times: 1, error: () => new NotConvergedError('LACP negotiating', { step: 'bond' }) },
      { step: 'vlan', phase: 'verify', error: () => new VerificationError('gateway 198.18.100.1 does not answer', { step: 'vlan' }) },
    ];
    const h = await startOnboarding(env.client, spec, { taskQueue });
    const err = await rejectionOf(h.result(), 'the onboarding to fail');
    const { type, report } = failure(err);
    assert.equal(type, 'OnboardingFailed');
    const t = report.timeline!;
    assert.deepEqual(
      t.map((e) => [e.step, e.result, e.attempts, e.compensation?.outcome]),
      [
        ['cable', 'done', 1, 'restored'],
        ['bond', 'done', 2, 'restored'],
        ['vlan', 'failed', 1, 'restored'],
      ],
    );
    assert.match(t[2]!.error!, /gateway 198\.18\.100\.1 does not answer/);
    assert.ok(t[1]!.durationMs >= 1500, `bond waited for its retry: ${t[1]!.durationMs} ms`);
    for (const e of t) assert.ok(e.compensation!.durationMs >= 0);
    const meta = await h.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
    assert.match(meta.currentDetails ?? '', /\*\*Timeline\*\*/);
    assert.match(
      meta.currentDetails ?? '',
      /\| VLAN \| failed · 1 attempt · [\d.]+ s \| step vlan: gateway 198\.18\.100\.1 does not answer \| restored · [\d.]+ s \|/,
    );
    assert.match(meta.currentDetails ?? '', /\| bond \| done · 2 attempts · [\d.]+ s \| – \| restored · [\d.]+ s \|/);
    const acts = await activitySummaries(h);
    assert.deepEqual(
      acts.filter((a) => a.type.startsWith('rollback')).map((a) => [a.type, a.summary]),
      [
        ['rollbackVlans', `undo VLAN: restore the pre-state of ${stepSummary('vlan', spec)}`],
        ['rollbackBond', `undo bond: restore the pre-state of ${stepSummary('bond', spec)}`],
        ['rollbackCabling', `undo cable check: restore the pre-state of ${stepSummary('cable', spec)}`],
      ],
    );
    assert.deepEqual(await searchAttributes(h), { step: 'rollback:cable', outcome: 'failed' });
    // The terminal rendering of the same status shows the timeline too.
    assert.match(renderStatus(await status(h)), /timeline:\n\s+cable check\s+done\s+1 attempt .*→ rollback restored/);
  });
});

describe('operator control (updates with validators)', () => {
  test('pause before the next step, refused twice; resume; refused once finished', async () => {
    const spec = nextSpec();
    const bond = latches.hold(spec.id, 'bond');
    const h = await startOnboarding(env.client, spec, { taskQueue });
    await bond.entered;
    const a = await pauseOnboarding(env.client, spec.id, { by: 'alice', reason: 'change window' });
    assert.equal(a.message, 'pausing before vlan once bond finishes');
    await assert.rejects(
      pauseOnboarding(env.client, spec.id, { by: 'bob' }),
      (e: unknown) => e instanceof OnboardingControlError && /already pausing \(by alice\)/.test(e.message),
    );
    await assert.rejects(
      approveOnboardingStep(env.client, spec.id),
      (e: unknown) => e instanceof OnboardingControlError && /nothing of .* awaits approval/.test(e.message),
    );
    bond.release();
    const st = await untilPhase(h, 'paused');
    assert.equal(st.control?.waitingBefore, 'vlan');
    assert.equal(st.control?.pause?.by, 'alice');
    assert.equal(st.steps.bond.state, 'done');
    assert.equal(st.steps.vlan.state, 'pending');
    assert.deepEqual(await until('paused search attributes', async () => ((sa) => sa.outcome === 'paused' && sa)(await searchAttributes(h))), {
      step: 'vlan',
      outcome: 'paused',
    });
    assert.match(renderStatus(st), /⏸ paused before VLAN by alice: resume with `underlay resume c\d+-\d+`/);
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(fleet.host(spec.id).applyCalls(), ['cable', 'bond'], 'nothing runs while paused');

    const r = await resumeOnboarding(env.client, spec.id, { by: 'alice' });
    assert.equal(r.message, 'resumed by alice');
    const result = await h.result();
    assert.ok(RUNBOOK.every((s) => result.steps[s].state === 'done'));
    await assert.rejects(
      resumeOnboarding(env.client, spec.id),
      (e: unknown) => e instanceof OnboardingControlError && /not running \(onboard-c\d+-\d+ completed\)/.test(e.message),
    );
    // A refused update leaves no trace in the history; accepted ones do.
    const updates = (await h.fetchHistory()).events?.filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes) ?? [];
    assert.equal(updates.length, 2);
  });

  test('a gated step waits for approval; wrong step and resume are refused; approve lets it run', async () => {
    const spec = nextSpec();
    await assert.rejects(
      startOnboarding(env.client, nextSpec(), { taskQueue, approvalBefore: ['hypervisor', 'reboot'] }),
      /--approve-before: "reboot" is not a step/,
    );
    const h = await startOnboarding(env.client, spec, { taskQueue, approvalBefore: ['hypervisor'] });
    const st = await untilPhase(h, 'awaiting-approval');
    assert.equal(st.control?.waitingBefore, 'hypervisor');
    assert.deepEqual(fleet.host(spec.id).applyCalls(), ['cable', 'bond', 'vlan', 'sriov']);
    assert.deepEqual(await until('awaiting search attributes', async () => ((sa) => sa.outcome === 'awaiting-approval' && sa)(await searchAttributes(h))), {
      step: 'hypervisor',
      outcome: 'awaiting-approval',
    });
    assert.match(renderStatus(st), /⏳ hypervisor install awaits approval: `underlay approve c\d+-\d+ --step hypervisor`/);
    assert.match((await (await h.describe()).staticDetails()) ?? '', /\*\*hypervisor install\*\* — .* · _waits for approval_/);
    await assert.rejects(
      approveOnboardingStep(env.client, spec.id, { step: 'attach' }),
      (e: unknown) => e instanceof OnboardingControlError && /attach is not awaiting approval; hypervisor is/.test(e.message),
    );
    await assert.rejects(
      resumeOnboarding(env.client, spec.id),
      (e: unknown) => e instanceof OnboardingControlError && /is not paused \(phase awaiting-approval\)/.test(e.message),
    );
    const a = await approveOnboardingStep(env.client, spec.id, { step: 'hypervisor', by: 'carol' });
    assert.equal(a.message, 'approved hypervisor');
    const result = await h.result();
    assert.equal(result.steps.attach.state, 'done');
    const final = await status(h);
    assert.deepEqual(
      final.control?.approvals.map((x) => [x.step, x.by]),
      [['hypervisor', 'carol']],
    );
    assert.equal((await searchAttributes(h)).outcome, 'onboarded');
  });

  test('cancel stops the running step and rolls back everything, answering with the rollback', async () => {
    const spec = nextSpec();
    const sriov = latches.hold(spec.id, 'sriov');
    const h = await startOnboarding(env.client, spec, { taskQueue });
    await sriov.entered;
    const started = Date.now();
    const a = (await cancelOnboarding(env.client, spec.id, { by: 'dave', reason: 'wrong rack' })) as CancelAnswer;
    assert.equal(a.cancelledAt, 'sriov');
    assert.deepEqual(
      a.compensations.map((c) => c.step),
      ['sriov', 'vlan', 'bond', 'cable'],
    );
    assert.match(a.message, /^cancelled at sriov — rollback: sriov already-restored, vlan restored, bond restored, cable restored$/);
    const err = await rejectionOf(h.result(), 'the onboarding to fail');
    const f = failure(err);
    assert.equal(f.type, 'OnboardingCancelled');
    assert.match(f.message, /cancelled by dave \(wrong rack\) during SR-IOV enable \(sriov\) — rollback: /);
    assert.equal(f.report.cancelledBy?.by, 'dave');
    assert.deepEqual(
      f.report.timeline?.map((e) => [e.step, e.result]),
      [
        ['cable', 'done'],
        ['bond', 'done'],
        ['vlan', 'done'],
        ['sriov', 'cancelled'],
      ],
    );
    const host = fleet.host(spec.id);
    for (const s of RUNBOOK) assert.equal(host.state[s], 'pristine');
    assert.ok(!host.applyCalls().includes('sriov'), 'the latched apply never ran');
    assert.deepEqual(await searchAttributes(h), { step: 'rollback:cable', outcome: 'cancelled' });
    const st = await status(h);
    assert.equal(st.phase, 'cancelled');
    assert.equal(st.steps.sriov.state, 'cancelled', 'a step cancelled mid-run is cancelled, not failed');
    assert.equal(st.steps.sriov.error, 'cancelled by dave');
    await assert.rejects(cancelOnboarding(env.client, spec.id), (e: unknown) => e instanceof OnboardingControlError && /not running/.test(e.message));
    assert.ok(Date.now() - started < 15_000);
  });

  test('cancel while paused rolls back the steps done so far; a detached cancel returns at acceptance', async () => {
    const spec = nextSpec();
    const bond = latches.hold(spec.id, 'bond');
    const h = await startOnboarding(env.client, spec, { taskQueue });
    await bond.entered;
    await pauseOnboarding(env.client, spec.id);
    bond.release();
    await untilPhase(h, 'paused');
    assert.deepEqual(await cancelOnboarding(env.client, spec.id, { detach: true }), { accepted: true });
    const { type, report } = failure(await h.result().catch((e: unknown) => e));
    assert.equal(type, 'OnboardingCancelled');
    assert.equal(report.failedStep, null);
    assert.deepEqual(
      report.compensations.map((c) => [c.step, c.outcome]),
      [
        ['bond', 'restored'],
        ['cable', 'restored'],
      ],
    );
    assert.deepEqual(fleet.host(spec.id).applyCalls(), ['cable', 'bond']);
  });
});

describe('underlay list: visibility queries over the search attributes', () => {
  test('filters by site, rack, hypervisor, step, outcome and drift; values are checked before any query', async () => {
    const site = `s${process.pid}`;
    const ok1 = nextSpec({ site, rack: 'r1' });
    const ok2 = nextSpec({ site, rack: 'r2' });
    const bad = nextSpec({ site, rack: 'r1' });
    const waiting = nextSpec({ site, rack: 'r2' });
    const elsewhere = nextSpec({ site: `${site}x`, rack: 'r1' });
    fleet.host(bad.id).faults = [{ step: 'sriov', phase: 'verify', error: () => new VerificationError('no VFs', { step: 'sriov' }) }];
    const handles = await Promise.all([ok1, ok2, bad, elsewhere].map((s) => startOnboarding(env.client, s, { taskQueue })));
    await Promise.all(handles.map((h) => h.result().catch(() => undefined)));
    const w = await startOnboarding(env.client, waiting, { taskQueue, approvalBefore: ['hypervisor'] });
    await untilPhase(w, 'awaiting-approval');
    // A drift check found ok2 drifted (report mode: nothing changed).
    fleet.host(ok2.id).drift('vlan');
    await env.client.workflow.execute<typeof driftCheck>('driftCheck', {
      taskQueue,
      workflowId: driftWorkflowId(ok2.id),
      args: [{ spec: ok2, mode: 'report' }],
    });

    const ids = async (f: ListFilters, expected: number) =>
      until(`list ${JSON.stringify(f)}`, async () => {
        const r = await listOnboardings(env.client, f);
        return r.rows.length === expected && r.rows.map((x) => x.serverId).sort();
      });
    assert.deepEqual(await ids({ site: [site] }, 4), [ok1.id, ok2.id, bad.id, waiting.id].sort());
    assert.deepEqual(await ids({ site: [site], rack: ['r1'] }, 2), [ok1.id, bad.id].sort());
    assert.deepEqual(await ids({ site: [site], outcome: ['failed'] }, 1), [bad.id]);
    assert.deepEqual(await ids({ site: [site], outcome: ['onboarded'] }, 2), [ok1.id, ok2.id].sort());
    assert.deepEqual(await ids({ site: [site], step: ['hypervisor'], outcome: ['awaiting-approval'] }, 1), [waiting.id]);
    assert.deepEqual(await ids({ site: [site], step: ['rollback:cable'] }, 1), [bad.id]);
    assert.deepEqual(await ids({ site: [site, `${site}x`], hypervisor: ['kvm'], rack: ['r1'] }, 3), [ok1.id, bad.id, elsewhere.id].sort());
    assert.deepEqual(await ids({ site: [site], drift: ['drifted'] }, 1), [ok2.id]);
    assert.deepEqual(await ids({ site: [site], drift: ['none'], outcome: ['onboarded'] }, 1), [ok1.id]);

    const r = await listOnboardings(env.client, { site: [site], outcome: ['awaiting-approval'] });
    const table = renderList(r.rows);
    assert.match(table, /^SERVER\s+SITE\s+RACK\s+HYPERVISOR\s+STEP\s+OUTCOME\s+DRIFT\s+STARTED\s+STATUS$/m);
    assert.match(table, new RegExp(`^${waiting.id}\\s+${site}\\s+r2\\s+kvm\\s+hypervisor\\s+awaiting-approval\\s+none\\s+\\S+\\s+running$`, 'm'));
    assert.equal(r.queries[0], `WorkflowType = 'onboardServer' AND UnderlaySite = '${site}' AND UnderlayOutcome = 'awaiting-approval'`);

    assert.equal(
      buildOnboardingQuery({ site: ['ams1', 'fra1'], rack: ['r12'], step: ['rollback:bond'], outcome: ['failed'], hypervisor: ['kvm'] }),
      "WorkflowType = 'onboardServer' AND UnderlaySite IN ('ams1', 'fra1') AND UnderlayRack = 'r12' AND UnderlayHypervisor = 'kvm' AND UnderlayStep = 'rollback:bond' AND UnderlayOutcome = 'failed'",
    );
    for (const f of [
      { site: ["ams1' OR WorkflowType != '"] },
      { rack: ['r1"'] },
      { step: ['bond) OR (1=1'] },
      { outcome: ['done'] },
      { drift: ['dirty'] },
      { hypervisor: ['vmware'] },
    ] as ListFilters[]) {
      await assert.rejects(listOnboardings(env.client, f), InvalidFilterError, JSON.stringify(f));
    }
    await approveOnboardingStep(env.client, waiting.id);
    await w.result();
  });
});

// `script` (bsdutils, installed by scripts/setup.sh) gives the CLI a pseudo-terminal; without it this fails, never skips.
describe('underlay status --watch in a terminal', () => {
  test('one live frame redrawn in place: progress bar, spinner, elapsed per step, attempts, the approval wait', async () => {
    const spec = nextSpec();
    fleet.host(spec.id).faults = [{ step: 'bond', phase: 'verify', times: 2, error: () => new NotConvergedError('LACP negotiating', { step: 'bond' }) }];
    const sriov = latches.hold(spec.id, 'sriov');
    const h = await startOnboarding(env.client, spec, { taskQueue, approvalBefore: ['bond'] });
    await untilPhase(h, 'awaiting-approval');

    const cmd = `stty cols 150 rows 40; exec ${join(root, 'bin/underlay')} status ${spec.id} --watch`;
    const child = spawn('script', ['-qfec', cmd, '/dev/null'], {
      cwd: root,
      env: { ...process.env, TEMPORAL_ADDRESS: env.address, TEMPORAL_NAMESPACE: 'default' },
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (out += d.toString('utf8')));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      await until('the approval wait on screen', async () => out.includes('awaits approval'), 30_000);
      await approveOnboardingStep(env.client, spec.id, { step: 'bond' });
      await until('the bond retry on screen', async () => /bond\s+running .* · attempt [23]\r?\n\s+↻ attempt [23] after: .*LACP negotiating/.test(out), 30_000);
      await sriov.entered;
      await until('SR-IOV running on screen', async () => /SR-IOV enable\s+running/.test(out));
      await new Promise((r) => setTimeout(r, 1500));
      sriov.release();
      assert.equal(await exited, 0, out);
    } finally {
      child.kill();
    }
    const frames = out.split(/\x1b\[\d+A\r/); // eslint-disable-line no-control-regex
    assert.ok(frames.length > 10, `redrawn in place (${frames.length} frames)`);
    assert.ok(out.startsWith('\x1b[?25l') || out.includes('\x1b[?25l'), 'cursor hidden while drawing');
    assert.ok(out.includes('\x1b[?25h'), 'and shown again');
    const spinners = new Set([...out.matchAll(/([⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]) SR-IOV enable/g)].map((m) => m[1]));
    assert.ok(spinners.size >= 3, `the running step spins (${[...spinners].join('')})`);
    const elapsed = new Set([...out.matchAll(/SR-IOV enable\s+running\s+(\d+\.\d)s/g)].map((m) => m[1]));
    assert.ok(elapsed.size >= 3, `its elapsed time ticks (${[...elapsed].join(', ')})`);
    assert.match(out, /\[█+░+\] 3\/6/);
    assert.match(out, /\[█{18}\] 6\/6/);
    assert.match(out, /✓ bond\s+done\s+[\d.]+s\s+bond0 ← ens1f0,ens1f1 · 802\.3ad · fast · (needs approval|approved by \S+) · 3 attempts/);
    const last = frames[frames.length - 1]!;
    assert.match(last, new RegExp(`${spec.id}: onboarded`));
    assert.doesNotMatch(last, /[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]/, 'the final frame is still');
  });
});

describe('underlay status when no worker runs', () => {
  test('falls back to what the server knows and says that no worker polls the task queue', async () => {
    const spec = nextSpec();
    const orphanQueue = `nobody-polls-${spec.id}`;
    await startOnboarding(env.client, spec, { taskQueue: orphanQueue });
    const r = spawnSync(join(root, 'bin/underlay'), ['status', spec.id], {
      cwd: root,
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, TEMPORAL_ADDRESS: env.address, TEMPORAL_NAMESPACE: 'default' },
    });
    assert.equal(r.status, 3, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^${spec.id}: running — workflow running$`, 'm'));
    assert.match(r.stdout, new RegExp(`no worker polls task queue "${orphanQueue}"`));
    assert.match(r.stdout, new RegExp(`underlay worker --task-queue ${orphanQueue}`));
    assert.doesNotMatch(r.stderr, /Failed to query/);
    await env.client.workflow.getHandle(`onboard-${spec.id}`).terminate('test over');
  });
});
