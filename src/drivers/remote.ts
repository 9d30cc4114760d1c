/**
 * A remote shell as drivers see it: run a script built by `sh`, as root, with errors that name the host and
 * step. Implemented over an SSH session (src/transports/ssh.ts) — drivers depend only on this small shape.
 */
import type { StepName } from '../common/steps';
import { CommandFailedError, CommandTimeoutError, UnexpectedOutputError } from '../common/errors';
import { sh, type Shell } from './shell';

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** null when the command died of a signal. */
  exitCode: number | null;
}

/** The transport's exec, structurally (SshSession satisfies it). */
export interface CommandChannel {
  exec(
    command: string,
    opts?: { timeoutMs?: number; stdin?: string; description?: string; onData?: (chunk: string, stream: 'stdout' | 'stderr') => void },
  ): Promise<ExecResult>;
}

export interface RunOptions {
  /** What the command does, for error messages ("create bond0"). */
  description: string;
  timeoutMs?: number;
  stdin?: string;
  /** Exit codes that are answers, not failures (e.g. `test -e` → 1). */
  okExitCodes?: number[];
  /** False when a failure is deterministic (bad argument): Temporal must not retry it. */
  retryable?: boolean;
  /** Default true: run as root (through `sudo -n` for a non-root login). False runs as the login user. */
  privileged?: boolean;
}

export class RemoteHost {
  constructor(
    private readonly channel: CommandChannel,
    /** Server id, used in every error message. */
    readonly label: string,
    readonly isRoot: boolean,
    readonly step?: StepName,
    /** Called on any output, so long commands keep the activity's heartbeat alive. */
    private readonly onProgress?: (line: string) => void,
  ) {}

  /** A view of the same connection for another step (errors then name that step). */
  forStep(step: StepName): RemoteHost {
    return new RemoteHost(this.channel, this.label, this.isRoot, step, this.onProgress);
  }

  /**
   * The connection itself, for hosts without a POSIX shell (Windows: PowerShell, src/drivers/hyperv/run.ts),
   * where run()'s `timeout … sh -c` wrapping does not exist. Callers quote and bound commands themselves.
   */
  rawChannel(): CommandChannel {
    return this.channel;
  }

  async run(script: Shell, opts: RunOptions): Promise<ExecResult> {
    const timeoutMs = opts.timeoutMs ?? 120_000;
    const secs = Math.ceil(timeoutMs / 1000);
    // The deadline is enforced on the host too: sshd does not deliver signals to root sessions, so closing
    // the channel alone would leave a hung command running there. `timeout` exits 124 when it fires.
    const sudo = opts.privileged === false || this.isRoot ? sh`` : sh`sudo -n `;
    const command = sh`timeout -k 5 ${secs} ${sudo}sh -c ${script.text}`.text;
    const onProgress = this.onProgress;
    const r = await this.channel.exec(command, {
      timeoutMs: timeoutMs + 15_000,
      stdin: opts.stdin,
      description: opts.description,
      onData: onProgress ? (chunk) => onProgress(chunk) : undefined,
    });
    if (r.exitCode === 124 || r.exitCode === 137) {
      throw new CommandTimeoutError(`${opts.description} timed out after ${secs}s`, { host: this.label, step: this.step, command: opts.description });
    }
    const ok = opts.okExitCodes ?? [0];
    if (r.exitCode === null || !ok.includes(r.exitCode)) {
      throw new CommandFailedError(
        opts.description + ' failed',
        { host: this.label, step: this.step, command: opts.description, exitCode: r.exitCode, stderr: tail(r.stderr || r.stdout) },
        opts.retryable ?? true,
      );
    }
    return r;
  }

  /** Runs and returns stdout. */
  async read(script: Shell, opts: RunOptions): Promise<string> {
    return (await this.run(script, opts)).stdout;
  }

  /** Error for output a parser could not make sense of. */
  unexpected(what: string, observed: string): UnexpectedOutputError {
    return new UnexpectedOutputError(`unexpected output from ${what}`, { host: this.label, step: this.step, observed: observed.slice(0, 300) });
  }
}

function tail(s: string): string {
  return s.length > 800 ? '…' + s.slice(-800) : s;
}
