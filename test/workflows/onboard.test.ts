/**
 * The onboarding saga on a real Temporal dev server. The six steps run through the real activity runner
 * against an in-memory host with injected faults (test/helpers/fake-steps.ts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createActivities } from '../../src/activities';
import { createWorker } from '../../src/workers/worker';
import { NotConvergedError, VerificationError, UnexpectedOutputError } from '../../src/common/errors';
import { STEPS, type StepName } from '../../src/steps';
import { SA_OUTCOME, SA_SERVER_ID, SA_STEP } from '../../src/common/search-attributes';
import { OnboardingAlreadyRunningError, startOnboarding, startRollback } from '../../src/cli/onboarding';
import { loadRollback } from '../../src/activities/rollback';
import { onboardingState } from '../../src/activities/drift';
import { loadSpecFile } from '../../src/spec/load';
import type { ServerSpec } from '../../src/spec/server';
import type { OnboardingFailureReport } from '../../src/workflows/messages';
import { statusQuery } from '../../src/workflows/messages';
import { FakeHost, fakeSteps, nullConnector, type Fault } from '../helpers/fake-steps';
import { startTemporal, workflowBundle } from '../helpers/temporal';

/** The steps this file's spec (examples/kvm-macvtap.yaml) runs: every step but dpdk, whose section it does not set. */
const RUNBOOK = STEPS.filter((s) => s !== 'dpdk');

let env: TestWorkflowEnvironment;
let baseSpec: ServerSpec;
let seq = 0;

before(async () => {
  [env, baseSpec] = await Promise.all([startTemporal(), loadSpecFile('examples/kvm-macvtap.yaml')]);
  await workflowBundle();
});
after(async () => {
  await env?.teardown();
});

function nextSpec(): ServerSpec {
  seq++;
  return { ...baseSpec, id: `wf-${process.pid}-${seq}` };
}

/** Runs one onboarding with a fresh worker over `host`; resolves with the result or the failure. */
async function onboard(host: FakeHost, spec = nextSpec(), during?: (h: Awaited<ReturnType<typeof startOnboarding>>) => Promise<void>) {
  const taskQueue = `tq-${spec.id}`;
  const worker = await createWorker({
    connection: env.nativeConnection,
    namespace: 'default',
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: createActivities(nullConnector, fakeSteps(host)),
  });
  return worker.runUntil(async () => {
    const handle = await startOnboarding(env.client, spec, { taskQueue });
    if (during) await during(handle);
    const outcome = await handle.result().then(
      (result) => ({ ok: true as const, result }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    return { handle, spec, outcome };
  });
}

function failureReport(error: unknown): OnboardingFailureReport {
  assert.ok(error instanceof WorkflowFailedError, `expected WorkflowFailedError, got ${String(error)}`);
  const cause = error.cause as { type?: string; details?: unknown[] };
  assert.equal(cause.type, 'OnboardingFailed');
  return cause.details?.[0] as OnboardingFailureReport;
}

describe('onboardServer on a real Temporal dev server', () => {
  test('happy path: all six steps apply in runbook order; a re-run changes nothing', async () => {
    const host = new FakeHost();
    const { outcome, handle, spec } = await onboard(host);
    assert.ok(outcome.ok, String(!outcome.ok && outcome.error));
    assert.deepEqual(
      host.calls,
      RUNBOOK.map((s) => `apply:${s}`),
    );
    for (const s of RUNBOOK) assert.equal(outcome.result.steps[s].state, 'done');
    const desc = await handle.describe();
    assert.equal(desc.typedSearchAttributes.get(SA_SERVER_ID), spec.id);
    assert.equal(desc.typedSearchAttributes.get(SA_OUTCOME), 'onboarded');
    assert.equal(desc.typedSearchAttributes.get(SA_STEP), 'done');

    // Same server again: every step observes the state already holds — nothing is applied.
    host.calls = [];
    const again = await onboard(host, spec);
    assert.ok(again.outcome.ok);
    assert.deepEqual(host.calls, []);
    for (const s of RUNBOOK) assert.equal(again.outcome.result.steps[s].state, 'unchanged');
  });

  test('rollback: a completed onboarding is undone newest first, each step back to its pre-state; drift then skips the server', async () => {
    const host = new FakeHost();
    const { outcome, spec } = await onboard(host);
    assert.ok(outcome.ok, String(!outcome.ok && outcome.error));
    const taskQueue = `tq-rb-${spec.id}`;
    const worker = await createWorker({
      connection: env.nativeConnection,
      namespace: 'default',
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities(nullConnector, fakeSteps(host)),
    });
    await worker.runUntil(async () => {
      const plan = await loadRollback(env.client, spec.id);
      assert.deepEqual(
        plan.compensations.map((c) => c.step),
        [...RUNBOOK].reverse(),
      );
      assert.deepEqual(plan.compensations[0]!.pre, { value: 'pristine' });
      host.calls = [];
      const handle = await startRollback(env.client, plan, { taskQueue });
      const result = await handle.result();
      assert.deepEqual(
        result.compensations.map((c) => [c.step, c.outcome]),
        [...RUNBOOK].reverse().map((s) => [s, 'restored']),
      );
      assert.deepEqual(host.undoCalls(), [...RUNBOOK].reverse());
      for (const s of RUNBOOK) assert.equal(host.state[s], 'pristine');
      const desc = await handle.describe();
      assert.equal(desc.type, 'rollbackServer');
      assert.equal(desc.typedSearchAttributes.get(SA_OUTCOME), 'rolled-back');
      assert.equal((await onboardingState(env.client, spec.id)).state, 'not-onboarded');
      // A second rollback of the same onboarding finds every step already back: nothing is changed twice.
      const again = await startRollback(env.client, await loadRollback(env.client, spec.id), { taskQueue });
      assert.ok((await again.result()).compensations.every((c) => c.outcome === 'already-restored'));
    });
  });

  for (const [i, failing] of RUNBOOK.entries()) {
    test(`a verification failure at ${failing} rolls back exactly what was changed, newest first`, async () => {
      const host = new FakeHost();
      host.faults = [
        { step: failing, phase: 'verify', error: () => new VerificationError('injected mismatch', { step: failing, host: 'x', expected: 'a', observed: 'b' }) },
      ];
      const { outcome } = await onboard(host);
      assert.ok(!outcome.ok);
      const report = failureReport(outcome.error);
      // The failed step had applied before verifying, so it is compensated first, then the completed ones.
      const expected = RUNBOOK.slice(0, i + 1).reverse();
      assert.deepEqual(host.undoCalls(), expected);
      assert.deepEqual(
        report.compensations.map((c) => c.step),
        expected,
      );
      assert.ok(report.compensations.every((c) => c.outcome === 'restored'));
      assert.equal(report.failedStep, failing);
      assert.equal(report.attempts, 1, 'VerificationError is non-retryable');
      assert.match(report.error, /injected mismatch/);
      for (const s of RUNBOOK) assert.equal(host.state[s], 'pristine', `${s} restored`);
      const message = (outcome.error as WorkflowFailedError).cause!.message;
      assert.match(message, new RegExp(`failed at .*\\(${failing}\\) after 1 attempt`));
      assert.match(message, /rollback: /);
    });
  }

  test('a step that fails before touching the host is not compensated; earlier ones are', async () => {
    const host = new FakeHost();
    host.faults = [{ step: 'sriov', phase: 'observe', error: () => new UnexpectedOutputError('garbled sysfs', { step: 'sriov' }) }];
    const { outcome } = await onboard(host);
    assert.ok(!outcome.ok);
    assert.deepEqual(host.undoCalls(), ['vlan', 'bond', 'cable']);
    const report = failureReport(outcome.error);
    assert.equal(report.failedStep, 'sriov');
  });

  test('a transient failure is retried, and the retry still knows the pre-state', async () => {
    const host = new FakeHost();
    host.faults = [
      // Attempt 1 applies, then LACP "has not converged" twice; attempt 3 observes the bond already there.
      { step: 'bond', phase: 'verify', times: 2, error: () => new NotConvergedError('LACP negotiating', { step: 'bond' }) },
      // A later hard failure forces the rollback, which must restore the *original* pre-state.
      { step: 'attach', phase: 'observe', error: () => new VerificationError('stop here', { step: 'attach' }) },
    ];
    const { outcome } = await onboard(host);
    assert.ok(!outcome.ok);
    const report = failureReport(outcome.error);
    assert.deepEqual(
      host.calls.filter((c) => c === 'apply:bond'),
      ['apply:bond'],
      'applied once, not re-applied by retries',
    );
    assert.ok(report.compensations.find((c) => c.step === 'bond')?.outcome === 'restored');
    assert.equal(host.state.bond, 'pristine', 'rolled back to the state before the first attempt');
  });

  test('a transient failure then success completes the onboarding with the attempts recorded', async () => {
    const host = new FakeHost();
    host.faults = [{ step: 'vlan', phase: 'verify', times: 1, error: () => new NotConvergedError('gateway not answering yet', { step: 'vlan' }) }];
    const { outcome } = await onboard(host);
    assert.ok(outcome.ok);
    assert.equal(outcome.result.steps.vlan.attempts, 2);
    assert.equal(outcome.result.steps.vlan.state, 'done');
    assert.equal(host.undoCalls().length, 0);
  });

  test('a non-retryable error fails fast: one attempt, no backoff', async () => {
    const host = new FakeHost();
    host.faults = [
      { step: 'cable', phase: 'verify', error: () => new VerificationError('eth1: expected leaf-01/swp1, observed leaf-01/swp2', { step: 'cable' }) },
    ];
    const started = Date.now();
    const { outcome } = await onboard(host);
    assert.ok(!outcome.ok);
    const report = failureReport(outcome.error);
    assert.equal(report.attempts, 1);
    assert.match(report.error, /expected leaf-01\/swp1, observed leaf-01\/swp2/);
    assert.ok(Date.now() - started < 15_000, 'no retry backoff was waited');
  });

  test('cancellation mid-step compensates the completed steps and the interrupted one', async () => {
    const host = new FakeHost();
    host.faults = [{ step: 'sriov', phase: 'apply', block: true, error: () => new Error('unused') }];
    const { outcome, handle } = await onboard(host, undefined, async (h) => {
      await host.blocked;
      const st = await h.query(statusQuery);
      assert.equal(st.currentStep, 'sriov');
      assert.equal(st.steps.sriov.state, 'running');
      await h.cancel();
    });
    assert.ok(!outcome.ok);
    assert.ok(outcome.error instanceof WorkflowFailedError);
    assert.equal((await handle.describe()).status.name, 'CANCELLED');
    assert.deepEqual(host.undoCalls(), ['sriov', 'vlan', 'bond', 'cable']);
    for (const s of RUNBOOK) assert.equal(host.state[s], 'pristine');
    const desc = await handle.describe();
    assert.equal(desc.typedSearchAttributes.get(SA_OUTCOME), 'cancelled');
  });

  test('a second onboarding of the same server is refused while the first runs', async () => {
    const host = new FakeHost();
    host.faults = [{ step: 'bond', phase: 'apply', block: true, error: () => new Error('unused') }];
    const { outcome } = await onboard(host, undefined, async (h) => {
      await host.blocked;
      const spec = { ...baseSpec, id: h.workflowId.replace(/^onboard-/, '') };
      await assert.rejects(startOnboarding(env.client, spec, { taskQueue: 'elsewhere' }), (err: unknown) => {
        assert.ok(err instanceof OnboardingAlreadyRunningError);
        assert.match(err.message, /already being onboarded/);
        assert.match(err.message, new RegExp(h.workflowId));
        return true;
      });
      await h.cancel();
    });
    assert.ok(!outcome.ok);
  });

  test('a failing compensation is reported and does not stop the others', async () => {
    const host = new FakeHost();
    const faults: Fault[] = [
      { step: 'hypervisor', phase: 'verify', error: () => new VerificationError('virsh version failed', { step: 'hypervisor' }) },
      { step: 'vlan', phase: 'undo', error: () => new VerificationError('cannot restore', { step: 'vlan' }) },
    ];
    host.faults = faults;
    const { outcome, handle } = await onboard(host);
    assert.ok(!outcome.ok);
    const report = failureReport(outcome.error);
    const byStep = Object.fromEntries(report.compensations.map((c) => [c.step, c.outcome])) as Record<StepName, string>;
    assert.equal(byStep.vlan, 'failed');
    assert.equal(byStep.bond, 'restored');
    assert.equal(byStep.cable, 'restored');
    assert.equal((await handle.describe()).typedSearchAttributes.get(SA_OUTCOME), 'failed-rollback-incomplete');
  });
});
