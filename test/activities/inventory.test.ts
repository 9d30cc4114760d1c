/**
 * The drift inventory is parsed on the worker (loadInventoryPage). A page of large spec files takes seconds to
 * parse; the worker must keep heartbeating meanwhile. On a real Temporal dev server, with a 2 s heartbeat timeout
 * and no retry: a page of 12 files just under the 256 KiB cap (≈ 19,800 unknown keys each) is parsed in several
 * times the heartbeat timeout and the activity still completes on its first attempt, each file reported invalid
 * with its problems capped at 100 (plus a count). Before the linear-time fix the same page failed: a file took
 * longer than the heartbeat timeout, and the uncapped problems made the result larger than Temporal accepts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { cachedWorkflowBundle } from '../helpers/bundle';
import { loadInventoryPage } from '../../src/activities/drift';
import { INVENTORY_HEARTBEAT_TIMEOUT_MS } from '../helpers/inventory-workflow';
import { startTemporal } from '../helpers/temporal';

const FILES = 24;
const dir = mkdtempSync(join(tmpdir(), 'underlay-inventory-'));
let env: TestWorkflowEnvironment;

before(async () => {
  for (let f = 0; f < FILES; f++) {
    let text = `id: big-${f}\nsite: s\nrack: r\n`;
    for (let k = 0; text.length < 250 * 1024; k++) text += `unknown${k}: ${k}\n`;
    writeFileSync(join(dir, `big-${String(f).padStart(2, '0')}.yaml`), text);
  }
  env = await startTemporal();
});
after(async () => {
  await env?.teardown();
  rmSync(dir, { recursive: true, force: true });
});

test('heartbeats keep flowing while a page of big spec files is parsed', async () => {
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue: 'inventory',
    workflowBundle: await cachedWorkflowBundle(require.resolve('../helpers/inventory-workflow')),
    activities: { loadInventoryPage },
    maxHeartbeatThrottleInterval: '500ms',
    defaultHeartbeatThrottleInterval: '500ms',
  });
  const workflowId = `inventory-${process.pid}`;
  const result = await worker.runUntil(
    env.client.workflow.execute('readInventoryPage', { taskQueue: 'inventory', workflowId, args: [{ dir, pageSize: 500 }] }),
  );
  assert.deepEqual(result, { servers: 0, invalid: FILES, mostIssues: 101 });
  // The page took several heartbeat timeouts, on the first attempt: heartbeats reached the server meanwhile.
  const history = await env.client.workflow.getHandle(workflowId).fetchHistory();
  const started = history.events!.find((e) => e.activityTaskStartedEventAttributes)!;
  const completed = history.events!.find((e) => e.activityTaskCompletedEventAttributes)!;
  assert.equal(started.activityTaskStartedEventAttributes!.attempt, 1);
  const ms = (e: typeof started) => Number(e.eventTime!.seconds) * 1000 + Math.floor((e.eventTime!.nanos ?? 0) / 1e6);
  const took = ms(completed) - ms(started);
  assert.ok(
    took > INVENTORY_HEARTBEAT_TIMEOUT_MS,
    `the page took ${took} ms, less than one heartbeat timeout: too quick to show anything (make the files bigger)`,
  );
});
