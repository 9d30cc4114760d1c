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
  // Engine: per worker (the options before tuning, then the tuned defaults), a solo batch (its own step-gap baseline,
  // ratio 1) and a concurrent one; six steps per onboarding; the throughput and worker RSS baseline is the untuned
  // worker's concurrent batch; each worker's peak RSS is its own process's, apart from the bench's.
  assert.deepEqual(
    engine.rows.map((r) => r[0]),
    ['before: one at a time', 'before: all at once', 'tuned: one at a time', 'tuned: all at once'],
  );
  for (const r of [0, 2]) assert.equal(col(engine, 'onboardings', r), 3);
  for (const r of [1, 3]) assert.equal(col(engine, 'onboardings', r), 20);
  for (const r of [0, 2]) assert.equal(col(engine, 'p50 vs solo', r), '1.00×');
  assert.equal(col(engine, 'vs before', 1), '1.00×');
  assert.equal(col(engine, 'RSS vs before', 1), '1.00×');
  assert.equal(col(engine, 'cache / wf tasks / activities', 1), '500 / 40 / 100');
  assert.equal(col(engine, 'heap MiB', 1), 'node default');
  assert.equal(col(engine, 'heap MiB', 3), 'old 384, semi 2');
  for (const r of [0, 1, 2, 3]) {
    assert.ok(Math.abs(col(engine, 'steps/s', r) / col(engine, 'onboardings/s', r) - 6) < 1e-9);
    assert.ok(col(engine, 'events/onboarding', r) > 6 * 3, 'at least schedule/start/complete per step');
    assert.ok(col(engine, 'worker peak RSS MiB', r) > 50 && col(engine, 'bench peak RSS MiB', r) > 50);
  }
  for (const r of [1, 3]) assert.ok(col(engine, 'step gap p99 ms', r) >= col(engine, 'step gap p50 ms', r));
  // Fleet: all onboarded; no run far beyond its event bound (200; the completions of the ≤ 10 running land after
  // the last check: a few events each). Continue-as-new itself is proven in test/workflows/fleet.test.ts.
  assert.equal(col(fleet, 'onboarded'), 30);
  assert.ok(col(fleet, 'events max/run') <= 200 + 10 * 8, `events max/run ${col(fleet, 'events max/run')}`);
  assert.equal(col(fleet, 'events total'), Math.round(col(fleet, 'events/server') * 30));
  // Drift: every server checked, none drifted (the fleet's hosts are clean), one run per inventory page.
  assert.equal(col(drift, 'checked'), 30);
  assert.equal(col(drift, 'drifted'), 0);
  assert.ok(col(drift, 'runs') >= 3);
  // Fleet and drift: one worker process of their own (the fleet's, reused by the sweep), measured apart from the bench.
  for (const t of [fleet, drift]) assert.ok(col(t, 'worker peak RSS MiB') > 50 && col(t, 'bench peak RSS MiB') > 50, t.scenario);
});
