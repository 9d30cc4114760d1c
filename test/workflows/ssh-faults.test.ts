/**
 * Transport faults in the middle of a step, end to end: the real workflow on a Temporal dev server, the real
 * activity runner and SSH connector, a real OpenSSH sshd on 127.0.0.1, and a step whose apply is a detached host
 * job (src/activities/job.ts; the setsid fallback — systemd is not PID 1 on this machine). The other five steps
 * act on the in-memory host stand-in (test/helpers/file-host.ts).
 *
 * - sshd killed (listener and sessions, SIGKILL) while the step waits for its job, restarted 3 s later: the step
 *   is retried, reattaches to the job that kept running, and the onboarding completes — the job ran once.
 * - a connection that stalls (a TCP proxy that stops forwarding, new connections never answered): the command in
 *   flight fails by SSH keepalive, the retries by the connect timeout; the step fails with a typed error naming
 *   host and step, and — the path back once the stall ends — every step that changed something is compensated.
 * No hang: each wait is bounded by the transport's timeouts (keepalive 3 × 15 s, connect 20 s) and the step's
 * retry policy (hypervisor: 3 attempts); the test timeouts are backstops.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createActivities, type StepSet } from '../../src/activities';
import { sshConnector } from '../../src/activities/connect';
import { diffState } from '../../src/activities/diff';
import { runDetached } from '../../src/activities/job';
import { wholeSpec, type Step } from '../../src/activities/step';
import { renderServerSideStatus, serverSideStatus, startOnboarding } from '../../src/cli/onboarding';
import { VerificationError } from '../../src/common/errors';
import { sh } from '../../src/drivers/shell';
import { STEPS } from '../../src/steps';
import { loadSpecFile } from '../../src/spec/load';
import type { ServerSpec } from '../../src/spec/server';
import { createWorker } from '../../src/workers/worker';
import type { OnboardingFailureReport } from '../../src/workflows/messages';
import { FileHost, fileHostSteps } from '../helpers/file-host';
import { startSshd, type Sshd } from '../helpers/sshd';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy';
import { startTemporal, workflowBundle } from '../helpers/temporal';

/** The steps this file's spec (examples/kvm-macvtap.yaml) runs: every step but dpdk, whose section it does not set. */
const RUNBOOK = STEPS.filter((s) => s !== 'dpdk');

let env: TestWorkflowEnvironment;
let sshd: Sshd;
let proxy: TcpProxy;
let baseSpec: ServerSpec;
let host: FileHost;
const work = mkdtempSync(join(tmpdir(), 'underlay-sshfaults-'));
const figures: string[] = [];

before(async () => {
  [env, sshd, baseSpec] = await Promise.all([startTemporal(), startSshd(), loadSpecFile('examples/kvm-macvtap.yaml'), workflowBundle()]);
  proxy = await startTcpProxy(sshd.port);
  host = new FileHost();
});
after(async () => {
  await proxy?.close();
  await sshd?.stop();
  await env?.teardown();
  host?.remove();
  await sleep(200);
  rmSync(work, { recursive: true, force: true });
  if (figures.length) console.log(`figures:\n${figures.map((f) => `  ${f}`).join('\n')}`);
});

/** The hypervisor step as a detached job on this machine: state and run counter in files under `dir`. */
function jobStep(dir: string, seconds: number): Step<{ value: string }> {
  const state = join(dir, 'state');
  const observe = async (io: { host: { read: (s: ReturnType<typeof sh>, o: { description: string; privileged: boolean }) => Promise<string> } }) => ({
    value: (await io.host.read(sh`cat ${state} 2>/dev/null || echo pristine`, { description: 'read the test state', privileged: false })).trim(),
  });
  return {
    name: 'hypervisor',
    want: wholeSpec,
    observe,
    plan: (_w, o) => (o.value === 'applied' ? [] : [{ field: 'hypervisor', from: o.value, to: 'applied' }]),
    async apply(io) {
      await runDetached(io, {
        purpose: 'install',
        command: sh`echo "run $$" >>${join(dir, 'runs')}; sleep ${seconds}; echo applied >${state}`,
        what: 'test install',
        timeoutMs: 5 * 60_000,
        pollMs: 1_000,
        stateDir: join(dir, 'jobs'),
      });
    },
    async verify(io) {
      const o = await observe(io);
      if (o.value !== 'applied')
        throw new VerificationError('not applied', { host: io.host.label, step: 'hypervisor', expected: 'applied', observed: o.value });
    },
    async undo(io, pre) {
      await io.host.run(pre.value === 'pristine' ? sh`rm -f ${state}` : sh`printf '%s\\n' ${pre.value} >${state}`, { description: 'restore the test state' });
    },
    diff: (a, b) => diffState(a, b),
  };
}

function specVia(port: number, id: string): ServerSpec {
  return {
    ...baseSpec,
    id,
    management: {
      ...baseSpec.management,
      address: '127.0.0.1',
      port,
      user: sshd.user,
      hostKey: sshd.hostKeyFingerprint,
      credentials: { privateKeyFile: sshd.userKeyPath },
    },
  };
}

async function onboardWith(spec: ServerSpec, steps: StepSet, during: () => Promise<void>) {
  const taskQueue = `sshfaults-${spec.id}`;
  const worker = await createWorker({
    connection: env.nativeConnection,
    namespace: 'default',
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: createActivities(sshConnector, steps),
  });
  return worker.runUntil(async () => {
    const handle = await startOnboarding(env.client, spec, { taskQueue });
    await during();
    return handle.result().then(
      (result) => ({ ok: true as const, result }),
      (error: unknown) => ({ ok: false as const, error }),
    );
  });
}

const runs = (dir: string) => (existsSync(join(dir, 'runs')) ? readFileSync(join(dir, 'runs'), 'utf8').trim().split('\n').length : 0);

async function untilJobRuns(dir: string): Promise<void> {
  for (let i = 0; i < 600 && runs(dir) === 0; i++) await sleep(100);
  assert.equal(runs(dir), 1, 'the job started');
}

const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

describe('SSH faults in the middle of a step', { concurrency: false }, () => {
  test(
    'sshd killed while the step waits for its job, back 3 s later: retried, reattached, the job ran once, onboarding done',
    { timeout: 240_000 },
    async () => {
      const dir = mkdtempSync(join(work, 'kill-'));
      const spec = specVia(sshd.port, `sshkill${process.pid}`);
      let note: string | undefined;
      let rendered = '';
      let killedAt = 0;
      const outcome = await onboardWith(spec, { ...fileHostSteps(host), hypervisor: jobStep(dir, 8) }, async () => {
        await untilJobRuns(dir);
        // What `underlay status` shows from the server while the step waits: its latest progress note.
        for (let i = 0; i < 50 && !note?.includes('running for'); i++) {
          const view = await serverSideStatus(env.client, spec.id);
          note = view.pending[0]?.note;
          if (note?.includes('running for')) rendered = renderServerSideStatus(view);
          else await sleep(200);
        }
        await sshd.crash();
        killedAt = Date.now();
        await sleep(3_000);
        await sshd.restart();
      });
      assert.ok(outcome.ok, String(!outcome.ok && outcome.error));
      assert.deepEqual(
        RUNBOOK.map((s) => outcome.result.steps[s].state),
        RUNBOOK.map(() => 'done'),
      );
      assert.ok((outcome.result.steps.hypervisor.attempts ?? 0) >= 2, 'the step was retried after the connection died');
      assert.equal(runs(dir), 1, 'the job ran once: reattached, not restarted');
      assert.match(
        note ?? '',
        new RegExp(`^test install: running for \\d+ s \\(underlay-${spec.id}-hypervisor-install\\)`),
        'the progress note, read back through the server',
      );
      assert.match(rendered, /\n {2}pending installHypervisor: started, attempt 1 — test install: running for \d+ s/, rendered);
      assert.equal(readFileSync(join(dir, 'state'), 'utf8').trim(), 'applied');
      figures.push(
        `sshd killed mid-step: onboarding done ${secs(Date.now() - killedAt)} after the kill (hypervisor attempts ${outcome.result.steps.hypervisor.attempts})`,
      );
    },
  );

  test(
    'a connection that stalls mid-step: the step fails, typed and naming host and step, after its attempts; everything compensated',
    { timeout: 420_000 },
    async () => {
      const dir = mkdtempSync(join(work, 'stall-'));
      const spec = specVia(proxy.port, `sshstall${process.pid}`);
      let stalledAt = 0;
      let failedAt = 0;
      const outcome = await onboardWith(spec, { ...fileHostSteps(host), hypervisor: jobStep(dir, 4) }, async () => {
        await untilJobRuns(dir);
        proxy.stall();
        stalledAt = Date.now();
        // The stall ends once the step has failed (bounded): the compensation needs the host back.
        for (let i = 0; i < 3_000 && host.events({ server: spec.id, event: 'undo' }).length === 0; i++) {
          const status = await env.client.workflow
            .getHandle(`onboard-${spec.id}`)
            .describe()
            .catch(() => undefined);
          const pending = status?.raw.pendingActivities?.[0]?.activityType?.name;
          if (pending && pending !== 'installHypervisor') break;
          await sleep(100);
        }
        failedAt = Date.now();
        proxy.resume();
      });
      assert.ok(!outcome.ok, 'the onboarding fails');
      assert.ok(outcome.error instanceof WorkflowFailedError, String(outcome.error));
      const report = (outcome.error.cause as { details?: unknown[] }).details?.[0] as OnboardingFailureReport;
      assert.equal(report.failedStep, 'hypervisor');
      assert.equal(report.attempts, 3, 'the hypervisor policy: 3 attempts');
      assert.match(report.error, new RegExp(`step hypervisor, host ${spec.id}: `), 'the transport error names the step too');
      assert.match(report.error, /(timed out after 20000 ms connecting to 127\.0\.0\.1:\d+|connection lost while the command was running|Keepalive timeout)/);
      assert.deepEqual(
        report.compensations.map((c) => [c.step, c.outcome]),
        [
          ['hypervisor', 'restored'],
          ['sriov', 'restored'],
          ['vlan', 'restored'],
          ['bond', 'restored'],
          ['cable', 'restored'],
        ],
      );
      assert.equal(existsSync(join(dir, 'state')), false, 'the job’s change undone');
      assert.equal(runs(dir), 1);
      figures.push(
        `stalled connection: step failed ${secs(failedAt - stalledAt)} after the stall began (3 attempts), compensated in ${secs(Date.now() - failedAt)}`,
      );
    },
  );
});
