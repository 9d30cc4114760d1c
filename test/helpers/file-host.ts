/**
 * A host stand-in that several worker processes share: the six steps over a directory instead of a machine.
 * Each step's state is a file (`state/<server>.<step>`), and every observe / apply / undo appends one JSON line
 * to `events` (O_APPEND, one short write: whole lines even with concurrent writers) naming the worker process
 * and the activity attempt — so a test counts how often an effect happened and on which worker, across
 * processes that come and go. `plan.json` makes applies slow on cue (the one thing a real host does not do on
 * demand): `applyMs` before the change is made, `settleMs` after it (a change that is done but still settling,
 * as LACP negotiation or a package install's postinst), and `hold` stops a server's step at a point — before its
 * apply, during it, after it — until the plan no longer says so (bounded), for a test to kill the worker there.
 */
import { Context } from '@temporalio/activity';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StepSet } from '../../src/activities';
import { diffState } from '../../src/activities/diff';
import { wholeSpec, type Step } from '../../src/activities/step';
import { VerificationError } from '../../src/common/errors';
import { STEPS, type StepName } from '../../src/steps';

export type HoldPoint = 'before' | 'during' | 'after';

export interface FileHostPlan {
  applyMs?: Partial<Record<StepName, number>>;
  settleMs?: Partial<Record<StepName, number>>;
  /**
   * Where a server's step waits (recording a `held` event first): `before` the apply begins (observed and planned,
   * nothing changed), `during` it (begun, the change not made yet), `after` it (the change made, the activity not
   * finished). The wait ends when the plan drops the hold, or after 5 minutes.
   */
  hold?: Array<{ server: string; step: StepName; at: HoldPoint }>;
}

export interface HostEvent {
  pid: number;
  server: string;
  step: StepName;
  event: 'observe' | 'held' | 'apply' | 'applied' | 'settled' | 'undo';
  /** For `held`: where. */
  hold?: HoldPoint;
  attempt: number;
  at: number;
}

export class FileHost {
  readonly dir: string;

  constructor(dir?: string) {
    this.dir = dir ?? mkdtempSync(join(tmpdir(), 'underlay-filehost-'));
    mkdirSync(join(this.dir, 'state'), { recursive: true });
  }

  setPlan(plan: FileHostPlan): void {
    writeFileSync(join(this.dir, 'plan.tmp'), JSON.stringify(plan));
    renameSync(join(this.dir, 'plan.tmp'), join(this.dir, 'plan.json'));
  }

  plan(): FileHostPlan {
    const p = join(this.dir, 'plan.json');
    return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as FileHostPlan) : {};
  }

  state(server: string, step: StepName): string {
    const p = join(this.dir, 'state', `${server}.${step}`);
    return existsSync(p) ? readFileSync(p, 'utf8') : 'pristine';
  }

  setState(server: string, step: StepName, value: string): void {
    const p = join(this.dir, 'state', `${server}.${step}`);
    writeFileSync(`${p}.${process.pid}.tmp`, value);
    renameSync(`${p}.${process.pid}.tmp`, p);
  }

  record(server: string, step: StepName, event: HostEvent['event'], at?: HoldPoint): void {
    let attempt = 0;
    try {
      attempt = Context.current().info.attempt;
    } catch {
      // not inside an activity
    }
    const line: HostEvent = { pid: process.pid, server, step, event, attempt, at: Date.now(), ...(at ? { hold: at } : {}) };
    appendFileSync(join(this.dir, 'events'), JSON.stringify(line) + '\n');
  }

  events(filter: Partial<HostEvent> = {}): HostEvent[] {
    const p = join(this.dir, 'events');
    if (!existsSync(p)) return [];
    return readFileSync(p, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as HostEvent)
      .filter((e) => Object.entries(filter).every(([k, v]) => e[k as keyof HostEvent] === v));
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

type S = { value: string };

/** Waits while the plan holds this server's step at `at` (bounded: 5 min). */
async function holdAt(host: FileHost, io: { spec: { id: string }; sleep(ms: number): Promise<void> }, step: StepName, at: HoldPoint): Promise<void> {
  const held = () => (host.plan().hold ?? []).some((h) => h.server === io.spec.id && h.step === step && h.at === at);
  if (!held()) return;
  host.record(io.spec.id, step, 'held', at);
  for (let i = 0; i < 1_500 && held(); i++) await io.sleep(200);
}

function fileStep(name: StepName, host: FileHost): Step<S> {
  return {
    name,
    want: wholeSpec,
    async observe(io) {
      host.record(io.spec.id, name, 'observe');
      return { value: host.state(io.spec.id, name) };
    },
    plan: (_spec, o) => (o.value === 'applied' ? [] : [{ field: name, from: o.value, to: 'applied' }]),
    async apply(io) {
      const plan = host.plan();
      await holdAt(host, io, name, 'before');
      host.record(io.spec.id, name, 'apply');
      if (plan.applyMs?.[name]) await io.sleep(plan.applyMs[name]);
      await holdAt(host, io, name, 'during');
      host.setState(io.spec.id, name, 'applied');
      host.record(io.spec.id, name, 'applied');
      if (plan.settleMs?.[name]) await io.sleep(plan.settleMs[name]);
      await holdAt(host, io, name, 'after');
      host.record(io.spec.id, name, 'settled');
    },
    async verify(io) {
      const now = host.state(io.spec.id, name);
      if (now !== 'applied') throw new VerificationError('not applied', { host: io.spec.id, step: name, expected: 'applied', observed: now });
    },
    async undo(io, pre) {
      host.record(io.spec.id, name, 'undo');
      host.setState(io.spec.id, name, pre.value);
    },
    diff: (a, b) => diffState(a, b),
  };
}

/** The six steps over a FileHost directory (the same directory in every worker process). */
export function fileHostSteps(host: FileHost): StepSet {
  return Object.fromEntries(STEPS.map((s) => [s, fileStep(s, host)])) as StepSet;
}
