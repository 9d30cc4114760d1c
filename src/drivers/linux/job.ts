/**
 * Detached host jobs: long host-side work (a package install, its purge, a dpkg recovery) that must outlive the
 * SSH session that started it — the worker SIGKILLed or OOM-killed, stopped past its shutdown grace, a network
 * blip. Such work never runs inside the session: it runs as a transient systemd service whose name is fixed by
 * (server, step, purpose), e.g. `underlay-kvm-r12-07-hypervisor-install.service`, so whoever comes next — a retry,
 * a new worker — finds it by name, waits for it and reads its result instead of starting it again.
 *
 * - The unit name is the mutex: systemd refuses a second unit of the same name while one is loaded.
 * - Each start carries a token (in the unit's Description) that the starting step keeps in its durable
 *   checkpoint, so a job is told apart from an older one of the same name.
 * - `RemainAfterExit=yes`, and no `--collect`: a finished job stays loaded — `active (exited)` or `failed`, with
 *   its Result and ExecMainStatus — until the step has read and recorded its result and releases it
 *   (`systemctl stop` / `reset-failed`). With `--collect` a failed job would be garbage-collected at once and a
 *   worker that reattaches later could not tell a failure from a success.
 * - `RuntimeMaxSec=` bounds the job on the host; its output goes to the journal and is read back by the unit's
 *   invocation id (`journalctl _SYSTEMD_INVOCATION_ID=… -o cat`), capped.
 *
 * Where systemd is not PID 1 (containers, some minimal hosts) the same protocol runs over `setsid nohup` with a
 * state directory per job (`/run/underlay/jobs/<unit>`: token, pid, output, exit status); `mkdir` is the mutex
 * there, and the runner's command line carries the token so a reused pid is not mistaken for the job.
 * Both keep their state under /run: a reboot ends the job and forgets it, which the step sees as a lost job.
 */
import { sh, type Shell } from '../shell';
import type { RemoteHost } from '../remote';
import type { StepName } from '../../steps';

/** Where the fallback (no systemd) keeps its job directories. */
export const JOB_STATE_DIR = '/run/underlay/jobs';

/** Output read back from a finished job, at most (the tail is kept). */
export const JOB_OUTPUT_CAP_BYTES = 64 * 1024;

const UNIT_RE = /^underlay-[a-z0-9][a-z0-9-]{0,120}$/;
const TOKEN_RE = /^[A-Za-z0-9-]{8,64}$/;

/** The job's unit name (without `.service`): `underlay-<server>-<step>-<purpose>`. */
export function jobUnit(server: string, step: StepName | string, purpose: string): string {
  const unit = `underlay-${server}-${step}-${purpose}`;
  if (!UNIT_RE.test(unit)) throw new Error(`not a valid job unit name: ${JSON.stringify(unit)}`);
  return unit;
}

export type JobMode = 'systemd' | 'nohup';

export interface JobStatus {
  mode: JobMode;
  /**
   * not-found: no such job (never started, released, or lost to a reboot); running; exited: finished with exit
   * status 0; failed: finished otherwise (exit status, signal, runtime bound).
   */
  state: 'not-found' | 'running' | 'exited' | 'failed';
  /** The token the job was started with, when it is one of underlay's. */
  token?: string;
  /** systemd's InvocationID (fallback: the token), the identity of this run of the unit. */
  invocation?: string;
  /** systemd Result (success, exit-code, signal, timeout, oom-kill, …); fallback: success, exit-code, timeout, lost. */
  result?: string;
  /** Exit status, or the signal number when `killed` (systemd ExecMainStatus). */
  exitStatus?: number;
  killed?: boolean;
  /** The last lines of output so far. */
  tail: string;
}

export interface JobStart {
  unit: string;
  token: string;
  /** What runs, as a shell script (run by /bin/sh -c on the host). */
  command: Shell;
  /** For people (systemctl status, journal): "install qemu-system-x86 …". */
  description: string;
  /** Runtime bound on the host: systemd stops the job after it (Result=timeout); the fallback uses timeout(1). */
  timeoutSec: number;
  /** Fallback state directory (tests point it elsewhere). */
  stateDir?: string;
}

const IS_SYSTEMD = sh`[ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1`;

/** Status of the job `unit` (either mode), with the last `tailLines` lines of its output. */
export function jobStatusScript(unit: string, stateDir = JOB_STATE_DIR, tailLines = 3): Shell {
  const service = `${unit}.service`;
  const dir = `${stateDir}/${unit}`;
  return sh`if ${IS_SYSTEMD}; then
  echo mode=systemd
  systemctl show -p LoadState -p ActiveState -p SubState -p Result -p ExecMainCode -p ExecMainStatus -p InvocationID -p Description ${service}
  inv=$(systemctl show -p InvocationID --value ${service})
  echo '--- tail'
  if [ -n "$inv" ]; then journalctl --no-pager -q -o cat -n ${tailLines} "_SYSTEMD_INVOCATION_ID=$inv" 2>/dev/null | tail -c 2000; fi
else
  echo mode=nohup
  d=${dir}
  if [ -d "$d" ]; then
    tok=$(cat "$d/token" 2>/dev/null)
    echo "Token=$tok"
    pid=$(cat "$d/pid" 2>/dev/null)
    # The process first, rc after: the runner writes rc before it exits, so a runner found gone has left its rc by
    # then (looking for rc first, a job that ended between the two looks would seem lost).
    if [ -n "$pid" ] && [ -n "$tok" ] && tr '\\000' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "underlay-job:$tok"; then echo "Running=$pid"
    elif [ -f "$d/rc" ]; then echo "Exit=$(cat "$d/rc")"
    elif [ -z "$pid" ] && [ -n "$(find "$d/token" -newermt '-10 seconds' 2>/dev/null)" ]; then echo "Running=starting"
    else echo Lost=1; fi
    echo '--- tail'
    tail -n ${tailLines} "$d/out" 2>/dev/null | tail -c 2000
  else echo LoadState=not-found; echo '--- tail'; fi
fi`;
}

/** Parses jobStatusScript's answer. */
export function parseJobStatus(text: string): JobStatus {
  const [head = '', ...rest] = text.split('\n--- tail\n');
  const tail = rest.join('\n--- tail\n').replace(/\n+$/, '');
  const kv: Record<string, string> = {};
  for (const line of head.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) kv[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  const mode: JobMode = kv.mode === 'nohup' ? 'nohup' : 'systemd';
  if (kv.LoadState === 'not-found' || (mode === 'systemd' && kv.LoadState !== 'loaded')) return { mode, state: 'not-found', tail };
  if (mode === 'nohup') {
    const token = kv.Token || undefined;
    const base = { mode, tail, ...(token ? { token, invocation: token } : {}) };
    if (kv.Running !== undefined) return { ...base, state: 'running' };
    if (kv.Exit !== undefined) {
      const code = Number(kv.Exit);
      if (code === 0) return { ...base, state: 'exited', result: 'success', exitStatus: 0 };
      // timeout(1): 124 when the bound fired, 137 when its KILL was needed.
      if (code === 124 || code === 137) return { ...base, state: 'failed', result: 'timeout', exitStatus: code };
      return { ...base, state: 'failed', result: 'exit-code', exitStatus: Number.isFinite(code) ? code : -1 };
    }
    return { ...base, state: 'failed', result: 'lost' };
  }
  const token = /^underlay job ([A-Za-z0-9-]{8,64}):/.exec(kv.Description ?? '')?.[1];
  const base = { mode, tail, ...(token ? { token } : {}), ...(kv.InvocationID ? { invocation: kv.InvocationID } : {}) };
  const status = Number(kv.ExecMainStatus);
  // ExecMainCode is the CLD_* code: 1 exited, 2 killed, 3 dumped.
  const killed = kv.ExecMainCode === '2' || kv.ExecMainCode === '3';
  const ended = { result: kv.Result ?? 'unknown', ...(Number.isFinite(status) ? { exitStatus: status } : {}), ...(killed ? { killed } : {}) };
  switch (kv.ActiveState) {
    case 'active':
      return kv.SubState === 'exited' ? { ...base, state: 'exited', ...ended } : { ...base, state: 'running' };
    case 'activating':
    case 'deactivating':
    case 'reloading':
      return { ...base, state: 'running' };
    case 'failed':
      return { ...base, state: 'failed', ...ended };
    default:
      // Loaded but inactive: stopped by someone before we read it. Its result is gone.
      return { mode, state: 'not-found', tail };
  }
}

export async function jobStatus(host: RemoteHost, unit: string, stateDir?: string, tailLines?: number): Promise<JobStatus> {
  const out = await host.read(jobStatusScript(unit, stateDir, tailLines), { description: `status of job ${unit}`, timeoutMs: 60_000 });
  return parseJobStatus(out);
}

/**
 * Starts the job unless a job of that name exists. Prints `started` or `exists` (someone holds the name — the
 * caller probes again). systemd: `systemd-run` of a transient service; fallback: `setsid nohup`.
 */
export function jobStartScript(j: JobStart): Shell {
  if (!UNIT_RE.test(j.unit)) throw new Error(`not a valid job unit name: ${JSON.stringify(j.unit)}`);
  if (!TOKEN_RE.test(j.token)) throw new Error(`not a valid job token: ${JSON.stringify(j.token)}`);
  const secs = Math.max(1, Math.ceil(j.timeoutSec));
  const dir = `${j.stateDir ?? JOB_STATE_DIR}/${j.unit}`;
  // The fallback's runner: $0 carries the token (seen in /proc/<pid>/cmdline), then dir, bound, script.
  const runner =
    'd=$1; echo $$ >"$d/pid"; timeout -k 10 "$2" /bin/sh -c "$3" >"$d/out" 2>&1 </dev/null; rc=$?; echo "$rc" >"$d/rc.tmp" && mv "$d/rc.tmp" "$d/rc"';
  return sh`if ${IS_SYSTEMD}; then
  if systemctl show -p LoadState --value ${`${j.unit}.service`} | grep -qx loaded; then echo exists; exit 0; fi
  if err=$(systemd-run --quiet --unit=${j.unit} --description=${`underlay job ${j.token}: ${j.description.slice(0, 200)}`} \
      --property=RemainAfterExit=yes --property=RuntimeMaxSec=${secs} \
      /bin/sh -c ${j.command.text} 2>&1); then echo started
  elif printf '%s' "$err" | grep -Eq 'already (exists|loaded)'; then echo exists
  else printf '%s\n' "$err" >&2; exit 1; fi
else
  mkdir -p ${j.stateDir ?? JOB_STATE_DIR} || exit 1
  if ! mkdir ${dir} 2>/dev/null; then echo exists; exit 0; fi
  printf '%s\n' ${j.token} >${`${dir}/token`}
  setsid nohup /bin/sh -c ${runner} ${`underlay-job:${j.token}`} ${dir} ${secs} ${j.command.text} >/dev/null 2>&1 </dev/null &
  echo started
fi`;
}

export async function startJob(host: RemoteHost, j: JobStart): Promise<'started' | 'exists'> {
  const out = (await host.read(jobStartScript(j), { description: `start job ${j.unit}`, timeoutMs: 60_000, retryable: true })).trim();
  if (out !== 'started' && out !== 'exists') throw host.unexpected(`start job ${j.unit}`, out);
  return out;
}

/** The job's whole output (its tail, at most JOB_OUTPUT_CAP_BYTES). */
export function jobOutputScript(unit: string, invocation: string | undefined, stateDir = JOB_STATE_DIR): Shell {
  const cap = JOB_OUTPUT_CAP_BYTES;
  return sh`if ${IS_SYSTEMD}; then
  ${invocation ? sh`journalctl --no-pager -q -o cat ${`_SYSTEMD_INVOCATION_ID=${invocation}`} 2>/dev/null | tail -c ${cap}` : sh`true`}
else
  tail -c ${cap} ${`${stateDir}/${unit}/out`} 2>/dev/null
fi; true`;
}

export async function jobOutput(host: RemoteHost, unit: string, invocation: string | undefined, stateDir?: string): Promise<string> {
  return host.read(jobOutputScript(unit, invocation, stateDir), { description: `output of job ${unit}`, timeoutMs: 60_000 });
}

/**
 * Frees the name of a finished job started with `token` (a job of another token is left alone; callers release
 * only what they saw finished, and systemd also keeps a running one). systemd: stop (active/exited → inactive, unloaded) and reset-failed; fallback: its directory removed.
 */
export function jobReleaseScript(unit: string, token: string, stateDir = JOB_STATE_DIR): Shell {
  if (!TOKEN_RE.test(token)) throw new Error(`not a valid job token: ${JSON.stringify(token)}`);
  const service = `${unit}.service`;
  const dir = `${stateDir}/${unit}`;
  return sh`if ${IS_SYSTEMD}; then
  case "$(systemctl show -p Description --value ${service})" in ${`underlay job ${token}:`}*) ;; *) exit 0;; esac
  case "$(systemctl show -p ActiveState --value ${service})" in activating|deactivating|reloading) exit 0;; esac
  [ "$(systemctl show -p SubState --value ${service})" = running ] && exit 0
  systemctl stop ${service} 2>/dev/null; systemctl reset-failed ${service} 2>/dev/null; true
else
  [ "$(cat ${`${dir}/token`} 2>/dev/null)" = ${token} ] && rm -rf ${dir}; true
fi`;
}

export async function releaseJob(host: RemoteHost, unit: string, token: string, stateDir?: string): Promise<void> {
  await host.run(jobReleaseScript(unit, token, stateDir), { description: `release job ${unit}`, timeoutMs: 60_000 });
}
