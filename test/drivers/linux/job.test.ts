/**
 * Detached host jobs (src/drivers/linux/job.ts, src/activities/job.ts) against a real OpenSSH sshd on 127.0.0.1
 * and this machine's /bin/sh. systemd is not PID 1 here, so this proves the fallback (`setsid nohup` with a state
 * directory); the systemd mode runs on the lab's Debian guests (test/lab/onboard.lab.test.ts, packages.lab.test.ts).
 * The job's state directory is a temporary one (the production default is /run/underlay/jobs).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { JobFailedError } from '../../../src/common/errors';
import { jobStatus, jobUnit, parseJobStatus, releaseJob, startJob } from '../../../src/drivers/linux/job';
import { RemoteHost } from '../../../src/drivers/remote';
import { sh } from '../../../src/drivers/shell';
import { runDetached, type JobMark } from '../../../src/activities/job';
import type { StepIo } from '../../../src/activities/step';
import type { ServerSpec } from '../../../src/spec/server';
import { SshSession } from '../../../src/transports/ssh';
import { rejectionOf } from '../../helpers/failures';
import { sleep, startSshd, type Sshd } from '../../helpers/sshd';

let sshd: Sshd;
const work = mkdtempSync(join(tmpdir(), 'underlay-job-'));
const stateDir = join(work, 'jobs');

before(async () => {
  sshd = await startSshd();
});
after(async () => {
  await sshd?.stop();
  // Every job here ends within seconds; give a straggler a moment before removing its directory.
  await sleep(200);
  rmSync(work, { recursive: true, force: true });
});

async function session(): Promise<{ host: RemoteHost; close(): void }> {
  const s = await SshSession.connect(sshd.target());
  return { host: new RemoteHost(s, 'job-test', true, 'hypervisor'), close: () => s.close() };
}

/** A StepIo over `host` whose marks persist in `marks` (what a retry gets back from the heartbeat). */
function stepIo(host: RemoteHost, marks: Record<string, unknown>, notes: string[] = [], opts: { dieOnSleep?: boolean } = {}): StepIo<unknown> {
  return {
    host,
    spec: { id: 'job-test' } as ServerSpec,
    want: {},
    sleep: async (ms) => {
      if (opts.dieOnSleep && marks['job:install']) throw new Error('worker died');
      await sleep(Math.min(ms, 200));
    },
    progress: (n) => notes.push(n),
    marks,
    mark: (k, v) => {
      marks[k] = v;
    },
  };
}

describe('job driver (fallback: setsid nohup, this machine has no systemd as PID 1)', () => {
  test('unit names are fixed by server, step and purpose, and refuse anything else', () => {
    assert.equal(jobUnit('kvm-r12-07', 'hypervisor', 'install'), 'underlay-kvm-r12-07-hypervisor-install');
    assert.throws(() => jobUnit('a b', 'hypervisor', 'install'), /not a valid job unit name/);
    assert.throws(() => jobUnit('x', 'hypervisor', 'install;reboot'), /not a valid job unit name/);
  });

  test('systemd status answers parse: running, exited, failed by exit code and by signal, not found', () => {
    const show = (kv: Record<string, string>) =>
      ['mode=systemd', ...Object.entries(kv).map(([k, v]) => `${k}=${v}`), '--- tail', 'Setting up libvirt0 (9.0.0-4) ...'].join('\n');
    const base = { LoadState: 'loaded', Description: 'underlay job 0f5c2a6e-aaaa-bbbb-cccc-1234567890ab: install qemu', InvocationID: 'a1b2' };
    assert.deepEqual(parseJobStatus(show({ ...base, ActiveState: 'active', SubState: 'running' })), {
      mode: 'systemd',
      state: 'running',
      token: '0f5c2a6e-aaaa-bbbb-cccc-1234567890ab',
      invocation: 'a1b2',
      tail: 'Setting up libvirt0 (9.0.0-4) ...',
    });
    const exited = parseJobStatus(show({ ...base, ActiveState: 'active', SubState: 'exited', Result: 'success', ExecMainCode: '1', ExecMainStatus: '0' }));
    assert.equal(exited.state, 'exited');
    const failed = parseJobStatus(show({ ...base, ActiveState: 'failed', SubState: 'failed', Result: 'exit-code', ExecMainCode: '1', ExecMainStatus: '100' }));
    assert.deepEqual([failed.state, failed.result, failed.exitStatus, failed.killed], ['failed', 'exit-code', 100, undefined]);
    const killed = parseJobStatus(show({ ...base, ActiveState: 'failed', SubState: 'failed', Result: 'signal', ExecMainCode: '2', ExecMainStatus: '9' }));
    assert.deepEqual([killed.state, killed.result, killed.exitStatus, killed.killed], ['failed', 'signal', 9, true]);
    assert.equal(parseJobStatus(show({ LoadState: 'not-found', ActiveState: 'inactive' })).state, 'not-found');
  });

  test('a job runs without the session: started, the session closed, found running by a new one, then its result and output', async () => {
    const unit = jobUnit('job-test', 'hypervisor', 'alone');
    const counter = join(work, 'alone.count');
    const a = await session();
    const command = sh`echo "run $$" >>${counter}; echo first line; sleep 2; echo last line`;
    assert.equal(await startJob(a.host, { unit, token: 'token-aaaa-0001', command, description: 'test job', timeoutSec: 60, stateDir }), 'started');
    assert.equal(
      await startJob(a.host, { unit, token: 'token-aaaa-0002', command, description: 'test job', timeoutSec: 60, stateDir }),
      'exists',
      'the name is a mutex',
    );
    a.close();
    const b = await session();
    try {
      const s = await jobStatus(b.host, unit, stateDir);
      assert.equal(s.state, 'running');
      assert.equal(s.token, 'token-aaaa-0001');
      let done = s;
      for (let i = 0; i < 100 && done.state === 'running'; i++) {
        await sleep(100);
        done = await jobStatus(b.host, unit, stateDir);
      }
      assert.deepEqual([done.state, done.exitStatus, done.result], ['exited', 0, 'success']);
      assert.equal(done.tail, 'first line\nlast line');
      assert.equal(readFileSync(counter, 'utf8').trim().split('\n').length, 1, 'ran once');
      await releaseJob(b.host, unit, 'token-bbbb-0001', stateDir);
      assert.equal((await jobStatus(b.host, unit, stateDir)).state, 'exited', 'another token does not release it');
      await releaseJob(b.host, unit, 'token-aaaa-0001', stateDir);
      assert.equal((await jobStatus(b.host, unit, stateDir)).state, 'not-found');
    } finally {
      b.close();
    }
  });

  test('failures: exit status, killed (no exit status), and the runtime bound', async () => {
    const c = await session();
    try {
      const run = async (purpose: string, command: ReturnType<typeof sh>, timeoutSec = 60) => {
        const unit = jobUnit('job-test', 'hypervisor', purpose);
        await startJob(c.host, { unit, token: `token-${purpose}-1`, command, description: purpose, timeoutSec, stateDir });
        return unit;
      };
      const exit3 = await run('exit3', sh`echo oops >&2; exit 3`);
      const killed = await run('killed', sh`sleep 30`);
      const bounded = await run('bounded', sh`sleep 30`, 1);
      await sleep(500);
      const pid = readFileSync(join(stateDir, killed, 'pid'), 'utf8').trim();
      process.kill(Number(pid), 'SIGKILL');
      let s = await jobStatus(c.host, exit3, stateDir);
      for (let i = 0; i < 50 && s.state === 'running'; i++) s = (await sleep(100), await jobStatus(c.host, exit3, stateDir));
      assert.deepEqual([s.state, s.result, s.exitStatus, s.tail], ['failed', 'exit-code', 3, 'oops']);
      const k = await jobStatus(c.host, killed, stateDir);
      assert.deepEqual([k.state, k.result], ['failed', 'lost'], 'the runner died with the job: no exit status');
      let b = await jobStatus(c.host, bounded, stateDir);
      for (let i = 0; i < 100 && b.state === 'running'; i++) b = (await sleep(100), await jobStatus(c.host, bounded, stateDir));
      assert.deepEqual([b.state, b.result], ['failed', 'timeout']);
      for (const [u, t] of [
        [exit3, 'token-exit3-1'],
        [killed, 'token-killed-1'],
        [bounded, 'token-bounded-1'],
      ] as const)
        await releaseJob(c.host, u, t, stateDir);
    } finally {
      c.close();
    }
  });
});

describe('runDetached: checkpoint before start, reattach by name, never twice', () => {
  const runs = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').length : 0);
  const jobOf = (purpose: string, counter: string, body = sh`for i in 1 2 3; do echo "step $i"; sleep 1; done`) => ({
    purpose,
    command: sh`echo "run $$" >>${counter}; ${body}`,
    what: `test ${purpose}`,
    timeoutMs: 60_000,
    pollMs: 200,
    stateDir,
  });
  /** A StepIo whose sleep throws — the worker stops there — once the job's mark reached `phase`. */
  const dyingIo = (host: RemoteHost, marks: Record<string, unknown>, key: string, phase: JobMark['phase']): StepIo<unknown> => ({
    ...stepIo(host, marks),
    sleep: async (ms) => {
      if ((marks[key] as JobMark | undefined)?.phase === phase) throw new Error('worker died');
      await sleep(Math.min(ms, 200));
    },
  });

  test('the worker dies after the checkpoint, before the start: the retry starts it, once', async () => {
    const counter = join(work, 'a.count');
    const marks: Record<string, unknown> = {};
    const job = jobOf('before', counter);
    const a = await session();
    await assert.rejects(runDetached(dyingIo(a.host, marks, 'job:before', 'starting'), job), /worker died/);
    a.close();
    assert.equal((marks['job:before'] as JobMark).phase, 'starting');
    assert.equal(runs(counter), 0, 'not started');
    const b = await session();
    try {
      const r = await runDetached(stepIo(b.host, marks), job);
      assert.equal(r?.reattached, false);
    } finally {
      b.close();
    }
    assert.equal(runs(counter), 1);
  });

  test('the worker dies while the job runs: the retry reattaches to it by name and token; a later retry finds it done', async () => {
    const counter = join(work, 'b.count');
    const marks: Record<string, unknown> = {};
    const job = jobOf('during', counter);
    const a = await session();
    await assert.rejects(runDetached(dyingIo(a.host, marks, 'job:during', 'started'), job), /worker died/);
    a.close();
    const started = marks['job:during'] as JobMark;
    assert.equal(started.phase, 'started');
    const b = await session();
    const notes: string[] = [];
    try {
      const r = await runDetached(stepIo(b.host, marks, notes), job);
      assert.equal(r?.reattached, true);
      assert.match(r?.output ?? '', /step 1\nstep 2\nstep 3/);
      assert.ok(
        notes.some((n) => n.startsWith('reattached to underlay-job-test-hypervisor-during')),
        notes.join('\n'),
      );
      assert.ok(
        notes.some((n) => /test during: running for \d+ s \(underlay-job-test-hypervisor-during\) — step \d/.test(n)),
        notes.join('\n'),
      );
      assert.equal((marks['job:during'] as JobMark).phase, 'done');
      const again = await runDetached(stepIo(b.host, marks), job);
      assert.equal(again?.reattached, true);
    } finally {
      b.close();
    }
    assert.equal(runs(counter), 1, 'the job ran once');
    assert.equal(existsSync(join(stateDir, started.unit)), false, 'released');
  });

  test('a job gone before its result was read: a retryable typed error, the checkpoint cleared for a fresh look', async () => {
    const counter = join(work, 'c.count');
    const marks: Record<string, unknown> = {};
    const job = jobOf('gone', counter);
    const a = await session();
    await assert.rejects(runDetached(dyingIo(a.host, marks, 'job:gone', 'started'), job), /worker died/);
    const unit = (marks['job:gone'] as JobMark).unit;
    // Someone removes the job behind underlay's back (as a reboot empties /run).
    process.kill(Number(readFileSync(join(stateDir, unit, 'pid'), 'utf8')), 'SIGKILL');
    rmSync(join(stateDir, unit), { recursive: true, force: true });
    try {
      const err = await rejectionOf(runDetached(stepIo(a.host, marks), job));
      assert.ok(err instanceof JobFailedError, String(err));
      assert.equal(err.retryable, true);
      assert.match(
        err.message,
        /^step hypervisor, host job-test: job underlay-job-test-hypervisor-gone \(test gone\) is gone from the host before its result was read/,
      );
      assert.equal(marks['job:gone'], null);
    } finally {
      a.close();
    }
  });

  test('a failed job: typed error naming host, step, unit, exit status and output tail; the next attempt starts anew', async () => {
    const counter = join(work, 'd.count');
    const marks: Record<string, unknown> = {};
    const job = {
      ...jobOf('fails', counter, sh`echo "E: Unable to locate package nope"; exit 100`),
      retryable: (out: string) => !/Unable to locate/.test(out),
    };
    const a = await session();
    try {
      const err = await rejectionOf(runDetached(stepIo(a.host, marks), job));
      assert.ok(err instanceof JobFailedError, String(err));
      assert.equal(err.retryable, false);
      assert.match(
        err.message,
        /^step hypervisor, host job-test: test fails failed: job underlay-job-test-hypervisor-fails ended with result exit-code, exit status 100; command: underlay-job-test-hypervisor-fails \(test fails\); exit code 100; stderr: E: Unable to locate package nope$/,
      );
      assert.equal(marks['job:fails'], null);
      await rejectionOf(runDetached(stepIo(a.host, marks), job));
    } finally {
      a.close();
    }
    assert.equal(runs(counter), 2, 'each attempt ran it: a failed job is not a result to keep');
  });

  test('an earlier activity’s job of the same name is waited for and released before ours starts', async () => {
    const counter = join(work, 'e.count');
    const a = await session();
    const notes: string[] = [];
    try {
      const unit = jobUnit('job-test', 'hypervisor', 'shared');
      await startJob(a.host, {
        unit,
        token: 'token-earlier-0001',
        command: sh`echo "run $$" >>${counter}; sleep 2`,
        description: 'earlier',
        timeoutSec: 60,
        stateDir,
      });
      const r = await runDetached(stepIo(a.host, {}, notes), jobOf('shared', counter, sh`true`));
      assert.equal(r?.reattached, false);
      assert.ok(
        notes.some((n) => n.startsWith('waiting for an earlier underlay job underlay-job-test-hypervisor-shared to finish')),
        notes.join('\n'),
      );
      assert.ok(
        notes.some((n) => n.startsWith('releasing the earlier job')),
        notes.join('\n'),
      );
    } finally {
      a.close();
    }
    assert.equal(runs(counter), 2, 'the earlier one, then ours — never both at once');
  });
});
