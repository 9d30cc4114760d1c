/**
 * Fault injection for workflow tests: six Steps over an in-memory "host", run through the real activity
 * runner (run-step.ts) so retries, heartbeated pre-states, failure details and cancellation are the real ones.
 * Only the host is simulated — it is the one thing a real peer cannot fail on cue.
 */
import type { StepSet } from '../../src/activities';
import { diffState } from '../../src/activities/diff';
import type { Connector } from '../../src/activities/run-step';
import { wholeSpec, type Step } from '../../src/activities/step';
import { RemoteHost } from '../../src/drivers/remote';
import { STEPS, type StepName } from '../../src/steps';

export type Phase = 'observe' | 'apply' | 'verify' | 'undo';

export interface Fault {
  step: StepName;
  phase: Phase;
  /** Builds the error to throw. */
  error: () => Error;
  /** How many times it fires (default: always). */
  times?: number;
  /** Instead of throwing, wait (heartbeating) until cancelled. */
  block?: boolean;
}

export class FakeHost {
  state: Record<StepName, string> = Object.fromEntries(STEPS.map((s) => [s, 'pristine'])) as Record<StepName, string>;
  calls: string[] = [];
  faults: Fault[] = [];
  /** Health a re-apply cannot fix, per step (a lost LACP partner on the fake switch): what its health() reports. */
  unhealthy: Partial<Record<StepName, string>> = {};
  /** Each apply takes this long (heartbeating sleep), so onboardings overlap in time. */
  applyMs = 0;
  /** The host's own record of when any step first and last touched it (ms since epoch): its onboarding's span. */
  firstAt?: number;
  lastAt?: number;
  /** Per step, when it was first and last touched (the benchmark's engine overhead: gaps between steps). */
  spans: Partial<Record<StepName, [number, number]>> = {};
  /** Resolves when a blocking fault starts waiting (so a test can cancel mid-step). */
  blocked!: Promise<void>;
  private markBlocked!: () => void;

  constructor() {
    this.resetBlocked();
  }

  resetBlocked(): void {
    this.blocked = new Promise((r) => (this.markBlocked = r));
  }

  async hit(step: StepName, phase: Phase, sleep: (ms: number) => Promise<void>): Promise<void> {
    this.touch(step);
    if (phase === 'apply' && this.applyMs) await sleep(this.applyMs);
    try {
      await this.fault(step, phase, sleep);
    } finally {
      this.touch(step);
    }
  }

  private touch(step: StepName): void {
    const now = Date.now();
    this.firstAt ??= now;
    this.lastAt = now;
    const span = this.spans[step];
    if (span) span[1] = now;
    else this.spans[step] = [now, now];
  }

  private async fault(step: StepName, phase: Phase, sleep: (ms: number) => Promise<void>): Promise<void> {
    const f = this.faults.find((x) => x.step === step && x.phase === phase && (x.times ?? Infinity) > 0);
    if (!f) return;
    if (f.times !== undefined) f.times--;
    if (f.block) {
      this.markBlocked();
      for (let i = 0; i < 600; i++) await sleep(100); // bounded: 60 s, cancellation ends it sooner
      return;
    }
    throw f.error();
  }

  undoCalls(): string[] {
    return this.calls.filter((c) => c.startsWith('undo:')).map((c) => c.slice(5));
  }

  applyCalls(): string[] {
    return this.calls.filter((c) => c.startsWith('apply:')).map((c) => c.slice(6));
  }

  /** Someone changed the host by hand: these steps no longer hold. */
  drift(...steps: StepName[]): void {
    for (const s of steps) this.state[s] = 'drifted';
  }
}

/** Several servers behind one StepSet, one FakeHost per spec id (created on first use) — for drift sweeps. */
export class FakeFleet {
  readonly hosts = new Map<string, FakeHost>();

  host(serverId: string): FakeHost {
    let h = this.hosts.get(serverId);
    if (!h) this.hosts.set(serverId, (h = new FakeHost()));
    return h;
  }
}

type S = { value: string };

function fakeStep(name: StepName, hostOf: (serverId: string) => FakeHost): Step<S> {
  return {
    name,
    want: wholeSpec,
    async observe(io) {
      const host = hostOf(io.spec.id);
      await host.hit(name, 'observe', io.sleep);
      return { value: host.state[name] };
    },
    plan: (_spec, o) => (o.value === 'applied' ? [] : [{ field: name, from: o.value, to: 'applied' }]),
    async apply(io) {
      const host = hostOf(io.spec.id);
      host.calls.push(`apply:${name}`);
      host.state[name] = 'applied';
      await host.hit(name, 'apply', io.sleep);
    },
    async verify(io) {
      await hostOf(io.spec.id).hit(name, 'verify', io.sleep);
    },
    async undo(io, pre) {
      const host = hostOf(io.spec.id);
      host.calls.push(`undo:${name}`);
      await host.hit(name, 'undo', io.sleep);
      host.state[name] = pre.value;
    },
    diff: (a, b) => diffState(a, b),
    async health(io) {
      const sick = hostOf(io.spec.id).unhealthy[name];
      return sick ? [{ field: `${name}.health`, expected: 'healthy', observed: sick, hint: `the fake ${name}` }] : [];
    },
  };
}

export function fakeSteps(host: FakeHost): StepSet {
  return Object.fromEntries(STEPS.map((s) => [s, fakeStep(s, () => host)])) as StepSet;
}

/** The six steps over a fleet: each server's steps act on its own FakeHost. */
export function fleetSteps(fleet: FakeFleet): StepSet {
  return Object.fromEntries(STEPS.map((s) => [s, fakeStep(s, (id) => fleet.host(id))])) as StepSet;
}

/** A connector that opens nothing: fake steps never run commands. */
export const nullConnector: Connector = async (spec, step) => ({
  host: new RemoteHost({ exec: () => Promise.reject(new Error('fake host runs no commands')) }, spec.id, true, step),
  close: () => undefined,
});
