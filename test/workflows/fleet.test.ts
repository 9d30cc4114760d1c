/**
 * onboardFleet on a real Temporal dev server. Every server is a real child onboardServer over the in-memory hosts
 * of test/helpers/fake-steps.ts (the real activity runner, retries and cancellation); each host records when a
 * step first and last touched it, so how many onboardings ran at once is measured on the hosts, not taken from
 * the workflow's own counters. Fleets are started and steered through the CLI's functions (src/cli/fleet.ts).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createActivities } from '../../src/activities';
import { controlFleet, FleetAlreadyRunningError, FleetRequestRefusedError, queryFleet, renderFleet, startFleet, watchFleet } from '../../src/cli/fleet';
import { cancelOnboarding } from '../../src/cli/control';
import { OnboardingAlreadyRunningError, startOnboarding } from '../../src/cli/onboarding';
import { fleetWorkflowId } from '../../src/common/config';
import { VerificationError } from '../../src/common/errors';
import { SA_OUTCOME } from '../../src/common/search-attributes';
import { loadSpecFile } from '../../src/spec/load';
import type { ServerSpec } from '../../src/spec/server';
import type { FleetInput, FleetPhase, FleetProgress } from '../../src/workflows/fleet-messages';
import { renderFleetDetails } from '../../src/workflows/fleet-status';
import { createWorker } from '../../src/workers/worker';
import { FakeFleet, fleetSteps, nullConnector, type FakeHost } from '../helpers/fake-steps';
import { runInBackground, startTemporal, workflowBundle, type BackgroundWorker } from '../helpers/temporal';
import { eventually } from '../helpers/eventually';

let env: TestWorkflowEnvironment;
let baseSpec: ServerSpec;
let worker: BackgroundWorker | undefined;
const fleet = new FakeFleet();
const taskQueue = `fleet-${process.pid}`;
const tmp = mkdtempSync(join(tmpdir(), 'underlay-fleet-'));

before(async () => {
  [env, baseSpec] = await Promise.all([startTemporal(), loadSpecFile('examples/kvm-macvtap.yaml')]);
  worker = runInBackground(
    await createWorker({
      connection: env.nativeConnection,
      namespace: 'default',
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities(nullConnector, fleetSteps(fleet)),
    }),
  );
});
after(async () => {
  await worker?.stop();
  await env?.teardown();
  rmSync(tmp, { recursive: true, force: true });
});

/** `n` servers (one spec file each, in this order), their hosts slowed to `applyMs` per apply. */
function servers(prefix: string, n: number, applyMs = 0): { specs: ServerSpec[]; files: string[]; hosts: FakeHost[] } {
  const specs = Array.from({ length: n }, (_, i) => ({ ...baseSpec, id: `${prefix}-${String(i).padStart(3, '0')}` }));
  const files = specs.map((s) => {
    const f = join(tmp, `${s.id}.json`);
    writeFileSync(f, JSON.stringify(s));
    return f;
  });
  const hosts = specs.map((s) => {
    const h = fleet.host(s.id);
    h.applyMs = applyMs;
    return h;
  });
  return { specs, files, hosts };
}

function start(name: string, files: string[], o: Omit<FleetInput, 'source'> = {}) {
  return startFleet(env.client, name, { source: { kind: 'files', files }, ...o }, { taskQueue });
}

/** The most hosts whose [first touch, last touch] spans overlap at one instant (an end before a start at a tie). */
function peakOverlap(hosts: FakeHost[]): number {
  const edges: Array<[number, number]> = [];
  for (const h of hosts) if (h.firstAt !== undefined) edges.push([h.firstAt, 1], [h.lastAt!, -1]);
  edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let peak = 0;
  for (const [, d] of edges) peak = Math.max(peak, (now += d));
  return peak;
}

/** Polls the fleet's progress query (bounded: 30 s) until `ok` holds. */
async function until(name: string, ok: (p: FleetProgress) => boolean, what: string): Promise<FleetProgress> {
  let last: FleetProgress | undefined;
  for (let i = 0; i < 300; i++) {
    last = await queryFleet(env.client, name).catch(() => undefined);
    if (last && ok(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`fleet ${name} never reached: ${what}; last: ${last ? renderFleet(last) : 'no answer'}`);
}

const touched = (hosts: FakeHost[]) => hosts.filter((h) => h.firstAt !== undefined).length;
const phaseIs = (phase: FleetPhase) => (p: FleetProgress) => p.phase === phase;

describe('onboardFleet', () => {
  test('canary, then waves; the cap is never exceeded on the hosts; each wave ends before the next starts', async () => {
    const { files, hosts } = servers('wv', 11, 60);
    const h = await start('waves', files, { canary: { size: 2, approval: 'auto' }, concurrency: 3, waveSize: 4 });
    const p = await h.result();
    assert.equal(p.phase, 'completed', renderFleet(p));
    assert.equal(p.counts.onboarded, 11);
    assert.equal(p.counts.failed, 0);
    assert.deepEqual(
      p.waves.map((w) => [w.canary, w.size, w.onboarded]),
      [
        [true, 2, 2],
        [false, 4, 4],
        [false, 4, 4],
        [false, 1, 1],
      ],
    );
    // Measured on the hosts: at most 3 onboardings at once, and the cap was reached (it is a cap, not a trickle).
    assert.equal(peakOverlap(hosts), 3);
    // Canary, then each wave: every host of a wave was done before any host of the next was touched.
    const groups = [hosts.slice(0, 2), hosts.slice(2, 6), hosts.slice(6, 10), hosts.slice(10)];
    for (let i = 1; i < groups.length; i++) {
      const prevEnd = Math.max(...groups[i - 1]!.map((x) => x.lastAt!));
      const nextStart = Math.min(...groups[i]!.map((x) => x.firstAt!));
      assert.ok(prevEnd <= nextStart, `group ${i} started before group ${i - 1} ended`);
    }
    // The Web UI's details and the CLI's rendering say the same.
    const details = renderFleetDetails(p);
    assert.match(details, /\*\*11\*\* onboarded/);
    assert.match(details, /\| canary \| 2\/2 \| 2 \| 0 \| 0 \| done \|/);
    assert.match(renderFleet(p), /wave 3 .* 1\/4 started · 1 ok/);
    // The fleet's outcome is searchable like an onboarding's.
    assert.equal((await h.describe()).typedSearchAttributes.get(SA_OUTCOME), 'completed');
  });

  test('a search over earlier onboardings: the servers of an earlier fleet, onboarded again with the specs they had', async () => {
    const h = await startFleet(env.client, 'again', { source: { kind: 'search', filter: { fleet: 'waves' } }, concurrency: 5 }, { taskQueue });
    const p = await h.result();
    assert.equal(p.phase, 'completed', renderFleet(p));
    assert.equal(p.total, 11);
    assert.equal(p.counts.onboarded, 11);
    assert.match(p.source, /earlier onboardings: fleet waves/);
  });

  test('the failure budget stops the rollout: no server starts after it is exceeded', async () => {
    const { files, hosts, specs } = servers('bd', 8, 40);
    for (const i of [1, 2]) {
      hosts[i]!.faults = [
        { step: 'vlan', phase: 'verify', error: () => new VerificationError('gateway 198.18.100.1 does not answer', { step: 'vlan', host: specs[i]!.id }) },
      ];
    }
    const h = await start('budget', files, { concurrency: 2, failureBudget: { count: 1 } });
    const p = await h.result();
    assert.equal(p.phase, 'stopped', renderFleet(p));
    assert.ok(p.budget.exceeded);
    assert.match(p.stopReason ?? '', /failure budget exceeded: 2 failed, at most 1 allowed/);
    assert.equal(p.counts.failed, 2);
    assert.deepEqual(p.failures.map((f) => f.serverId).sort(), [specs[1]!.id, specs[2]!.id]);
    assert.match(p.failures[0]!.reason, /198\.18\.100\.1 does not answer/);
    // The hosts agree: exactly the started servers were touched, and the last ones never were.
    assert.equal(touched(hosts), p.counts.started);
    assert.ok(p.counts.started < 8, `started ${p.counts.started}`);
    assert.equal(hosts[7]!.firstAt, undefined);
    // The failed servers were rolled back by their own onboarding (the saga), as a single onboard would be.
    for (const i of [1, 2]) assert.ok(hosts[i]!.undoCalls().length > 0);
  });

  test('approval after the canary, pause and resume, abort letting the running ones finish', async () => {
    const { files, hosts } = servers('ctl', 8, 150);
    const name = 'control';
    const h = await start(name, files, { canary: { size: 1, approval: 'wait' }, concurrency: 2 });
    await assert.rejects(start(name, files), FleetAlreadyRunningError);
    await until(name, phaseIs('awaiting-approval'), 'awaiting approval');
    assert.equal(touched(hosts), 1);
    await assert.rejects(controlFleet(env.client, name, 'resume', { by: 'tester' }), /resume refused: the fleet is not paused/);

    // Paused, then approved: still nothing starts until resumed.
    assert.match((await controlFleet(env.client, name, 'pause', { by: 'tester' })).message, /paused/);
    await assert.rejects(controlFleet(env.client, name, 'pause', { by: 'tester' }), /already paused \(by tester\)/);
    assert.match((await controlFleet(env.client, name, 'approve', { by: 'lead' })).message, /still paused/);
    await assert.rejects(controlFleet(env.client, name, 'approve', { by: 'lead' }), FleetRequestRefusedError);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(touched(hosts), 1, 'a server started while the fleet was paused');
    assert.match(renderFleetDetails(await queryFleet(env.client, name)), /Paused by tester/);

    await controlFleet(env.client, name, 'resume', { by: 'tester' });
    await until(name, (p) => p.counts.started >= 3, 'three started');
    const answer = await controlFleet(env.client, name, 'abort', { by: 'tester', reason: 'enough for today' });
    assert.match(answer.message, /running finish/);
    const p = await h.result();
    assert.equal(p.phase, 'aborted', renderFleet(p));
    assert.equal(p.canary?.approvedBy, 'lead');
    // The running ones finished (onboarded), nothing else started.
    assert.equal(p.counts.onboarded, p.counts.started);
    assert.equal(p.counts.cancelled, 0);
    assert.equal(touched(hosts), p.counts.started);
    assert.ok(p.counts.started < 8);
    for (const x of hosts.filter((x) => x.firstAt !== undefined)) assert.equal(x.undoCalls().length, 0);
    await assert.rejects(controlFleet(env.client, name, 'abort', { by: 'tester' }), /abort refused: no running fleet control/);
  });

  test('abort with rollback cancels the running onboardings, which roll back', async () => {
    const { files, hosts } = servers('rb', 5, 0);
    for (const x of hosts) x.faults = [{ step: 'vlan', phase: 'apply', block: true, error: () => new Error('unused') }];
    const name = 'rollback';
    const h = await start(name, files, { concurrency: 2, onStop: 'finish' });
    await Promise.all([hosts[0]!.blocked, hosts[1]!.blocked]);
    const answer = await controlFleet(env.client, name, 'abort', { by: 'tester', onStop: 'rollback' });
    assert.match(answer.message, /cancelled and rolled back/);
    const p = await h.result();
    assert.equal(p.phase, 'aborted', renderFleet(p));
    assert.equal(p.counts.cancelled, 2);
    assert.equal(p.counts.onboarded, 0);
    for (const x of hosts.slice(0, 2)) {
      assert.ok(x.undoCalls().includes('vlan'), `undo calls: ${x.undoCalls().join(',')}`);
      assert.ok(
        Object.values(x.state).every((s) => s === 'pristine'),
        JSON.stringify(x.state),
      );
    }
    assert.equal(touched(hosts), 2);
  });

  test('a fleet and a single onboarding never run on one server at once', async () => {
    const { specs, files, hosts } = servers('one', 2, 0);
    // Server 0 is being onboarded alone; the fleet reports it as skipped and does not start it again.
    hosts[0]!.faults = [{ step: 'bond', phase: 'apply', block: true, error: () => new Error('unused') }];
    hosts[1]!.faults = [{ step: 'bond', phase: 'apply', block: true, error: () => new Error('unused') }];
    const single = await startOnboarding(env.client, specs[0]!, { taskQueue });
    await hosts[0]!.blocked;
    const name = 'overlap';
    const h = await start(name, files, { concurrency: 2 });
    await hosts[1]!.blocked;
    // Server 1 is being onboarded by the fleet: a single onboarding of it is refused.
    await assert.rejects(startOnboarding(env.client, specs[1]!, { taskQueue }), OnboardingAlreadyRunningError);
    const mid = await until(name, (p) => p.counts.skipped === 1, 'one skipped');
    assert.equal(mid.skipped[0]!.serverId, specs[0]!.id);
    assert.match(mid.skipped[0]!.reason, /already being onboarded or rolled back/);
    // Server 0's bond apply ran once: the single onboarding's.
    assert.equal(hosts[0]!.applyCalls().filter((c) => c === 'bond').length, 1);

    await controlFleet(env.client, name, 'abort', { by: 'tester', onStop: 'rollback' });
    const p = await h.result();
    assert.equal(p.counts.cancelled, 1);
    await cancelOnboarding(env.client, specs[0]!.id, { by: 'tester' });
    await assert.rejects(single.result(), WorkflowFailedError);
  });

  test('continue-as-new keeps every run under the event bound and loses no server', async () => {
    // 60 servers: ≈ 4–7 events each, so the 200-event bound (the least allowed) is crossed on any machine — with 30 a
    // fast machine batched the completions into 1 run under the bound.
    const { files } = servers('can', 60, 0);
    const name = 'can';
    const h = await start(name, files, { concurrency: 5, maxEventsPerRun: 200 });
    const lines: string[] = [];
    const out = Object.assign(new (await import('node:stream')).Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }), { isTTY: false });
    const code = await watchFleet(env.client, name, out, { pollMs: 1000, maxPolls: 180 });
    assert.equal(code, 0);
    const p = await (h as WorkflowHandle).result();
    assert.equal(p.phase, 'completed');
    assert.equal(p.counts.onboarded, 60);
    assert.ok(p.runs >= 2, `runs: ${p.runs}`);
    // Every run of the fleet stayed near the bound (a run checks before each start; completions of the running
    // onboardings land meanwhile: at most a few events each).
    // Visibility lists the runs a moment after they close: re-list until it holds them all.
    const runs = await eventually(
      `all ${p.runs} runs of the fleet listed`,
      async () => {
        const seen: number[] = [];
        for await (const wf of env.client.workflow.list({ query: `WorkflowId = '${fleetWorkflowId(name)}'` })) {
          const hist = await env.client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
          seen.push(hist.events?.length ?? 0);
        }
        return seen.length === p.runs && seen;
      },
      10_000,
    );
    assert.equal(runs.length, p.runs);
    assert.ok(Math.max(...runs) <= 200 + 5 * 10, `events per run: ${runs.join(', ')}`);
    console.log(`# fleet of 60, cap 5, maxEventsPerRun 200: ${p.runs} runs, events per run ${runs.join(', ')}`);
    assert.ok(
      lines.some((l) => l.includes('60 onboarded')),
      lines.slice(-3).join(''),
    );
  });

  test('bad input is refused before anything starts', async () => {
    const { files } = servers('bad', 1, 0);
    const h = await start('bad', files, { concurrency: 0, failureBudget: { percent: 120 } });
    await assert.rejects(h.result(), (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError);
      assert.match(String(err.cause?.message), /concurrency: an integer 1–500; failureBudget\.percent: 0–100/);
      return true;
    });
    assert.equal(fleet.host('bad-000').firstAt, undefined);
  });
});
