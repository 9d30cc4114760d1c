/**
 * The benchmark smoke (`npm run bench` at its smoke size) as CI runs it: every scenario produces a complete,
 * consistent table. Timings are printed, never asserted.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderMarkdown, renderText, tableProblems, type Table } from '../../bench/harness';
import { runBench } from '../../bench/run';

test('the smoke bench produces sane tables for the engine, the fleet and the drift sweep', async () => {
  const tables = await runBench('smoke', { log: () => undefined });
  assert.deepEqual(
    tables.map((t) => t.scenario),
    ['engine', 'fleet', 'drift'],
  );
  for (const t of tables) {
    assert.deepEqual(tableProblems(t), [], renderText(t));
    assert.ok(renderMarkdown(t).startsWith(`### ${t.title}\n`));
    console.log(`${renderText(t)}\n`);
  }
  const col = (t: Table, name: string, row = 0) => {
    const i = t.columns.indexOf(name);
    assert.ok(i >= 0, `${t.scenario}: no column ${name}`);
    return t.rows[row]![i] as number;
  };
  const [engine, fleet, drift] = tables as [Table, Table, Table];
  // Engine: the baseline row is the solo run (ratio 1), both batches ran six steps per onboarding.
  assert.equal(col(engine, 'onboardings', 0), 3);
  assert.equal(col(engine, 'onboardings', 1), 20);
  assert.equal(col(engine, 'p50 vs solo', 0), '1.00×');
  for (const r of [0, 1]) assert.ok(Math.abs(col(engine, 'steps/s', r) / col(engine, 'onboardings/s', r) - 6) < 1e-9);
  assert.ok(col(engine, 'events/onboarding') > 6 * 3, 'at least schedule/start/complete per step');
  assert.ok(col(engine, 'step gap p99 ms', 1) >= col(engine, 'step gap p50 ms', 1));
  // Fleet: all onboarded; no run far beyond its event bound (200; the completions of the ≤ 10 running land after
  // the last check: a few events each). Continue-as-new itself is proven in test/workflows/fleet.test.ts.
  assert.equal(col(fleet, 'onboarded'), 30);
  assert.ok(col(fleet, 'events max/run') <= 200 + 10 * 8, `events max/run ${col(fleet, 'events max/run')}`);
  assert.equal(col(fleet, 'events total'), Math.round(col(fleet, 'events/server') * 30));
  // Drift: every server checked, none drifted (the fleet's hosts are clean), one run per inventory page.
  assert.equal(col(drift, 'checked'), 30);
  assert.equal(col(drift, 'drifted'), 0);
  assert.ok(col(drift, 'runs') >= 3);
});
