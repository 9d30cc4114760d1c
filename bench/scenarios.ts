/**
 * The scenarios of `npm run bench`, against the pinned Temporal dev server, over the in-memory hosts of
 * test/helpers/fake-steps.ts: the real activity runner, no SSH, no host work — what is measured is the engine. Every
 * worker runs in a process of its own (bench/engine-worker.ts), so its peak RSS is its own, apart from the bench
 * process (the client); each host records when each step first and last touched it.
 */
import { fork } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { startSweep } from '../src/cli/drift';
import { startFleet } from '../src/cli/fleet';
import { startOnboarding } from '../src/cli/onboarding';
import { fleetWorkflowId } from '../src/common/config';
import { loadSpecFile } from '../src/spec/load';
import type { ServerSpec } from '../src/spec/server';
import { workerNodeFlags, WORKER_TUNING, WORKER_TUNING_UNTUNED, type WorkerTuning } from '../src/workers/worker';
import type { FakeHost } from '../test/helpers/fake-steps';
import { workflowBundle } from '../test/helpers/temporal';
import type { EngineWorkerConfig, EngineWorkerReply, EngineWorkerRequest } from './engine-worker';
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

let base: ServerSpec | undefined;
async function spec(id: string): Promise<ServerSpec> {
  base ??= await loadSpecFile('examples/kvm-macvtap.yaml');
  return { ...base, id };
}

/** Engine overhead between steps, measured on the host: the next step's first touch minus the previous step's last. */
function stepGaps(hostSpans: FakeHost['spans']): number[] {
  const spans = Object.values(hostSpans).sort((a, b) => a![0] - b![0]) as Array<[number, number]>;
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

/**
 * The engine scenario's workers, side by side in one run: first the options before issue 14 (node's own heap
 * sizing, the cache of 500: the baseline), then today's (bin/underlay's heap bounds for `underlay worker`, the
 * tuning defaults of src/workers/worker.ts).
 */
/**
 * The tuned worker's node flags: bin/underlay's, with its UNDERLAY_WORKER_HEAP_MIB honoured the same way (an
 * integer from 192 to 16384), so a heap bound can be measured before it is deployed.
 */
function tunedNodeFlags(): string[] {
  const raw = process.env.UNDERLAY_WORKER_HEAP_MIB;
  if (raw === undefined || raw === '') return workerNodeFlags();
  const heap = Number(raw);
  if (!/^\d{3,5}$/.test(raw) || heap < 192 || heap > 16_384)
    throw new Error(`UNDERLAY_WORKER_HEAP_MIB: expected an integer from 192 to 16384 (MiB), got ${JSON.stringify(raw.slice(0, 40))}`);
  return workerNodeFlags(heap);
}

const ENGINE_RUNS: Array<{ label: string; tuning: WorkerTuning; nodeFlags: string[] }> = [
  { label: 'before', tuning: WORKER_TUNING_UNTUNED, nodeFlags: [] },
  { label: 'tuned', tuning: WORKER_TUNING, nodeFlags: tunedNodeFlags() },
];

/** A line of /proc/<pid>/status in KiB (VmHWM: the kernel's peak resident set since the last reset). */
function procStatusKiB(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`/proc/${pid}/status has no ${field}`);
  return Number(m[1]);
}

/** The engine's worker as a child process (bench/engine-worker.ts): its peak RSS is its own. */
async function childWorker(ctx: BenchContext, queue: string, tuning: WorkerTuning, nodeFlags: string[], bundle: EngineWorkerConfig['bundle']) {
  // Prebuilt: built here (or found in the cache) before the child loads it, so webpack never runs in the child.
  if (bundle === 'prebuilt') await workflowBundle();
  const config: EngineWorkerConfig = { address: ctx.env.address, namespace: 'default', taskQueue: queue, tuning, bundle };
  const child = fork(join(__dirname, 'engine-worker.ts'), [], {
    execArgv: ['--import', 'tsx', ...nodeFlags],
    env: { ...process.env, UNDERLAY_BENCH_WORKER: JSON.stringify(config) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const next = (type: EngineWorkerReply['type'], timeoutMs: number) =>
    new Promise<EngineWorkerReply>((resolve, reject) => {
      const t = setTimeout(() => done(new Error(`bench worker: no '${type}' within ${timeoutMs} ms`)), timeoutMs);
      const onMessage = (m: EngineWorkerReply) => (m.type === 'error' ? done(new Error(`bench worker: ${m.message}`)) : m.type === type && done(undefined, m));
      const onExit = (code: number | null) => done(new Error(`bench worker exited (${String(code)}) before '${type}'`));
      const done = (err?: Error, m?: EngineWorkerReply) => {
        clearTimeout(t);
        child.off('message', onMessage);
        child.off('exit', onExit);
        if (err) reject(err);
        else resolve(m!);
      };
      child.on('message', onMessage);
      child.once('exit', onExit);
    });
  await next('ready', 300_000);
  const pid = child.pid!;
  return {
    /** The peak from the process's start until now (read before the first reset). */
    startPeakMiB: Math.round(procStatusKiB(pid, 'VmHWM') / 1024),
    /** Starts a new peak: the kernel's high-water mark back to the current RSS (writing 5 to clear_refs). */
    resetPeak: () => writeFileSync(`/proc/${pid}/clear_refs`, '5'),
    peakMiB: () => Math.round(procStatusKiB(pid, 'VmHWM') / 1024),
    async spans(ids: string[]): Promise<Record<string, Partial<Record<string, [number, number]>>>> {
      const reply = next('spans', 60_000);
      child.send({ type: 'spans', ids } satisfies EngineWorkerRequest);
      return ((await reply) as Extract<EngineWorkerReply, { type: 'spans' }>).spans;
    },
    async stop(): Promise<void> {
      if (child.exitCode === null && child.connected) child.send({ type: 'stop' } satisfies EngineWorkerRequest);
      const t = setTimeout(() => child.kill('SIGKILL'), 60_000);
      await exited;
      clearTimeout(t);
    },
  };
}

const engine: Scenario = {
  name: 'engine',
  title: 'Engine scale: concurrent onboardings on one worker',
  needs: 'temporal',
  async run(ctx, size) {
    const n = SIZES.engine[size];
    // As `underlay worker` does, the worker bundles its workflows at start (webpack in its process: part of its
    // resident set); the CI smoke loads the prebuilt bundle instead (it saves 5–10 s of CPU per worker).
    const bundle = size === 'smoke' ? 'prebuilt' : 'at-start';
    const client = ctx.env.client;
    type Worker = Awaited<ReturnType<typeof childWorker>>;
    const batch = async (worker: Worker, queue: string, prefix: string, count: number, concurrent: boolean) => {
      const ids = Array.from({ length: count }, (_, i) => `${prefix}-${String(i).padStart(5, '0')}`);
      worker.resetPeak();
      const rss = rssSampler();
      const t0 = Date.now();
      if (concurrent) {
        const handles = await Promise.all(ids.map(async (id) => startOnboarding(client, await spec(id), { taskQueue: queue, siteQueues: false })));
        await Promise.all(handles.map((h) => h.result()));
      } else {
        for (const id of ids) await (await startOnboarding(client, await spec(id), { taskQueue: queue, siteQueues: false })).result();
      }
      const wallMs = Date.now() - t0;
      const workerPeak = worker.peakMiB();
      const peak = rss.stop();
      const spans = await worker.spans(ids);
      const gaps = ids.flatMap((id) => stepGaps(spans[id] ?? {}));
      const steps = ids.reduce((a, id) => a + Object.keys(spans[id] ?? {}).length, 0);
      const events = await historyLengths(
        client,
        ids.slice(0, 20).map((id) => `onboard-${id}`),
      );
      return { count, wallMs, gaps, steps, events: events.reduce((a, b) => a + b, 0) / events.length, peak, workerPeak };
    };
    type Batch = Awaited<ReturnType<typeof batch>>;
    const results: Array<{ label: string; tuning: WorkerTuning; nodeFlags: string[]; startPeak: number; solo: Batch; many: Batch }> = [];
    for (const [i, r] of ENGINE_RUNS.entries()) {
      const queue = `bench-engine-${process.pid}-${i}`;
      ctx.log(
        `engine, ${r.label} worker ${JSON.stringify(r.tuning)} ${r.nodeFlags.join(' ') || '(node default heap)'}: 3 onboardings one at a time, then ${n} at once`,
      );
      const worker = await childWorker(ctx, queue, r.tuning, r.nodeFlags, bundle);
      try {
        const solo = await batch(worker, queue, `bs${process.pid}-${i}`, 3, false);
        const many = await batch(worker, queue, `bc${process.pid}-${i}`, n, true);
        results.push({ ...r, startPeak: worker.startPeakMiB, solo, many });
        ctx.log(`engine, ${r.label}: ${n} in ${many.wallMs / 1000} s, worker peak RSS ${many.workerPeak} MiB`);
      } finally {
        await worker.stop();
      }
    }
    const before = results[0]!.many;
    const heap = (flags: string[]) => (flags.length ? flags.map((f) => f.replace(/^--max-(old|semi)-space-size=(\d+)$/, '$1 $2')).join(', ') : 'node default');
    const row = (label: string, run: (typeof results)[number], r: Batch) => {
      const { tuning, solo } = run;
      const perS = r.count / (r.wallMs / 1000);
      return [
        label,
        `${tuning.maxCachedWorkflows} / ${tuning.maxConcurrentWorkflowTaskExecutions} / ${tuning.maxConcurrentActivityTaskExecutions}`,
        heap(run.nodeFlags),
        r.count,
        r.wallMs / 1000,
        perS,
        r === solo ? '–' : ratio(perS, before.count / (before.wallMs / 1000)),
        r.steps / (r.wallMs / 1000),
        percentile(r.gaps, 50),
        percentile(r.gaps, 99),
        ratio(percentile(r.gaps, 50), percentile(solo.gaps, 50)),
        r.events,
        r.workerPeak,
        r === solo ? '–' : ratio(r.workerPeak, before.workerPeak),
        r.peak,
      ];
    };
    const tuned = results[results.length - 1]!;
    ctx.shared.engineThroughput = tuned.many.count / (tuned.many.wallMs / 1000);
    const table: Table = {
      scenario: 'engine',
      title: this.title,
      baseline:
        'step gaps: the same worker running the onboarding one at a time; throughput and worker RSS: the worker with the options before tuning (before), in the same run',
      columns: [
        'run',
        'cache / wf tasks / activities',
        'heap MiB',
        'onboardings',
        'wall s',
        'onboardings/s',
        'vs before',
        'steps/s',
        'step gap p50 ms',
        'step gap p99 ms',
        'p50 vs solo',
        'events/onboarding',
        'worker peak RSS MiB',
        'RSS vs before',
        'bench peak RSS MiB',
      ],
      rows: results.flatMap((r) => [row(`${r.label}: one at a time`, r, r.solo), row(`${r.label}: all at once`, r, r.many)]),
      notes: [
        'simulator: the in-memory hosts of test/helpers/fake-steps.ts behind the real activity runner (no SSH, no host work); they live in the worker process, so its RSS includes them',
        `worker: createWorker (src/workers/worker.ts) in a child process of its own (bench/engine-worker.ts, node with tsx as bin/underlay runs it), one per run, ${bundle === 'at-start' ? 'bundling its workflows at start as underlay worker does' : 'loading the prebuilt workflow bundle (underlay worker bundles at start: more resident memory)'}; cache / wf tasks / activities = maxCachedWorkflows / maxConcurrentWorkflowTaskExecutions / maxConcurrentActivityTaskExecutions; heap = V8 old and semi space limits (node flags; bin/underlay gives \`underlay worker\` the tuned ones)`,
        `worker start: peak RSS from the process's start until it polls (${results.map((r) => `${r.label} ${r.startPeak} MiB`).join(', ')}), before the batches`,
        'worker peak RSS: the kernel’s high-water mark of that process (VmHWM in /proc/<pid>/status, reset through clear_refs before each batch); bench peak RSS: the bench process (client), sampled every 200 ms; the dev server is a third process',
        'step gap: from a step’s last host action to the next step’s first, on the host — activity completion, workflow task, next activity dispatch',
      ],
    };
    return table;
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
    // The production worker (the tuned options, bin/underlay's heap bounds) in its own process; the drift sweep
    // after this scenario reuses it, since its simulated hosts are the ones this fleet onboards.
    const worker = await childWorker(ctx, queue, WORKER_TUNING, tunedNodeFlags(), size === 'smoke' ? 'prebuilt' : 'at-start');
    ctx.atEnd(() => worker.stop());
    const dir = join(ctx.tmp, 'inventory');
    mkdirSync(dir, { recursive: true });
    for (let i = 0; i < n; i++) {
      const s = await spec(`fl${process.pid}-${String(i).padStart(5, '0')}`);
      writeFileSync(join(dir, `${s.id}.json`), JSON.stringify(s));
    }
    ctx.shared.fleetInventorySize = n;
    ctx.log(`fleet: ${n} servers, cap ${cap}, ${maxEventsPerRun} events per run`);
    worker.resetPeak();
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
    const workerPeak = worker.peakMiB();
    const peak = rss.stop();
    const runs = await runsOf(ctx.env.client, fleetWorkflowId(name));
    const total = runs.reduce((a, b) => a + b, 0);
    ctx.shared.fleetThroughput = p.counts.onboarded / wall;
    fleetRun = { dir, queue, worker };
    return {
      scenario: 'fleet',
      title: this.title,
      baseline: 'the engine scenario’s concurrent onboardings started directly by a client (onboardings/s)',
      columns: [
        'servers',
        'onboarded',
        'cap',
        'wall s',
        'servers/s',
        'vs engine',
        'runs',
        'events max/run',
        'events total',
        'events/server',
        'worker peak RSS MiB',
        'bench peak RSS MiB',
      ],
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
          workerPeak,
          peak,
        ],
      ],
      notes: [
        `phase ${p.phase}; continue-as-new at ${maxEventsPerRun} events; a run's history also holds the completions of onboardings started before its bound was reached`,
        `worker: the tuned production options (${WORKER_TUNING.maxCachedWorkflows} cached workflows, heap bounds ${tunedNodeFlags().join(' ')}) in a process of its own, the simulated hosts in it; worker peak RSS: its VmHWM over the rollout (reset at the start); bench peak RSS: the client process`,
      ],
    };
  },
};

/** What the fleet scenario leaves for the drift sweep: its inventory, queue and worker (whose hosts it onboarded). */
let fleetRun: { dir: string; queue: string; worker: Awaited<ReturnType<typeof childWorker>> } | undefined;

const drift: Scenario = {
  name: 'drift',
  title: 'Drift sweep over the fleet’s inventory (report mode)',
  needs: 'temporal',
  async run(ctx, size) {
    if (!fleetRun) throw new Error('the drift scenario sweeps the servers the fleet scenario onboarded: run it after fleet');
    // The fleet's worker: its simulated hosts answer the observation, every server onboarded and clean.
    const { dir, queue, worker } = fleetRun;
    const concurrency = SIZES.driftConcurrency[size];
    const n = ctx.shared.fleetInventorySize ?? 0;
    ctx.log(`drift: sweep of ${n} servers, ${concurrency} checks at once`);
    worker.resetPeak();
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
    const workerPeak = worker.peakMiB();
    const peak = rss.stop();
    const runs = await runsOf(ctx.env.client, h.workflowId);
    const checked = s.counts.clean + s.counts.drifted;
    return {
      scenario: 'drift',
      title: this.title,
      baseline: 'the fleet scenario’s onboardings (servers/s)',
      columns: [
        'servers',
        'checked',
        'drifted',
        'concurrency',
        'wall s',
        'servers/s',
        'vs fleet',
        'runs',
        'events max/run',
        'worker peak RSS MiB',
        'bench peak RSS MiB',
      ],
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
          workerPeak,
          peak,
        ],
      ],
      notes: [
        'every server onboarded by the fleet scenario and observed on its simulated host (all six steps each): a driftCheck child per server; the sweep continues as new per inventory page',
        'worker: the fleet scenario’s (same process, same simulated hosts); its peak RSS reset at the sweep’s start',
      ],
    };
  },
};

/**
 * In order: the drift sweep needs the fleet's onboarded inventory, the fleet's ratio the engine's throughput. The lab
 * scenario (bench/lab-onboarding.ts) boots VMs: it runs only when named (`--only lab`), never in CI.
 */
export const SCENARIOS: Scenario[] = [engine, fleetScenario, drift, labScenario];
