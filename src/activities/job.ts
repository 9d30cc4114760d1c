/**
 * Long host-side work for steps, run as a detached host job (src/drivers/linux/job.ts) and tracked in the step's
 * durable checkpoints, so that losing the worker or the SSH session does not lose — or repeat — the work:
 *
 *   1. the step marks the job (`job:<purpose>`: unit, token, boot id) BEFORE starting it;
 *   2. a retry, or a new worker after a crash, finds the mark and reattaches by the unit's name: it waits for
 *      the job (bounded, heartbeating, with progress notes from its output) and never starts it a second time;
 *   3. the result (systemd's Result and exit status) is recorded in the mark before the unit is released, so a
 *      worker dying in between reads it again instead of guessing;
 *   4. a job that vanished (the host rebooted, someone stopped it) fails the attempt with a retryable error and
 *      its mark is cleared: the retry observes the host again and decides afresh.
 *
 * A job of the same name that this activity did not start (an earlier onboarding's, still running or never
 * released) is waited for, released, and only then is ours started. Cancellation does not stop a job: stopping
 * apt half-way is what leaves dpkg broken; the compensation waits for it instead.
 */
import { randomUUID } from 'node:crypto';
import { JobFailedError } from '../common/errors';
import { readBootId } from '../drivers/linux/reboot';
import { jobOutput, jobStatus, jobUnit, releaseJob, startJob, type JobStatus } from '../drivers/linux/job';
import type { Shell } from '../drivers/shell';
import type { StepIo } from './step';

export interface DetachedJob {
  /** Fixed per kind of work of a step: `install`, `purge`, `dpkg-recover`. Part of the unit name. */
  purpose: string;
  /** The host-side script (run by /bin/sh -c, as root, without the SSH session). */
  command: Shell;
  /** For people: "install qemu-system-x86 libvirt-daemon-system libvirt-clients". */
  what: string;
  /** Bound of the job on the host; the wait is bounded a little beyond it. */
  timeoutMs: number;
  /** Runs only before a new job is started (never on reattach): lock waits, recovery. */
  beforeStart?: () => Promise<void>;
  /** Whether a failure may succeed on a retry, from the job's output (default: yes). */
  retryable?: (output: string) => boolean;
  /** The message of a failure, from the job's output (default: "<what> failed"). */
  failure?: (output: string) => string;
  /** How often to look at the job (default 5 s). */
  pollMs?: number;
  /** Fallback (no systemd) state directory on the host. */
  stateDir?: string;
}

/** What a step's checkpoint keeps about its job (`io.marks['job:<purpose>']`). */
export interface JobMark {
  unit: string;
  token: string;
  /** `starting`: marked, the start command may or may not have run; `started`: it ran; `done`: succeeded, result read. */
  phase: 'starting' | 'started' | 'done';
  bootId?: string;
  /** Epoch ms of the start (the worker's clock). */
  startedAt: number;
  invocation?: string;
  result?: string;
}

export interface JobOutcome {
  unit: string;
  invocation?: string;
  /** The job's output (tail, capped); empty when an earlier attempt had read it already. */
  output: string;
  /** False when this attempt started the job; true when it found it started (or finished) by an earlier one. */
  reattached: boolean;
}

export const jobMarkKey = (purpose: string): string => `job:${purpose}`;

const DEFAULT_POLL_MS = 5_000;
/**
 * Heartbeats leave the worker at most this often (createWorker's heartbeat throttle, 2 s): waiting this long after
 * marking makes the mark durable before the job starts, so a worker killed right after the start still leaves it.
 */
const MARK_DURABLE_MS = 2_500;
/** The wait outlasts the job's own bound by this much (systemd's RuntimeMaxSec fires first). */
const WAIT_MARGIN_MS = 2 * 60_000;

function stepOf(io: StepIo<unknown>): string {
  return io.host.step ?? 'step';
}

export function unitFor(io: StepIo<unknown>, purpose: string): string {
  return jobUnit(io.spec.id, stepOf(io), purpose);
}

/** The job's mark if this activity started one that has not finished successfully yet. */
export function pendingJob(io: Pick<StepIo<unknown>, 'marks'>, purpose: string): JobMark | undefined {
  const m = io.marks[jobMarkKey(purpose)] as JobMark | null | undefined;
  return m && m.phase !== 'done' ? m : undefined;
}

const lastLine = (tail: string): string =>
  tail
    .trim()
    .split('\n')
    .pop()
    // eslint-disable-next-line no-control-regex -- control characters from a job's output must not reach a terminal
    ?.replace(/[\x00-\x1f\x7f]/g, ' ')
    .slice(0, 160) ?? '';

const tailOf = (output: string): string => output.trim().split('\n').slice(-8).join(' | ').slice(-1500);

function ended(s: JobStatus): string {
  if (s.result === 'lost') return 'its process gone without an exit status (killed)';
  if (s.killed) return `result ${s.result ?? '?'}, killed by signal ${s.exitStatus ?? '?'}`;
  return `result ${s.result ?? '?'}, exit status ${s.exitStatus ?? '?'}`;
}

/**
 * Runs (or reattaches to) this step's job for `purpose` and resolves once it succeeded. With `reattachOnly`, a job
 * is never started: resolves undefined when this activity has none pending.
 */
export async function runDetached(io: StepIo<unknown>, job: DetachedJob, opts: { reattachOnly?: boolean } = {}): Promise<JobOutcome | undefined> {
  const unit = unitFor(io, job.purpose);
  const key = jobMarkKey(job.purpose);
  const where = { host: io.host.label, step: io.host.step };
  const mark = io.marks[key] as JobMark | null | undefined;
  if (mark?.phase === 'done') {
    // Succeeded and recorded by an earlier attempt; make sure the name is free (idempotent).
    await releaseJob(io.host, unit, mark.token, job.stateDir);
    return { unit, ...(mark.invocation ? { invocation: mark.invocation } : {}), output: '', reattached: true };
  }
  const status = await jobStatus(io.host, unit, job.stateDir);
  if (mark && status.state !== 'not-found' && status.token === mark.token) {
    io.progress(`reattached to ${unit} (${job.what}), started ${Math.round((Date.now() - mark.startedAt) / 1000)} s ago`);
    return finish(
      io,
      job,
      { ...mark, ...(status.invocation ? { invocation: status.invocation } : {}) },
      status.state === 'running' ? await waitFor(io, job, unit, mark) : status,
      true,
    );
  }
  if (mark?.phase === 'started') {
    // Ours, started, and gone before its result was read.
    io.mark(key, null);
    const boot = await readBootId(io.host).catch(() => undefined);
    const rebooted = boot !== undefined && mark.bootId !== undefined && boot !== mark.bootId;
    throw new JobFailedError(
      rebooted
        ? `the host rebooted while job ${unit} ran (${job.what}); its result is unknown — observing again`
        : `job ${unit} (${job.what}) is gone from the host before its result was read (stopped or reset by someone?) — observing again`,
      {
        ...where,
        command: unit,
        expected: `job token ${mark.token}`,
        observed: status.state === 'not-found' ? 'no such job' : `a job with token ${status.token ?? 'none'}`,
      },
      true,
    );
  }
  if (opts.reattachOnly) {
    if (mark) io.mark(key, null);
    return undefined;
  }
  if (status.state !== 'not-found') await settleForeign(io, job, unit, status);
  await job.beforeStart?.();
  const token = randomUUID();
  const bootId = await readBootId(io.host);
  const starting: JobMark = { unit, token, phase: 'starting', bootId, startedAt: Date.now() };
  // Marked before it is started: from here on no attempt starts a second one while this one may run.
  io.mark(key, starting);
  await io.sleep(MARK_DURABLE_MS);
  const r = await startJob(io.host, {
    unit,
    token,
    command: job.command,
    description: job.what,
    timeoutSec: job.timeoutMs / 1000,
    ...(job.stateDir ? { stateDir: job.stateDir } : {}),
  });
  if (r === 'exists') {
    throw new JobFailedError(`another job named ${unit} appeared while this one was being started; retrying`, { ...where, command: unit }, true);
  }
  const first = await jobStatus(io.host, unit, job.stateDir);
  const started: JobMark = { ...starting, phase: 'started', ...(first.invocation ? { invocation: first.invocation } : {}) };
  io.mark(key, started);
  io.progress(`started ${unit}: ${job.what}`);
  return finish(io, job, started, first.state === 'running' ? await waitFor(io, job, unit, started) : first, false);
}

async function waitFor(io: StepIo<unknown>, job: DetachedJob, unit: string, mark: JobMark): Promise<JobStatus> {
  const pollMs = job.pollMs ?? DEFAULT_POLL_MS;
  const deadline = mark.startedAt + job.timeoutMs + WAIT_MARGIN_MS;
  const rounds = Math.min(100_000, Math.max(1, Math.ceil((deadline - Date.now()) / pollMs) + 1));
  let s: JobStatus | undefined;
  for (let i = 0; i < rounds; i++) {
    s = await jobStatus(io.host, unit, job.stateDir);
    if (s.state !== 'running' || s.token !== mark.token) return s;
    const line = lastLine(s.tail);
    io.progress(`${job.what}: running for ${Math.round((Date.now() - mark.startedAt) / 1000)} s (${unit})${line ? ` — ${line}` : ''}`);
    if (Date.now() + pollMs > deadline) break;
    await io.sleep(pollMs);
  }
  throw new JobFailedError(
    `job ${unit} (${job.what}) is still running ${Math.round((Date.now() - mark.startedAt) / 1000)} s after it started, past its bound`,
    { host: io.host.label, step: io.host.step, command: unit, stderr: s ? tailOf(s.tail) : '' },
    true,
  );
}

async function finish(io: StepIo<unknown>, job: DetachedJob, mark: JobMark, s: JobStatus, reattached: boolean): Promise<JobOutcome> {
  const key = jobMarkKey(job.purpose);
  const where = { host: io.host.label, step: io.host.step, command: `${mark.unit} (${job.what})` };
  if (s.state === 'not-found' || s.token !== mark.token) {
    io.mark(key, null);
    throw new JobFailedError(`job ${mark.unit} (${job.what}) disappeared before its result was read — observing again`, where, true);
  }
  const invocation = s.invocation ?? mark.invocation;
  const output = await jobOutput(io.host, mark.unit, invocation, job.stateDir);
  if (s.state === 'exited') {
    // Recorded before the unit is released: a worker dying in between finds the result here, not a missing job.
    io.mark(key, { ...mark, phase: 'done', result: s.result ?? 'success', ...(invocation ? { invocation } : {}) } satisfies JobMark);
    await releaseJob(io.host, mark.unit, mark.token, job.stateDir);
    io.progress(`${job.what}: done (${mark.unit})`);
    return { unit: mark.unit, ...(invocation ? { invocation } : {}), output, reattached };
  }
  // Failed: the retry starts over (after observing and any recovery), so the mark goes.
  io.mark(key, null);
  await releaseJob(io.host, mark.unit, mark.token, job.stateDir);
  throw new JobFailedError(
    `${job.failure?.(output) ?? `${job.what} failed`}: job ${mark.unit} ended with ${ended(s)}`,
    { ...where, exitCode: s.exitStatus ?? null, stderr: tailOf(output || s.tail) },
    job.retryable?.(output) ?? true,
  );
}

/**
 * A job of our name that this activity did not start: an earlier activity's (a failed onboarding's install whose
 * worker died, or one still running while its workflow moved on). Wait for it, then free the name.
 */
async function settleForeign(io: StepIo<unknown>, job: DetachedJob, unit: string, first: JobStatus): Promise<void> {
  const where = { host: io.host.label, step: io.host.step, command: unit };
  if (!first.token) {
    throw new JobFailedError(`a unit named ${unit} exists that underlay did not start; not touching it`, { ...where, observed: first.state }, false);
  }
  let s = first;
  const pollMs = job.pollMs ?? DEFAULT_POLL_MS;
  const since = Date.now();
  const rounds = Math.min(100_000, Math.ceil((job.timeoutMs + WAIT_MARGIN_MS) / pollMs) + 1);
  for (let i = 0; s.state === 'running' && i < rounds; i++) {
    const line = lastLine(s.tail);
    io.progress(`waiting for an earlier underlay job ${unit} to finish (${Math.round((Date.now() - since) / 1000)} s)${line ? ` — ${line}` : ''}`);
    await io.sleep(pollMs);
    s = await jobStatus(io.host, unit, job.stateDir);
  }
  if (s.state === 'running') throw new JobFailedError(`an earlier underlay job ${unit} is still running`, { ...where, stderr: tailOf(s.tail) }, true);
  if (s.state !== 'not-found' && s.token) {
    io.progress(`releasing the earlier job ${unit} (${s.state}, ${ended(s)})`);
    await releaseJob(io.host, unit, s.token, job.stateDir);
  }
}
