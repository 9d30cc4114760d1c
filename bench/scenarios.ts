/**
 * The scenarios of `npm run bench`. All run on one in-process worker (the whole bench process: worker, client and
 * simulated hosts — so its peak RSS is an upper bound of the worker's) against the pinned Temporal dev server,
 * over the in-memory hosts of test/helpers/fake-steps.ts: the real activity runner, no SSH, no host work — what is
 * measured is the engine. Each host records when each step first and last touched it.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { createActivities } from '../src/activities';
import { startSweep } from '../src/cli/drift';
import { startFleet } from '../src/cli/fleet';
import { startOnboarding } from '../src/cli/onboarding';
import { fleetWorkflowId } from '../src/common/config';
import { loadSpecFile } from '../src/spec/load';
import type { ServerSpec } from '../src/spec/server';
import { createWorker } from '../src/workers/worker';
import { FakeFleet, fleetSteps, nullConnector, type FakeHost } from '../test/helpers/fake-steps';
import { runInBackground, workflowBundle } from '../test/helpers/temporal';
import { labScenario } from './lab-onboarding';
import { percentile, ratio, rssSampler, type BenchContext, type Scenario, type Size, type Table } from './harness';

const SIZES = {
  engine: { smoke: 20, medium: 200, full: 1_000 },
  fleet: { smoke: 30, medium: 1_000, full: 10_000 },
  fleetCap: { smoke: 10, medium: 100, full: 200 },
  fleetEvents: { smoke: 200, medium: 5_000, full: 5_000 },
  /** Inventory files per page (one sweep run per page). */
  driftPage: { smoke: 10, medium: 100, full: 100 },
  driftConcurrency: { smoke: 10, medium: 50, full: 100 },
} satisfies Record<string, Record<Size, number>>;

/** One worker on its own queue over simulated hosts, for one scenario. */
async function simulatedWorker(ctx: BenchContext, queue: string, hosts = new FakeFleet()) {
  const worker = runInBackground(
    await createWorker({
      connection: ctx.env.nativeConnection,
      namespace: 'default',
      taskQueue: queue,
      workflowBundle: await workflowBundle(),
      activities: createActivities(nullConnector, fleetSteps(hosts)),
    }),
  );
  return { hosts, worker };
}

let base: ServerSpec | undefined;
async function spec(id: string): Promise<ServerSpec> {
  base ??= await loadSpecFile('examples/kvm-macvtap.yaml');
  return { ...base, id };
}

/** Engine overhead between steps, measured on the host: the next step's first touch minus the previous step's last. */
function stepGaps(h: FakeHost): number[] {
  const spans = Object.values(h.spans).sort((a, b) => a![0] - b![0]) as Array<[number, number]>;
  return spans.slice(1).map((s, i) => s[0] - spans[i]![1]);
}

async function historyLengths(client: Client, workflowIds: string[]): Promise<number[]> {
  const out: number[] = [];
  for (const id of workflowIds) out.push((await client.workflow.getHandle(id).describe()).historyLength);
  return out;
}

/** Every run of one workflow id (continue-as-new chains), with its history length. */
async function runsOf(client: Client, workflowId: string): Promise<number[]> {
  const out: number[] = [];
  for await (const wf of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) {
    out.push(wf.historyLength || (await client.workflow.getHandle(wf.workflowId, wf.runId).describe()).historyLength);
  }
  return out;
}

const engine: Scenario = {
  name: 'engine',
  title: 'Engine scale: concurrent onboardings on one worker',
  needs: 'temporal',
  async run(ctx, size) {
    const n = SIZES.engine[size];
    const queue = `bench-engine-${process.pid}`;
    const { hosts, worker } = await simulatedWorker(ctx, queue);
    const client = ctx.env.client;
    const batch = async (prefix: string, count: number, concurrent: boolean) => {
      const ids = Array.from({ length: count }, (_, i) => `${prefix}-${String(i).padStart(5, '0')}`);
      const rss = rssSampler();
      const t0 = Date.now();
      if (concurrent) {
        const handles = await Promise.all(ids.map(async (id) => startOnboarding(client, await spec(id), { taskQueue: queue, siteQueues: false })));
        await Promise.all(handles.map((h) => h.result()));
      } else {
        for (const id of ids) await (await startOnboarding(client, await spec(id), { taskQueue: queue, siteQueues: false })).result();
      }
      const wallMs = Date.now() - t0;
      const peak = rss.stop();
      const gaps = ids.flatMap((id) => stepGaps(hosts.host(id)));
      const steps = ids.reduce((a, id) => a + Object.keys(hosts.host(id).spans).length, 0);
      const events = await historyLengths(
        client,
        ids.slice(0, 20).map((id) => `onboard-${id}`),
      );
      return { count, wallMs, gaps, steps, events: events.reduce((a, b) => a + b, 0) / events.length, peak };
    };
    try {
      ctx.log(`engine: 3 onboardings one at a time (baseline), then ${n} at once`);
      const solo = await batch(`bs${process.pid}`, 3, false);
      const many = await batch(`bc${process.pid}`, n, true);
      const soloP50 = percentile(solo.gaps, 50);
      const row = (label: string, r: typeof solo) => [
        label,
        r.count,
        r.wallMs / 1000,
        r.count / (r.wallMs / 1000),
        r.steps / (r.wallMs / 1000),
        percentile(r.gaps, 50),
        percentile(r.gaps, 99),
        ratio(percentile(r.gaps, 50), soloP50),
        r.events,
        r.peak,
      ];
      ctx.shared.engineThroughput = many.count / (many.wallMs / 1000);
      const table: Table = {
        scenario: 'engine',
        title: this.title,
        baseline: 'the same onboarding run one at a time on the same worker (step gap p50)',
        columns: [
          'run',
          'onboardings',
          'wall s',
          'onboardings/s',
          'steps/s',
          'step gap p50 ms',
          'step gap p99 ms',
          'p50 vs solo',
          'events/onboarding',
          'peak RSS MiB',
        ],
        rows: [row('one at a time', solo), row('all at once', many)],
        notes: [
          'simulator: the in-memory hosts of test/helpers/fake-steps.ts behind the real activity runner (no SSH, no host work)',
          'step gap: from a step’s last host action to the next step’s first, on the host — activity completion, workflow task, next activity dispatch',
          'peak RSS: the bench process (worker + client + simulated hosts); the dev server is another process',
        ],
      };
      return table;
    } finally {
      await worker.stop();
    }
  },
};

const fleetScenario: Scenario = {
  name: 'fleet',
  title: 'Fleet workflow: onboardFleet over an inventory',
  needs: 'temporal',
  async run(ctx, size) {
    const n = SIZES.fleet[size];
    const cap = SIZES.fleetCap[size];
    const maxEventsPerRun = SIZES.fleetEvents[size];
    const queue = `bench-fleet-${process.pid}`;
    const { hosts, worker } = await simulatedWorker(ctx, queue);
    const dir = join(ctx.tmp, 'inventory');
    mkdirSync(dir, { recursive: true });
    for (let i = 0; i < n; i++) {
      const s = await spec(`fl${process.pid}-${String(i).padStart(5, '0')}`);
      writeFileSync(join(dir, `${s.id}.json`), JSON.stringify(s));
    }
    ctx.shared.fleetInventorySize = n;
    try {
      ctx.log(`fleet: ${n} servers, cap ${cap}, ${maxEventsPerRun} events per run`);
      const rss = rssSampler();
      const t0 = Date.now();
      const name = `bench-${process.pid}`;
      const h = await startFleet(
        ctx.env.client,
        name,
        { source: { kind: 'inventory', dir }, concurrency: cap, maxEventsPerRun, pageSize: 100 },
        { taskQueue: queue },
      );
      const p = await h.result();
      const wall = (Date.now() - t0) / 1000;
      const peak = rss.stop();
      const runs = await runsOf(ctx.env.client, fleetWorkflowId(name));
      const total = runs.reduce((a, b) => a + b, 0);
      ctx.shared.fleetThroughput = p.counts.onboarded / wall;
      fleetRun = { dir, queue, hosts };
      return {
        scenario: 'fleet',
        title: this.title,
        baseline: 'the engine scenario’s concurrent onboardings started directly by a client (onboardings/s)',
        columns: ['servers', 'onboarded', 'cap', 'wall s', 'servers/s', 'vs engine', 'runs', 'events max/run', 'events total', 'events/server', 'peak RSS MiB'],
        rows: [
          [
            n,
            p.counts.onboarded,
            cap,
            wall,
            p.counts.onboarded / wall,
            ratio(p.counts.onboarded / wall, ctx.shared.engineThroughput ?? NaN),
            runs.length,
            Math.max(...runs),
            total,
            total / n,
            peak,
          ],
        ],
        notes: [
          `phase ${p.phase}; continue-as-new at ${maxEventsPerRun} events; a run's history also holds the completions of onboardings started before its bound was reached`,
        ],
      };
    } finally {
      await worker.stop();
    }
  },
};

/** What the fleet scenario leaves for the drift sweep: its inventory, queue and (onboarded) simulated hosts. */
let fleetRun: { dir: string; queue: string; hosts: FakeFleet } | undefined;

const drift: Scenario = {
  name: 'drift',
  title: 'Drift sweep over the fleet’s inventory (report mode)',
  needs: 'temporal',
  async run(ctx, size) {
    if (!fleetRun) throw new Error('the drift scenario sweeps the servers the fleet scenario onboarded: run it after fleet');
    const { dir, queue, hosts } = fleetRun;
    const concurrency = SIZES.driftConcurrency[size];
    // The fleet's own simulated hosts answer the observation: every server is onboarded and clean.
    const { worker } = await simulatedWorker(ctx, queue, hosts);
    try {
      const n = ctx.shared.fleetInventorySize ?? 0;
      ctx.log(`drift: sweep of ${n} servers, ${concurrency} checks at once`);
      const rss = rssSampler();
      const t0 = Date.now();
      const h = await startSweep(ctx.env.client, {
        inventoryDir: dir,
        mode: 'report',
        concurrency,
        pageSize: SIZES.driftPage[size],
        taskQueue: queue,
        siteQueues: false,
      });
      const s = await h.result();
      const wall = (Date.now() - t0) / 1000;
      const peak = rss.stop();
      const runs = await runsOf(ctx.env.client, h.workflowId);
      const checked = s.counts.clean + s.counts.drifted;
      return {
        scenario: 'drift',
        title: this.title,
        baseline: 'the fleet scenario’s onboardings (servers/s)',
        columns: ['servers', 'checked', 'drifted', 'concurrency', 'wall s', 'servers/s', 'vs fleet', 'runs', 'events max/run', 'peak RSS MiB'],
        rows: [
          [
            n,
            checked,
            s.counts.drifted,
            concurrency,
            wall,
            checked / wall,
            ratio(checked / wall, ctx.shared.fleetThroughput ?? NaN),
            runs.length,
            Math.max(...runs),
            peak,
          ],
        ],
        notes: [
          'every server onboarded by the fleet scenario and observed on its simulated host (all six steps each): a driftCheck child per server; the sweep continues as new per inventory page',
        ],
      };
    } finally {
      await worker.stop();
    }
  },
};

/**
 * In order: the drift sweep needs the fleet's onboarded inventory, the fleet's ratio the engine's throughput. The lab
 * scenario (bench/lab-onboarding.ts) boots VMs: it runs only when named (`--only lab`), never in CI.
 */
export const SCENARIOS: Scenario[] = [engine, fleetScenario, drift, labScenario];
