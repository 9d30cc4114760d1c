/**
 * Reboot-and-wait for steps: issue a reboot exactly once per activity, then wait — bounded in time and count —
 * for the host to answer over a new SSH session with a new boot identity.
 *
 * Exactly once across retries and worker restarts: the step marks the reboot (REBOOT_MARK, with the old boot id)
 * in the activity's heartbeat details BEFORE issuing it. A later attempt that finds the mark only waits: the
 * runner keeps reconnecting until the host answers (run-step.ts), and this helper compares boot ids. A second
 * reboot within one activity is refused — a step that needs one more has a bug or a host that does not boot
 * what it was told to, and either way an operator must look.
 */
import { NotConvergedError, UnderlayError, VerificationError } from '../common/errors';
import type { RemoteHost } from '../drivers/remote';
import { issueReboot, readBootId } from '../drivers/linux/reboot';
import type { StepName } from '../steps';
import { REBOOT_MARK, type RebootMark, type StepIo } from './step';

/** How a platform reads its boot identity and issues a detached reboot. */
export interface RebootOps {
  /** Something that differs on every boot (Linux: /proc/sys/kernel/random/boot_id). */
  bootId(host: RemoteHost): Promise<string>;
  /** Schedules the reboot and returns while the session is still up. */
  issue(host: RemoteHost): Promise<void>;
}

export const LINUX_REBOOT: RebootOps = {
  bootId: readBootId,
  issue: async (host) => void (await issueReboot(host)),
};

export interface RebootOptions {
  /** Why, for the progress log ("boot into Xen"). */
  reason: string;
  /** How long the host may take to come back (POST + boot). */
  timeoutMs: number;
  /** Pause between reconnect attempts. */
  intervalMs: number;
}

export interface RebootOutcome {
  from: string;
  to: string;
  /** From issuing the reboot to the new boot answering (spans worker restarts). */
  waitedMs: number;
  /** False when an earlier attempt had issued it and this one only waited. */
  issuedNow: boolean;
}

export function rebootMark(io: Pick<StepIo<unknown>, 'marks'>): RebootMark | undefined {
  const m = io.marks[REBOOT_MARK] as RebootMark | null | undefined;
  return m ?? undefined;
}

/** Reboots the host once for this activity and waits for the new boot. */
export async function rebootAndWait(io: StepIo<unknown>, ops: RebootOps, opts: RebootOptions): Promise<RebootOutcome> {
  const ctx = { host: io.host.label, step: io.host.step };
  if (!io.reconnect) throw new Error(`${io.host.label}: rebootAndWait needs a StepIo that can reconnect`);
  let mark = rebootMark(io);
  if (mark?.back) {
    throw new VerificationError(
      `the host was already rebooted once by this step (boot ${mark.bootId} → ${mark.back}) and would need another reboot to ${opts.reason}; not rebooting it again`,
      {
        ...ctx,
        field: 'reboot',
        expected: 'one reboot',
        observed: 'a second reboot needed',
      },
    );
  }
  let issuedNow = false;
  if (!mark) {
    const bootId = await ops.bootId(io.host);
    const now = Date.now();
    mark = { bootId, issuedAt: now, waitUntil: now + opts.timeoutMs };
    // Marked before it is issued: whatever happens from here on, no attempt issues it a second time.
    io.mark(REBOOT_MARK, mark);
    io.progress(`rebooting to ${opts.reason} (boot ${bootId})`);
    try {
      await ops.issue(io.host);
    } catch (err) {
      // The session dropping under the command means the host went down already. Anything else: not issued.
      if (!(err instanceof UnderlayError && err.name === 'ConnectionError')) {
        io.mark(REBOOT_MARK, null);
        throw err;
      }
    }
    issuedNow = true;
  } else {
    io.progress(`waiting for the reboot issued ${Math.round((Date.now() - mark.issuedAt) / 1000)} s ago (boot ${mark.bootId})`);
  }
  const to = await waitForNewBoot(io, ops, mark, opts, ctx);
  const backAt = Date.now();
  io.mark(REBOOT_MARK, { ...mark, back: to, backAt } satisfies RebootMark);
  io.progress(`host back after ${Math.round((backAt - mark.issuedAt) / 1000)} s (boot ${to})`);
  return { from: mark.bootId, to, waitedMs: backAt - mark.issuedAt, issuedNow };
}

async function waitForNewBoot(
  io: StepIo<unknown>,
  ops: RebootOps,
  mark: RebootMark,
  opts: RebootOptions,
  where: { host: string; step?: StepName },
): Promise<string> {
  const rounds = Math.min(2_000, Math.max(1, Math.ceil((mark.waitUntil - Date.now()) / opts.intervalMs) + 1));
  let last = 'no answer';
  for (let round = 0; round < rounds; round++) {
    // The runner may have connected to the new boot already (a retry after a worker restart): ask first.
    try {
      const id = round === 0 ? await ops.bootId(io.host) : await ops.bootId(await io.reconnect!());
      if (id !== mark.bootId) return id;
      last = `still boot ${id}`;
    } catch (err) {
      if (!(err instanceof UnderlayError && err.retryable)) throw err;
      last = `no answer (${err.name})`;
    }
    if (Date.now() + opts.intervalMs > mark.waitUntil) break;
    io.progress(`waiting for the host to come back: ${last}`);
    await io.sleep(opts.intervalMs);
  }
  const waited = Math.round((Date.now() - mark.issuedAt) / 1000);
  // io.host may be gone (the last reconnect failed): name the host from what was known before.
  const ctx = { ...where, field: 'boot id', expected: `a boot id other than ${mark.bootId}`, observed: last };
  // The host answering with the old boot id: the reboot did not happen — waiting longer will not help.
  if (last.startsWith('still boot')) throw new VerificationError(`the host did not reboot within ${waited} s of the request`, ctx);
  throw new NotConvergedError(`the host did not come back within ${waited} s of the reboot`, ctx);
}
