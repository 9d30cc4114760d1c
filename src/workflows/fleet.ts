/**
 * onboardFleet — many servers, in a canary and waves, with a concurrency cap and a failure budget.
 *
 *   source (inventory dir | spec files | search over earlier onboardings), read page by page
 *     ─▶ canary: the first K servers ─▶ approval (or automatic) ─▶ wave 1 ─▶ wave 2 … (each wave finishes first)
 *   at most `concurrency` onboardings at once over the whole fleet; more than the budget failed → stop starting;
 *   the running ones finish, or are cancelled and rolled back (`onStop`); pause / resume / approve / abort.
 *
 * Each server is a child `onboardServer` under the server's own workflow id (`onboard-<id>`), so a fleet and a
 * single `underlay onboard` (or `underlay rollback`) never run on one server at once: a server already being
 * onboarded or rolled back is reported as skipped, never started again; one with a drift check that may change the
 * host is skipped too. Parent close policy ABANDON: onboardings are independent units — they survive the fleet's
 * continue-as-new (the next run follows them by their run ids), a terminated fleet, or a Temporal cancel of the
 * fleet; stopping them is an explicit `onStop: rollback`, carried out with `underlay cancel` semantics.
 *
 * History stays bounded: a run continues as new once its history reaches `maxEventsPerRun` events, carrying the
 * progress (counts, capped lists), the source cursor and the running onboardings.
 */
import {
  ApplicationFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  isCancellation,
  CancellationScope,
  ParentClosePolicy,
  proxyActivities,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { ChildWorkflowFailure, WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { Activities, FleetEntry, FleetPageSource } from '../activities';
import { onboardingWorkflowId, siteTaskQueue } from '../common/config';
import { SA_HYPERVISOR, SA_OUTCOME, SA_RACK, SA_SERVER_ID, SA_SITE } from '../common/search-attributes';
import type { ServerSpec } from '../spec/server';
import { plannedSteps } from '../steps';
import {
  abortFleetUpdate,
  approveFleetUpdate,
  CANARY_APPROVALS,
  FINAL_FLEET_PHASES,
  FLEET_DEFAULTS,
  FLEET_LIMITS,
  fleetProgressQuery,
  ON_STOP,
  pauseFleetUpdate,
  resumeFleetUpdate,
  type FleetAnswer,
  type FleetInput,
  type FleetPhase,
  type FleetProgress,
  type FleetRequest,
  type OnStop,
  type RunningServer,
  type ServerNote,
  type ServerOutcome,
  type WaveSummary,
} from './fleet-messages';
import { renderFleetDetails } from './fleet-status';
import type { OperatorAction } from './messages';
import { onboardServer } from './onboard';
import { onboardingDetails } from './onboard-status';
import { DRIFT_POLICY } from './policy';
import { rootMessage } from './saga';
import { checkRouting, type StepRouting } from './site-queue';

const { loadFleetPage, resolveFleetSearch, onboardingOutcomes } = proxyActivities<Activities>(DRIFT_POLICY.inventory);
const { cancelOnboardings } = proxyActivities<Activities>(DRIFT_POLICY.lookup);
const { blockingDrift } = proxyLocalActivities<Activities>(DRIFT_POLICY.lookup);

interface Options {
  concurrency: number;
  waveSize: number | null;
  canary: { size: number; approval: 'wait' | 'auto' } | null;
  budget: { count?: number; percent?: number };
  onStop: OnStop;
  pageSize: number;
  maxEventsPerRun: number;
}

export async function onboardFleet(input: FleetInput): Promise<FleetProgress> {
  const o = checkFleetInput(input);
  const info = workflowInfo();
  const carry = input.carry;
  const progress: FleetProgress = carry?.progress ?? {
    fleetId: info.workflowId,
    phase: o.canary ? 'canary' : 'rolling',
    source: describeSource(input),
    total: null,
    concurrency: o.concurrency,
    waveSize: o.waveSize,
    canary: o.canary,
    budget: { allowed: o.budget.count ?? 0, failed: 0, exceeded: false },
    onStop: o.onStop,
    counts: { seen: 0, started: 0, running: 0, onboarded: 0, failed: 0, cancelled: 0, skipped: 0, invalid: 0 },
    waves: [],
    foldedWaves: 0,
    running: [],
    failures: [],
    skipped: [],
    invalid: [],
    control: { pause: null, abort: null },
    runs: 0,
    historyEvents: 0,
    startedAt: new Date().toISOString(),
  };
  progress.runs++;

  let cursor = carry?.cursor;
  let runs = carry?.runs;
  let waveTaken = carry?.waveTaken ?? 0;
  let canaryDone = carry?.canaryDone ?? !o.canary;
  let exhausted = carry?.exhausted ?? false;
  let approved = !!progress.canary?.approvedBy;
  const running = new Map<string, RunningServer>(progress.running.map((r) => [r.serverId, r]));
  /** Onboardings an earlier run started: followed by polling (this run holds no handle on them). */
  const carried = new Set(running.keys());
  /** Started, then found racing a drift check that may change the host: cancelled at once, reported skipped. */
  const raceSkipped = new Map<string, string>();
  let stop: { reason: string; onStop: OnStop } | undefined =
    progress.phase === 'stopping' ? { reason: progress.stopReason ?? 'stopping', onStop: progress.control.abort?.onStop ?? o.onStop } : undefined;
  let cancelDone = false;
  /** Child starts in flight (each holds a slot of the cap). */
  let starting = 0;

  // ---- status: query, Web UI details, search attribute ----------------------------------------------------------
  let lastPhase: FleetPhase | undefined;
  const publish = (): void => {
    progress.counts.running = running.size;
    progress.running = [...running.values()].slice(0, FLEET_LIMITS.concurrency);
    progress.historyEvents = workflowInfo().historyLength;
    if (progress.phase !== lastPhase) {
      upsertSearchAttributes([{ key: SA_OUTCOME, value: progress.phase }]);
      lastPhase = progress.phase;
    }
    setCurrentDetails(renderFleetDetails(progress));
  };
  setHandler(fleetProgressQuery, () => {
    progress.historyEvents = workflowInfo().historyLength;
    return progress;
  });

  const setPhase = (phase: FleetPhase): void => {
    progress.phase = phase;
    publish();
  };

  const stopWith = (reason: string, onStop: OnStop): void => {
    if (stop) {
      // A later abort may escalate a stop that lets onboardings finish into one that rolls them back.
      if (onStop === 'rollback') stop.onStop = 'rollback';
      return;
    }
    stop = { reason, onStop };
    progress.stopReason = reason;
    setPhase('stopping');
  };

  registerFleetControl(progress, o, {
    stopWith,
    approve: (by) => {
      approved = true;
      progress.canary = { ...progress.canary!, approvedBy: by };
      publish();
    },
    publish,
  });

  // ---- the source, page by page ------------------------------------------------------------------------------------
  if (input.source.kind === 'search' && !runs) {
    runs = (await resolveFleetSearch(input.source.filter)).runs;
  }
  const pageSource: FleetPageSource = input.source.kind === 'search' ? { kind: 'runs', runs: runs ?? [] } : input.source;
  let page: FleetEntry[] = [];
  let lastPage = false;
  const fill = async (): Promise<void> => {
    if (page.length || exhausted) return;
    const p = await loadFleetPage({ source: pageSource, pageSize: o.pageSize, ...(cursor !== undefined ? { cursor } : {}) });
    if (progress.total === null) {
      progress.total = p.total;
      if (o.budget.percent !== undefined) {
        const byPercent = Math.floor((p.total * o.budget.percent) / 100);
        progress.budget.allowed = o.budget.count !== undefined ? Math.min(o.budget.count, byPercent) : byPercent;
      }
    }
    page = p.entries;
    lastPage = !p.more;
    if (!page.length) exhausted = true;
  };
  const nextEntry = async (): Promise<FleetEntry | undefined> => {
    await fill();
    const e = page.shift();
    if (!e) return undefined;
    cursor = e.cursor;
    if (!page.length && lastPage) exhausted = true;
    return e;
  };

  // ---- bookkeeping of one server ------------------------------------------------------------------------------------
  const note = (list: ServerNote[], n: ServerNote): void => {
    if (list.length < FLEET_LIMITS.listed) list.push({ ...n, reason: clip(n.reason) });
  };
  const currentWave = (): WaveSummary | undefined => {
    const w = progress.waves[progress.waves.length - 1];
    return w && !w.endedAt ? w : undefined;
  };
  const finish = (serverId: string, outcome: Exclude<ServerOutcome, 'invalid'>, reason?: string): void => {
    const r = running.get(serverId);
    if (!r) return;
    running.delete(serverId);
    carried.delete(serverId);
    const wave = progress.waves.find((w) => w.index === r.wave) ?? currentWave();
    const race = raceSkipped.get(serverId);
    const final: Exclude<ServerOutcome, 'invalid'> = race ? 'skipped' : outcome;
    progress.counts[final]++;
    if (wave) wave[final]++;
    if (final === 'failed') {
      note(progress.failures, { serverId, reason: reason ?? 'failed', wave: r.wave });
      progress.budget.failed++;
      if (progress.budget.failed > progress.budget.allowed) {
        progress.budget.exceeded = true;
        stopWith(`failure budget exceeded: ${progress.budget.failed} failed, at most ${progress.budget.allowed} allowed`, o.onStop);
      }
    } else if (final === 'skipped') note(progress.skipped, { serverId, reason: race ?? reason ?? 'skipped', wave: r.wave });
    else if (final === 'cancelled') note(progress.failures, { serverId, reason: `cancelled: ${reason ?? ''}`.trim(), wave: r.wave });
    publish();
  };

  /** Starts one server's onboarding; false when it was skipped instead. */
  const startOne = async (spec: ServerSpec, wave: WaveSummary): Promise<boolean> => {
    const skip = (reason: string): false => {
      progress.counts.skipped++;
      wave.skipped++;
      note(progress.skipped, { serverId: spec.id, reason, wave: wave.index });
      publish();
      return false;
    };
    const drift = await blockingDrift(spec.id);
    if (drift) return skip(`a drift check in ${drift} mode is running (drift-${spec.id}), which may change the host: not started`);
    const routing: StepRouting | undefined = input.siteQueues
      ? { taskQueue: siteTaskQueue(spec.site, info.taskQueue), site: spec.site, ...(input.siteCheck ? { check: input.siteCheck } : {}) }
      : undefined;
    let handle;
    try {
      handle = await startChild(onboardServer, {
        workflowId: onboardingWorkflowId(spec.id),
        args: [{ spec, ...(routing ? { stepRouting: routing } : {}) }],
        // Onboardings outlive this run (continue-as-new) and a terminated fleet; onStop stops them explicitly.
        parentClosePolicy: ParentClosePolicy.ABANDON,
        typedSearchAttributes: [
          { key: SA_SERVER_ID, value: spec.id },
          { key: SA_SITE, value: spec.site },
          { key: SA_RACK, value: spec.rack },
          { key: SA_HYPERVISOR, value: spec.hypervisor.kind },
          { key: SA_OUTCOME, value: 'running' },
        ],
        staticSummary: `Onboard ${spec.id} → ${spec.hypervisor.kind} (${spec.site}/${spec.rack}) · ${info.workflowId} ${wave.canary ? 'canary' : `wave ${wave.index}`}`,
        staticDetails: onboardingDetails(spec, plannedSteps(spec)),
      });
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        return skip(`already being onboarded or rolled back (${onboardingWorkflowId(spec.id)} is running): not started again`);
      }
      throw err;
    }
    const r: RunningServer = { serverId: spec.id, runId: handle.firstExecutionRunId, site: spec.site, wave: wave.index, startedAt: new Date().toISOString() };
    running.set(spec.id, r);
    progress.counts.started++;
    wave.size++;
    publish();
    void handle.result().then(
      () => finish(spec.id, 'onboarded'),
      (err: unknown) => finish(spec.id, childOutcome(err), clip(rootMessage(err))),
    );
    // A drift check that started while this onboarding was starting may have looked before it was visible: look
    // again, and yield to it (the first step, the cable check, changes nothing).
    const raced = await blockingDrift(spec.id);
    if (raced) {
      raceSkipped.set(spec.id, `a drift check in ${raced} mode started at the same time (drift-${spec.id}): cancelled before any change`);
      await getExternalWorkflowHandle(onboardingWorkflowId(spec.id), r.runId).cancel();
    }
    return true;
  };

  // Onboardings started by an earlier run: polled until they end (backing off while nothing changes).
  const followCarried = async (): Promise<void> => {
    let waitMs = 2_000;
    for (let look = 0; look < 100_000; look++) {
      const list = [...running.values()].filter((r) => carried.has(r.serverId));
      if (!list.length) return;
      await sleep(waitMs);
      const outcomes = await onboardingOutcomes(list.map((r) => ({ serverId: r.serverId, runId: r.runId })));
      let ended = false;
      for (const x of outcomes) {
        if (!x.closed) continue;
        ended = true;
        finish(x.serverId, x.outcome ?? 'failed', x.reason);
      }
      waitMs = ended ? 2_000 : Math.min(waitMs * 2, 30_000);
    }
  };

  // onStop rollback: `underlay cancel` for every running onboarding, once.
  const cancelRunning = async (reason: string): Promise<void> => {
    // No start begins once stopped; the ones in flight are waited for, so none escapes the cancel.
    await condition(() => starting === 0);
    if (cancelDone || !running.size) return;
    cancelDone = true;
    await cancelOnboardings({ serverIds: [...running.keys()], by: `fleet ${info.workflowId}`, reason: clip(reason, 200) });
  };

  const shouldContinueAsNew = (): boolean => {
    const i = workflowInfo();
    return i.historyLength >= o.maxEventsPerRun || i.continueAsNewSuggested;
  };
  const continueNow = async (): Promise<never> => {
    await condition(() => starting === 0 && allHandlersFinished());
    progress.running = [...running.values()];
    progress.counts.running = running.size;
    return continueAsNew<typeof onboardFleet>({ ...input, carry: { progress, cursor, runs, waveTaken, canaryDone, exhausted } });
  };

  publish();
  const watchers = [
    followCarried(),
    (async () => {
      await condition(() => stop?.onStop === 'rollback');
      await cancelRunning(stop!.reason);
    })(),
  ];
  void Promise.all(watchers).catch(() => undefined);

  try {
    while (!stop) {
      await fill();
      if (exhausted && !page.length && !currentWave()) break;
      // The open wave, or a new one: the canary first.
      let wave = currentWave();
      if (!wave) {
        const index = progress.waves.length ? progress.waves[progress.waves.length - 1]!.index + 1 : canaryDone ? 1 : 0;
        const isCanary = !canaryDone;
        wave = {
          index,
          canary: isCanary,
          size: 0,
          planned: isCanary ? o.canary!.size : (o.waveSize ?? 0),
          onboarded: 0,
          failed: 0,
          cancelled: 0,
          skipped: 0,
          startedAt: new Date().toISOString(),
        };
        progress.waves.push(wave);
        if (progress.waves.length > FLEET_LIMITS.waves) {
          const folded = progress.waves.findIndex((w) => !!w.endedAt);
          if (folded >= 0) {
            progress.waves.splice(folded, 1);
            progress.foldedWaves++;
          }
        }
        waveTaken = 0;
        setPhase(isCanary ? 'canary' : 'rolling');
      }
      const planned = wave.canary ? o.canary!.size : (o.waveSize ?? Infinity);
      // Starts run side by side (several in one workflow task), each holding a slot of the cap until it is known
      // whether it started; a server skipped at the start gives its place in the wave back.
      while (!stop) {
        await condition(
          () =>
            !!stop || (waveTaken >= planned && starting === 0) || (!progress.control.pause && waveTaken < planned && running.size + starting < o.concurrency),
        );
        if (stop || waveTaken >= planned) break;
        if (shouldContinueAsNew()) await continueNow();
        const e = await nextEntry();
        if (!e) break;
        if ('invalid' in e) {
          progress.counts.invalid++;
          note(progress.invalid, { serverId: e.invalid.name, reason: e.invalid.reason });
          publish();
          continue;
        }
        progress.counts.seen++;
        waveTaken++;
        starting++;
        const w = wave;
        void startOne(e.spec, w).then(
          (started) => {
            starting--;
            if (!started) waveTaken--;
          },
          (err: unknown) => {
            starting--;
            waveTaken--;
            progress.counts.failed++;
            w.failed++;
            note(progress.failures, { serverId: e.spec.id, reason: `could not be started: ${rootMessage(err)}`, wave: w.index });
            publish();
          },
        );
      }
      // A wave ends when every server of it has ended.
      await condition(() => starting === 0 && running.size === 0);
      wave.endedAt = new Date().toISOString();
      publish();
      if (wave.canary) {
        canaryDone = true;
        if (wave.failed > 0 || wave.cancelled > 0) {
          stopWith(`canary failed: ${wave.failed + wave.cancelled} of ${wave.size} canary server(s) did not onboard`, o.onStop);
          break;
        }
        await fill();
        if (exhausted && !page.length) break;
        if (o.canary!.approval === 'wait' && !approved && !stop) {
          setPhase('awaiting-approval');
          await condition(() => approved || !!stop);
        }
      }
    }
    // Stopped (or the source ran out): wait for what runs — finishing, or rolling back under onStop rollback.
    if (stop && (running.size || starting)) setPhase('stopping');
    await condition(() => starting === 0 && running.size === 0);
  } catch (err) {
    if (!isCancellation(err)) throw err;
    // A Temporal cancel of the fleet: the onboardings are abandoned, unless onStop says roll them back.
    await CancellationScope.nonCancellable(async () => {
      progress.stopReason = 'the fleet workflow was cancelled';
      if (o.onStop === 'rollback') await cancelRunning('the fleet workflow was cancelled');
      progress.endedAt = new Date().toISOString();
      setPhase('aborted');
    });
    throw err;
  }

  progress.endedAt = new Date().toISOString();
  setPhase(progress.control.abort ? 'aborted' : stop ? 'stopped' : 'completed');
  await condition(allHandlersFinished);
  return progress;
}

/** How a child onboarding ended, from its failure: cancelled (by `underlay cancel` or Temporal) or failed. */
function childOutcome(err: unknown): 'failed' | 'cancelled' {
  if (isCancellation(err)) return 'cancelled';
  const cause = err instanceof ChildWorkflowFailure ? err.cause : err;
  if (cause instanceof ApplicationFailure && cause.type === 'OnboardingCancelled') return 'cancelled';
  return 'failed';
}

function clip(s: string, n: number = FLEET_LIMITS.reasonChars): string {
  const one = s.replace(/\s+/g, ' ').trim();
  return one.length > n ? `${one.slice(0, n - 1)}…` : one;
}

function describeSource(input: FleetInput): string {
  const s = input.source;
  if (s.kind === 'inventory') return `inventory ${s.dir}`;
  if (s.kind === 'files') return `${s.files.length} spec file(s)`;
  const f = s.filter;
  const parts = [
    ...(['site', 'rack', 'hypervisor', 'outcome'] as const).filter((k) => f[k]?.length).map((k) => `${k} ${f[k]!.join('|')}`),
    ...(f.fleet ? [`fleet ${f.fleet}`] : []),
  ];
  return `earlier onboardings: ${parts.join(', ')}`;
}

/** Refuses malformed input (anything can start a workflow) before anything starts; returns the options with defaults. */
function checkFleetInput(input: FleetInput): Options {
  const bad: string[] = [];
  const int = (v: unknown, lo: number, hi: number, what: string): number | undefined => {
    if (v === undefined) return undefined;
    if (!Number.isInteger(v) || (v as number) < lo || (v as number) > hi) bad.push(`${what}: an integer ${lo}–${hi}`);
    return v as number;
  };
  const s = input?.source;
  if (!s || typeof s !== 'object') bad.push('source: required');
  else if (s.kind === 'inventory') {
    if (typeof s.dir !== 'string' || !s.dir.startsWith('/') || s.dir.length > 4096) bad.push('source.dir: an absolute path');
  } else if (s.kind === 'files') {
    if (!Array.isArray(s.files) || !s.files.length || s.files.length > FLEET_LIMITS.files) bad.push(`source.files: 1–${FLEET_LIMITS.files} paths`);
    else if (s.files.some((f) => typeof f !== 'string' || !f.startsWith('/') || f.length > 4096)) bad.push('source.files: absolute paths');
  } else if (s.kind === 'search') {
    if (typeof s.filter !== 'object' || s.filter === null) bad.push('source.filter: an object');
  } else bad.push('source.kind: inventory, files or search');
  const concurrency = int(input.concurrency, 1, FLEET_LIMITS.concurrency, 'concurrency') ?? FLEET_DEFAULTS.concurrency;
  const waveSize = int(input.waveSize, 1, FLEET_LIMITS.waveSize, 'waveSize') ?? null;
  let canary: Options['canary'] = null;
  if (input.canary !== undefined) {
    const size = int(input.canary?.size, 0, FLEET_LIMITS.canary, 'canary.size') ?? 0;
    if (!(CANARY_APPROVALS as readonly unknown[]).includes(input.canary?.approval)) bad.push(`canary.approval: ${CANARY_APPROVALS.join(' or ')}`);
    if (size > 0) canary = { size, approval: input.canary.approval };
  }
  const count = int(input.failureBudget?.count, 0, 1_000_000, 'failureBudget.count');
  const percent = input.failureBudget?.percent;
  if (percent !== undefined && !(typeof percent === 'number' && percent >= 0 && percent <= 100)) bad.push('failureBudget.percent: 0–100');
  const onStop = input.onStop ?? FLEET_DEFAULTS.onStop;
  if (!(ON_STOP as readonly string[]).includes(onStop)) bad.push(`onStop: ${ON_STOP.join(' or ')}`);
  const pageSize = int(input.pageSize, 1, FLEET_LIMITS.pageSize, 'pageSize') ?? FLEET_DEFAULTS.pageSize;
  const maxEventsPerRun = int(input.maxEventsPerRun, FLEET_LIMITS.minEvents, FLEET_LIMITS.maxEvents, 'maxEventsPerRun') ?? FLEET_DEFAULTS.maxEventsPerRun;
  if (input.siteQueues !== undefined && typeof input.siteQueues !== 'boolean') bad.push('siteQueues: true or false');
  if (input.siteCheck !== undefined) {
    try {
      checkRouting({ taskQueue: 'x', site: 'x', check: input.siteCheck });
    } catch (err) {
      bad.push((err as Error).message.replace('stepRouting: ', 'siteCheck: '));
    }
  }
  if (bad.length) {
    upsertSearchAttributes([{ key: SA_OUTCOME, value: 'stopped' }]);
    throw ApplicationFailure.create({ type: 'InvalidFleetInput', nonRetryable: true, message: `bad fleet input: ${bad.join('; ')}` });
  }
  return {
    concurrency,
    waveSize,
    canary,
    budget:
      count === undefined && percent === undefined
        ? { count: 0 }
        : { ...(count !== undefined ? { count } : {}), ...(percent !== undefined ? { percent } : {}) },
    onStop,
    pageSize,
    maxEventsPerRun,
  };
}

// ---- operator control: updates with validators (a refused request leaves no trace in the history) ------------------

interface ControlHooks {
  stopWith(reason: string, onStop: OnStop): void;
  approve(by: string): void;
  publish(): void;
}

function registerFleetControl(progress: FleetProgress, o: Options, hooks: ControlHooks): void {
  const action = (req: FleetRequest | undefined): OperatorAction => ({
    by: req?.by ?? 'unknown',
    at: new Date().toISOString(),
    ...(req?.reason ? { reason: req.reason } : {}),
  });
  const answer = (message: string): FleetAnswer => ({ fleetId: progress.fleetId, phase: progress.phase, message });
  const active = (what: string) => {
    if (FINAL_FLEET_PHASES.includes(progress.phase)) throw new Error(`cannot ${what}: the fleet ${progress.fleetId} has ended (${progress.phase})`);
  };
  const starting = (what: string) => {
    active(what);
    if (progress.phase === 'stopping') throw new Error(`cannot ${what}: the fleet is stopping (${progress.stopReason ?? ''})`);
  };

  setHandler(
    pauseFleetUpdate,
    (req) => {
      progress.control.pause = action(req);
      hooks.publish();
      return answer(`paused: no new server starts; ${progress.counts.running} running go on`);
    },
    {
      description: 'start no new server until resumed (the running onboardings go on)',
      validator: (req) => {
        checkRequest(req);
        starting('pause');
        if (progress.control.pause) throw new Error(`the fleet is already paused (by ${progress.control.pause.by})`);
      },
    },
  );
  setHandler(
    resumeFleetUpdate,
    (req) => {
      progress.control.pause = null;
      hooks.publish();
      return answer(`resumed${req?.by ? ` by ${req.by}` : ''}`);
    },
    {
      description: 'resume a paused fleet',
      validator: (req) => {
        checkRequest(req);
        active('resume');
        if (!progress.control.pause) throw new Error('the fleet is not paused');
      },
    },
  );
  setHandler(
    approveFleetUpdate,
    (req) => {
      hooks.approve(req?.by ?? 'unknown');
      return answer(`approved: the rollout goes on after the canary${progress.control.pause ? ' (still paused: resume to start servers)' : ''}`);
    },
    {
      description: 'approve the rollout after a successful canary',
      validator: (req) => {
        checkRequest(req);
        active('approve');
        if (progress.phase !== 'awaiting-approval') {
          throw new Error(
            `nothing awaits approval (phase ${progress.phase}${progress.canary?.approval === 'wait' ? '' : '; this fleet has no canary approval'})`,
          );
        }
      },
    },
  );
  setHandler(
    abortFleetUpdate,
    (req) => {
      const onStop = req?.onStop ?? o.onStop;
      progress.control.abort = { ...action(req), onStop };
      hooks.stopWith(`aborted by ${progress.control.abort.by}${req?.reason ? ` (${req.reason})` : ''}`, onStop);
      hooks.publish();
      return answer(
        onStop === 'rollback'
          ? `aborting: no new server starts; ${progress.counts.running} running are being cancelled and rolled back`
          : `aborting: no new server starts; ${progress.counts.running} running finish`,
      );
    },
    {
      description: 'start no new server; the running onboardings finish, or (onStop rollback) are cancelled and rolled back',
      validator: (req) => {
        checkRequest(req);
        active('abort');
        if (progress.control.abort) throw new Error(`the fleet is already aborted (by ${progress.control.abort.by})`);
        if (req?.onStop !== undefined && !(ON_STOP as readonly string[]).includes(req.onStop)) throw new Error(`onStop: ${ON_STOP.join(' or ')}`);
      },
    },
  );
}

function checkRequest(req: unknown): void {
  if (req === undefined || req === null) return;
  if (typeof req !== 'object') throw new Error('expected { by?: string, reason?: string }');
  const r = req as Record<string, unknown>;
  if (r.by !== undefined && (typeof r.by !== 'string' || r.by.length > 100)) throw new Error('by: a name of at most 100 characters');
  if (r.reason !== undefined && (typeof r.reason !== 'string' || r.reason.length > 300)) throw new Error('reason: at most 300 characters');
}
