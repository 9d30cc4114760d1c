/** Bounded verification polling: re-check until the state holds, a problem is final, or time runs out. */
import { VerificationError } from '../common/errors';
import type { StepIo } from './step';

export interface Problem {
  /** What is wrong, e.g. `eth1.lldp`. */
  field: string;
  expected: unknown;
  observed: unknown;
  /** True when waiting cannot help (wrong neighbour, wrong speed): fail at once. */
  final?: boolean;
}

export interface PollOptions {
  timeoutMs: number;
  intervalMs: number;
}

export async function pollUntilHolds(
  io: Pick<StepIo<unknown>, 'host' | 'sleep' | 'progress'>,
  what: string,
  check: () => Promise<Problem[]>,
  opts: PollOptions,
): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  const maxRounds = Math.ceil(opts.timeoutMs / opts.intervalMs) + 1;
  let problems: Problem[] = [];
  for (let round = 0; round < maxRounds; round++) {
    problems = await check();
    if (!problems.length) return;
    if (problems.some((p) => p.final) || Date.now() + opts.intervalMs > deadline) break;
    io.progress(`${what}: waiting (${problems.map((p) => p.field).join(', ')})`);
    await io.sleep(opts.intervalMs);
  }
  throw verificationFailure(io, what, problems);
}

export function verificationFailure(io: Pick<StepIo<unknown>, 'host'>, what: string, problems: Problem[]): VerificationError {
  const lines = problems.map((p) => `${p.field}: expected ${show(p.expected)}, observed ${show(p.observed)}`);
  return new VerificationError(`${what} does not hold — ${lines.join('; ')}`, {
    host: io.host.label,
    step: io.host.step,
    field: problems.map((p) => p.field).join(', '),
  });
}

function show(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}
