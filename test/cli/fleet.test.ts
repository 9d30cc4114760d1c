/** `underlay fleet` option parsing and text rendering (pure; the fleet itself: test/workflows/fleet.test.ts). */
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { test } from 'node:test';
import { fleetInputFromOptions, renderFleet } from '../../src/cli/fleet';
import { InvalidSpecError } from '../../src/common/errors';
import type { FleetProgress } from '../../src/workflows/fleet-messages';
import { renderFleetDetails } from '../../src/workflows/fleet-status';

const base = { canaryApproval: 'wait', onStop: 'finish', taskQueue: 'underlay', siteQueues: false };

test('fleet onboard options become the workflow input: exactly one source, numbers checked, paths made absolute', () => {
  assert.deepEqual(
    fleetInputFromOptions(['a.yaml', 'sub/b.yaml'], { ...base, canary: '2', concurrency: '5', waveSize: '10', maxFailures: '1', onStop: 'rollback' }),
    {
      source: { kind: 'files', files: [resolve('a.yaml'), resolve('sub/b.yaml')] },
      canary: { size: 2, approval: 'wait' },
      concurrency: 5,
      waveSize: 10,
      failureBudget: { count: 1 },
      onStop: 'rollback',
    },
  );
  assert.deepEqual(fleetInputFromOptions([], { ...base, site: 'fra1,par1', outcome: 'failed' }).source, {
    kind: 'search',
    filter: { site: ['fra1', 'par1'], outcome: ['failed'] },
  });
  assert.deepEqual(fleetInputFromOptions([], { ...base, inventory: 'inv', maxFailurePercent: '5' }), {
    source: { kind: 'inventory', dir: resolve('inv') },
    failureBudget: { percent: 5 },
    onStop: 'finish',
  });
  assert.throws(() => fleetInputFromOptions([], base), InvalidSpecError);
  assert.throws(() => fleetInputFromOptions(['a.yaml'], { ...base, inventory: 'inv' }), /exactly one of/);
  assert.throws(() => fleetInputFromOptions(['a.yaml'], { ...base, concurrency: '-1' }), InvalidSpecError);
  assert.throws(() => fleetInputFromOptions(['a.yaml'], { ...base, onStop: 'explode' }), InvalidSpecError);
});

test('the text and the Web UI details show waves, counts, the pause and the failures (one line each, no table breaking)', () => {
  const p: FleetProgress = {
    fleetId: 'fleet-r12',
    phase: 'rolling',
    source: '3 spec file(s)',
    total: 3,
    concurrency: 2,
    waveSize: null,
    canary: { size: 1, approval: 'wait', approvedBy: 'lead' },
    budget: { allowed: 1, failed: 1, exceeded: false },
    onStop: 'finish',
    counts: { seen: 3, started: 3, running: 1, onboarded: 1, failed: 1, cancelled: 0, skipped: 0, invalid: 0 },
    waves: [
      { index: 0, canary: true, size: 1, planned: 1, onboarded: 1, failed: 0, cancelled: 0, skipped: 0, startedAt: 'x', endedAt: 'y' },
      { index: 1, canary: false, size: 2, planned: 0, onboarded: 0, failed: 1, cancelled: 0, skipped: 0, startedAt: 'x' },
    ],
    foldedWaves: 0,
    running: [{ serverId: 's3', runId: 'r', site: 'fra1', wave: 1, startedAt: 'x' }],
    failures: [{ serverId: 's2', reason: 'failed at VLAN | gateway\nsilent', wave: 1 }],
    skipped: [],
    invalid: [],
    control: { pause: { by: 'ops', at: 'x' }, abort: null },
    runs: 1,
    historyEvents: 42,
    startedAt: 'x',
  };
  const text = renderFleet(p);
  assert.match(text, /1 onboarded · 1 failed \(budget 1\) .* 1 running \(cap 2\)/);
  assert.match(text, /paused by ops: `underlay fleet resume r12`/);
  assert.match(text, /canary .* 1\/1 started · 1 ok .* done · approved by lead/);
  assert.match(text, /✗ s2: failed at VLAN/);
  const md = renderFleetDetails(p);
  assert.match(md, /\| s2 \| failed at VLAN \\\| gateway silent \|/);
  assert.match(md, /⏸ Paused by ops/);
  assert.match(md, /`s3`/);
});
