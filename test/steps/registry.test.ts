/**
 * The step registry is the one place a step is named: every definition complete, every platform implementing
 * exactly the steps its sections allow (with implementations that carry the step's own name), and everything
 * that used to keep its own table — activity names, saga proxies, policies, metrics labels, summaries — derived.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { createActivities, IMPLEMENTATIONS, PLATFORM_STEP_SET } from '../../src/activities';
import { platformStep, platformSteps } from '../../src/activities/registry';
import { chooseStep } from '../../src/activities/step';
import { loadSpecFile } from '../../src/spec/load';
import { PLATFORM_MATRIX, type HypervisorKind } from '../../src/spec/server';
import { plannedSteps, STEP, STEP_DEFS, STEPS, stepOfActivity, stepSummary } from '../../src/steps';
import { STEP_POLICY } from '../../src/workflows/policy';

const root = resolve(__dirname, '../..');
const examples = readdirSync(join(root, 'examples')).map((f) => join(root, 'examples', f));

describe('step definitions', () => {
  test('names, titles and activity names are unique; every policy says why', () => {
    assert.deepEqual(
      STEPS,
      STEP_DEFS.map((d) => d.name),
    );
    assert.equal(new Set(STEPS).size, STEPS.length);
    assert.equal(new Set(STEP_DEFS.map((d) => d.title)).size, STEPS.length);
    const activities = STEP_DEFS.flatMap((d) => [d.activity.apply, d.activity.undo]);
    assert.equal(new Set(activities).size, activities.length);
    for (const d of STEP_DEFS) {
      assert.ok(d.policy.why.length > 20, `${d.name}: the policy's reason`);
      assert.ok(d.policy.maximumAttempts >= 1);
      assert.deepEqual(stepOfActivity(d.activity.apply), { step: d.name, kind: 'apply' });
      assert.deepEqual(stepOfActivity(d.activity.undo), { step: d.name, kind: 'rollback' });
      assert.equal(STEP[d.name], d);
    }
    assert.equal(stepOfActivity('planOnboarding'), undefined);
  });

  test('the saga policies are the definitions’ own', () => {
    for (const d of STEP_DEFS) {
      const p = STEP_POLICY[d.name];
      assert.equal(p.startToCloseTimeout, d.policy.startToClose, d.name);
      assert.equal(p.heartbeatTimeout, d.policy.heartbeat, d.name);
      assert.equal(p.retry?.maximumAttempts, d.policy.maximumAttempts, d.name);
    }
  });

  test('the worker registers exactly one apply and one rollback per step, under the registry’s names', () => {
    const names = Object.keys(createActivities());
    for (const d of STEP_DEFS) {
      assert.ok(names.includes(d.activity.apply), d.activity.apply);
      assert.ok(names.includes(d.activity.undo), d.activity.undo);
    }
    const others = names.filter((n) => !stepOfActivity(n));
    assert.deepEqual(others.sort(), [
      'blockingDrift',
      'cancelOnboardings',
      'findUnmanaged',
      'loadFleetPage',
      'loadInventoryPage',
      'loadRollback',
      'observeDrift',
      'onboardingOutcomes',
      'onboardingState',
      'planOnboarding',
      'probeHealth',
      'resolveFleetSearch',
      'siteQueueWorkers',
    ]);
  });
});

describe('platform implementations', () => {
  test('every hypervisor of the matrix has a table, and each table is exactly the platform’s steps', () => {
    assert.deepEqual(Object.keys(IMPLEMENTATIONS).sort(), Object.keys(PLATFORM_MATRIX).sort());
    for (const kind of Object.keys(PLATFORM_MATRIX) as HypervisorKind[]) {
      assert.deepEqual(Object.keys(IMPLEMENTATIONS[kind]).sort(), [...platformSteps(kind)].sort(), kind);
      assert.ok(platformSteps(kind).includes('cable') && platformSteps(kind).includes('hypervisor') && platformSteps(kind).includes('attach'), kind);
    }
  });

  test('each example spec: its planned steps all have implementations, named as the step they implement', async () => {
    for (const file of examples) {
      const spec = await loadSpecFile(file);
      for (const s of plannedSteps(spec)) {
        assert.ok(platformSteps(spec.hypervisor.kind).includes(s), `${file}: ${s} not a ${spec.hypervisor.kind} step`);
        const impl = platformStep(s, spec);
        assert.equal(impl.name, s, `${file}: the ${s} implementation calls itself ${impl.name}`);
        assert.equal(chooseStep(PLATFORM_STEP_SET[s], spec), impl);
        // Its part of the spec is there: narrowing never throws for a valid spec of its platform.
        assert.doesNotThrow(() => impl.want(spec), `${file}: ${s}.want`);
        assert.ok(stepSummary(s, spec).length > 0);
      }
    }
  });
});
