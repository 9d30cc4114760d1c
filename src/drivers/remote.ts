/**
 * A remote shell as drivers see it: run a script built by `sh`, with root where it needs it, with errors that
 * name the host and step. Implemented over an SSH session (src/transports/ssh.ts) — drivers depend only on this small shape.
 */
import type { StepName } from '../steps';
import { CommandFailedError, CommandTimeoutError, UnexpectedOutputError } from '../common/errors';
import type { ExecResult as TransportResult } from '../transports/ssh';
import { elevationShims } from './elevate';
import { sh, type Shell } from './shell';

/** What a command answered: the transport's result (ssh.ts); stand-ins in tests fill the first three. */
export type ExecResult = Pick<TransportResult, 'stdout' | 'stderr' | 'exitCode'> & Partial<Omit<TransportResult, 'stdout' | 'stderr' | 'exitCode'>>;

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
  /**
   * Default true: the script may run the commands of ELEVATED_COMMANDS (src/drivers/elevate.ts) as root — for a
   * non-root login each as `sudo -n <path>` while the rest of the script runs as the login user. False: no
   * elevation (reads of /sys, /proc, `ip -j`). A root login runs everything as root either way.
   */
  privileged?: boolean;
}

/** How a command line bounds itself on the host, when it does. */
export interface HostDeadline {
  /** Exit codes meaning the host-side deadline fired (coreutils `timeout`: 124, 137 after -k). */
  exitCodes: readonly number[];
  /** How much longer the client waits than the host-side deadline, as a backstop. */
  marginMs: number;
}

/** A command line ready for the channel, in the host's own shell (POSIX sh, PowerShell, ESXi's esxcli). */
export interface CommandLine {
  text: string;
  /** Absent: the command is bounded by the client only (the transport kills the channel at the deadline). */
  hostDeadline?: HostDeadline;
  /** Makes captured output readable in an error (PowerShell's CLIXML streams). */
  cleanOutput?: (s: string) => string;
}

/** One host command as it ran: host and step, what it did, how long it took on the wire, its exit status. */
export interface CommandRecord {
  host: string;
  step?: StepName;
  description: string;
  ms: number;
  exitCode: number | null;
}

const commandObservers = new Set<(r: CommandRecord) => void>();

/**
 * Sees every command every RemoteHost of this process runs, once it answered (the lab benchmark's per-command
 * breakdown of a step). Returns the unsubscribe. An observer never fails a command.
 */
export function observeCommands(fn: (r: CommandRecord) => void): () => void {
  commandObservers.add(fn);
  return () => void commandObservers.delete(fn);
}

const DEFAULT_TIMEOUT_MS = 120_000;
const NON_ROOT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; export PATH\n';
/** POSIX hosts: `timeout` exits 124 when it fires, 137 when its -k KILL was needed. */
export const POSIX_DEADLINE: HostDeadline = { exitCodes: [124, 137], marginMs: 15_000 };

export class RemoteHost {
  constructor(
    private readonly channel: CommandChannel,
    /** Server id, used in every error message. */
    readonly label: string,
    readonly isRoot: boolean,
    readonly step?: StepName,
    /** Called on any output, so long commands keep the activity's heartbeat alive. */
    private readonly onProgress?: (line: string) => void,
    /** Which management path the session runs over (`initial`, or `moved` once management moved onto the bond). */
    readonly path: 'initial' | 'moved' = 'initial',
  ) {}

  /** A view of the same connection for another step (errors then name that step). */
  forStep(step: StepName): RemoteHost {
    return new RemoteHost(this.channel, this.label, this.isRoot, step, this.onProgress, this.path);
  }

  /**
   * The one command runner, for every kind of host: sends the line, bounded on the client (and on the host
   * when the line bounds itself), and maps the answer to a typed error — a deadline to CommandTimeoutError,
   * an exit code not in `okExitCodes` (or death by signal) to CommandFailedError naming host, step, command
   * and the tail of its output. POSIX scripts go through run(); PowerShell (drivers/hyperv/run.ts) and
   * esxcli (activities/esxi/vswitch.ts) build their own line and call this.
   */
  async runLine(cmd: CommandLine, opts: RunOptions): Promise<ExecResult> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const where = { host: this.label, step: this.step, command: opts.description };
    const onProgress = this.onProgress;
    const started = Date.now();
    const r = await this.channel.exec(cmd.text, {
      timeoutMs: timeoutMs + (cmd.hostDeadline?.marginMs ?? 0),
      stdin: opts.stdin,
      description: opts.description,
      onData: onProgress ? (chunk) => onProgress(chunk) : undefined,
    });
    if (commandObservers.size) {
      const record: CommandRecord = { host: this.label, step: this.step, description: opts.description, ms: Date.now() - started, exitCode: r.exitCode };
      for (const fn of commandObservers) {
        try {
          fn(record);
        } catch {
          // An observer never fails a command.
        }
      }
    }
    if (r.exitCode !== null && cmd.hostDeadline?.exitCodes.includes(r.exitCode)) {
      throw new CommandTimeoutError(`${opts.description} timed out after ${Math.ceil(timeoutMs / 1000)}s`, where);
    }
    const ok = opts.okExitCodes ?? [0];
    if (r.exitCode === null || !ok.includes(r.exitCode)) {
      const out = (cmd.cleanOutput ?? ((x: string) => x))(r.stderr || r.stdout).trim();
      throw new CommandFailedError(
        r.exitCode === null ? `${opts.description} was killed by ${r.signal ?? 'a signal'}` : `${opts.description} failed`,
        { ...where, exitCode: r.exitCode, stderr: tail(out) },
        opts.retryable ?? true,
      );
    }
    return r;
  }

  /**
   * Runs a POSIX script built by `sh`. The deadline is enforced on the host too: sshd does not deliver signals
   * to root sessions, so closing the channel alone would leave a hung command running there. A privileged
   * script of a non-root login gets the elevation shims first: only the listed commands run as root.
   */
  async run(script: Shell, opts: RunOptions): Promise<ExecResult> {
    const secs = Math.ceil((opts.timeoutMs ?? DEFAULT_TIMEOUT_MS) / 1000);
    // A non-root login's PATH lacks the sbin directories (ip, ifquery, modprobe); sudo's secure_path had them.
    const text = this.isRoot ? script.text : NON_ROOT_PATH + (opts.privileged === false ? '' : elevationShims().text) + script.text;
    return this.runLine({ text: sh`timeout -k 5 ${secs} sh -c ${text}`.text, hostDeadline: POSIX_DEADLINE }, opts);
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
