/**
 * Runs a tool on the worker itself (xorriso, openssl): an argument vector, never a shell, so no value is ever
 * parsed by one. Every run has a deadline (the process is killed when it passes), its output is capped, and
 * failures are typed: a missing tool is UnsupportedPlatformError (the worker lacks a package), a non-zero exit is
 * CommandFailedError with the tool's last stderr lines, a deadline is CommandTimeoutError.
 *
 * Secrets go in on stdin (`input`), never in argv (which any local user can read in /proc). Errors quote the tool's
 * stderr (its last lines), never stdin or stdout.
 */
import { spawn } from 'node:child_process';
import { CommandFailedError, CommandTimeoutError, UnsupportedPlatformError } from '../common/errors';

export interface LocalRun {
  /** Executable name (looked up in PATH) or absolute path. */
  file: string;
  args: string[];
  /** Written to stdin, then stdin is closed (the place for a secret). */
  input?: string | Buffer;
  timeoutMs: number;
  /** Largest stdout kept; more is an error. Default 1 MiB. */
  maxStdout?: number;
  /** Server id / purpose, for the errors. */
  label: string;
  /** What the run is, in a few words (`remaster the installer ISO`): the `command` of the errors. */
  what: string;
  cwd?: string;
}

export interface LocalResult {
  stdout: string;
  stderr: string;
}

const STDERR_KEEP = 4_000;

export function runLocal(run: LocalRun): Promise<LocalResult> {
  const maxStdout = run.maxStdout ?? 1024 * 1024;
  return new Promise<LocalResult>((resolve, reject) => {
    const child = spawn(run.file, run.args, { cwd: run.cwd, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    const out: Buffer[] = [];
    let outBytes = 0;
    let err = '';
    let settled = false;
    const finish = (e: Error | undefined, value?: LocalResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (e) reject(e);
      else resolve(value!);
    };
    const ctx = { host: run.label, command: `${run.file}: ${run.what}` };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish(new CommandTimeoutError(`${run.file} did not finish within ${run.timeoutMs} ms`, ctx));
    }, run.timeoutMs);
    child.stdout.on('data', (c: Buffer) => {
      outBytes += c.length;
      if (outBytes > maxStdout) {
        child.kill('SIGKILL');
        finish(new CommandFailedError(`${run.file} printed more than ${maxStdout} bytes`, ctx, false));
        return;
      }
      out.push(c);
    });
    child.stderr.on('data', (c: Buffer) => {
      err = (err + c.toString('utf8')).slice(-STDERR_KEEP);
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') {
        finish(
          new UnsupportedPlatformError(`${run.file} is not installed on this worker`, {
            ...ctx,
            expected: `${run.file} in PATH (scripts/setup.sh installs it)`,
            observed: 'not found',
          }),
        );
      } else finish(new CommandFailedError(`cannot run ${run.file}: ${e.code ?? e.message}`, ctx));
    });
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(out).toString('utf8');
      if (code === 0) return finish(undefined, { stdout, stderr: err });
      finish(
        new CommandFailedError(
          `${run.file} failed (${signal ?? `exit ${code}`})`,
          { ...ctx, exitCode: code, stderr: err.trim().split('\n').slice(-8).join('\n') },
          // A tool that refuses its input refuses it again: only a signal (killed by the system) is worth a retry.
          signal !== null,
        ),
      );
    });
    // A tool that exits before reading stdin makes the write fail with EPIPE: its exit status tells the story.
    child.stdin.on('error', () => undefined);
    child.stdin.end(run.input ?? '');
  });
}
