/**
 * The fleet's health probes (healthSweep, the `underlay-health` Schedule, `underlay health run|schedule|status|
 * unschedule`) on a real Temporal dev server, probing over a real sshd on 127.0.0.1 against a gateway in a network
 * namespace the test creates (198.19.100–149.x). Two servers are onboarded first (fake steps: the sweep probes only
 * managed hosts, looked up in Temporal for real); one is not; one spec file is invalid. Checks the rows (loss 0 with
 * the gateway answering, 1 with a gateway nobody holds), the textfile written on the host, continue-as-new per
 * page, the Web UI's current details of the sweep, and the commands.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createActivities } from '../../src/activities';
import type { Connector } from '../../src/activities/run-step';
import { TEXTFILE_NAME } from '../../src/activities/probe';
import { healthScheduleHandle, startHealthSweep } from '../../src/cli/health';
import { startOnboarding } from '../../src/cli/onboarding';
import { HEALTH_SCHEDULE_ID } from '../../src/common/config';
import { RemoteHost } from '../../src/drivers/remote';
import { parseServerSpec } from '../../src/spec/validate';
import type { ServerSpec } from '../../src/spec/server';
import { SshSession } from '../../src/transports/ssh';
import { createWorker } from '../../src/workers/worker';
import { FakeHost, fakeSteps } from '../helpers/fake-steps';
import { startSshd, type Sshd } from '../helpers/sshd';
import { runInBackground, startTemporal, workflowBundle, type BackgroundWorker } from '../helpers/temporal';

const root = resolve(__dirname, '../..');
const tmp = mkdtempSync(join(tmpdir(), 'underlay-health-'));
const textfileDir = join(tmp, 'textfile');
const tag = `ulh${process.pid % 10000}`;
const ns = `${tag}gw`;
const nic = `${tag}n`;
const vlanIf = `${tag}v`;
const octet = 100 + (process.pid % 50); // 198.19.100–149 here; probe.test.ts and monitoring.test.ts use 10–99 and 150–249
const gw = `198.19.${octet}.1`;
const taskQueue = `health-${process.pid}`;
const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });

let env: TestWorkflowEnvironment;
let sshd: Sshd;
let worker: BackgroundWorker | undefined;
let sessions = 0;

function spec(id: string, gateway = gw): ServerSpec {
  return parseServerSpec({
    id,
    site: 'ci',
    rack: 'r01',
    management: { address: '127.0.0.1', port: sshd.port, hostKey: sshd.hostKeyFingerprint, credentials: { agent: true } },
    nics: [{ name: nic }],
    vlans: [{ id: 100, parent: nic, name: vlanIf, gateway }],
    hypervisor: { kind: 'kvm' },
  });
}

before(async () => {
  mkdirSync(textfileDir);
  ip('netns', 'add', ns);
  ip('link', 'add', nic, 'type', 'veth', 'peer', 'name', `${tag}np`);
  ip('link', 'set', `${tag}np`, 'netns', ns);
  ip('link', 'add', vlanIf, 'type', 'veth', 'peer', 'name', `${tag}g`);
  ip('link', 'set', `${tag}g`, 'netns', ns);
  ip('addr', 'add', `198.19.${octet}.2/24`, 'dev', vlanIf);
  for (const l of [nic, vlanIf]) ip('link', 'set', l, 'up');
  ip('-n', ns, 'addr', 'add', `${gw}/24`, 'dev', `${tag}g`);
  for (const l of ['lo', `${tag}np`, `${tag}g`]) ip('-n', ns, 'link', 'set', l, 'up');
  [env, sshd] = await Promise.all([startTemporal(), startSshd()]);
  // The real SSH session to the sshd (as the spec's settings would open it), counted per probe.
  const connect: Connector = async (s, step) => {
    sessions++;
    const session = await SshSession.connect(sshd.target());
    return { host: new RemoteHost(session, s.id, true, step), close: () => session.close() };
  };
  worker = runInBackground(
    await createWorker({
      connection: env.nativeConnection,
      namespace: 'default',
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities(connect, fakeSteps(new FakeHost())),
    }),
  );
  // Managed: a completed onboarding each (fake steps; the lookup the sweep makes is real).
  for (const id of ['hc-ok', 'hc-lossy']) await (await startOnboarding(env.client, spec(id), { taskQueue })).result();
});

after(async () => {
  await worker?.stop();
  await env?.teardown();
  await sshd?.stop();
  for (const args of [
    ['link', 'del', nic],
    ['link', 'del', vlanIf],
    ['netns', 'del', ns],
  ]) {
    try {
      ip(...args);
    } catch {
      /* already gone */
    }
  }
  rmSync(tmp, { recursive: true, force: true });
});

function inventory(name: string): string {
  const dir = join(tmp, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'hc-ok.json'), JSON.stringify(spec('hc-ok')));
  // A gateway address nobody holds: every echo request is lost.
  writeFileSync(join(dir, 'hc-lossy.json'), JSON.stringify(spec('hc-lossy', `198.19.${octet}.9`)));
  writeFileSync(join(dir, 'hc-new.json'), JSON.stringify(spec('hc-new')));
  writeFileSync(join(dir, 'hc-bad.json'), JSON.stringify({ ...spec('hc-bad'), vlans: 'none' }));
  return dir;
}

function underlay(...args: string[]) {
  const r = spawnSync(join(root, 'bin/underlay'), args, {
    cwd: root,
    encoding: 'utf8',
    timeout: 90_000,
    env: { ...process.env, TEMPORAL_ADDRESS: env.address, TEMPORAL_NAMESPACE: 'default' },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('health probes over the inventory on a real Temporal dev server', () => {
  test('a sweep probes each managed host once, pages with continue-as-new, writes the textfile, shows a table in the Web UI', async () => {
    const dir = inventory('inv-run');
    const before = sessions;
    const handle = await startHealthSweep(env.client, { inventoryDir: dir, pageSize: 2, concurrency: 2, count: 3, textfileDir, taskQueue });
    const s = await handle.result();
    assert.equal(s.pages, 2, 'two pages of two files: one continue-as-new');
    assert.deepEqual(s.counts, { servers: 3, healthy: 1, degraded: 1, failed: 0, skipped: 1, invalid: 1 });
    assert.deepEqual(s.invalid, ['hc-bad.json']);
    const row = (id: string) => s.rows.find((r) => r.serverId === id)!;
    assert.equal(row('hc-ok').status, 'healthy', JSON.stringify(row('hc-ok')));
    assert.deepEqual(
      row('hc-ok').gateways.map((g) => [g.vlan, g.loss]),
      [[100, 0]],
    );
    assert.ok((row('hc-ok').gateways[0]!.rttMs ?? -1) >= 0);
    assert.equal(row('hc-lossy').status, 'degraded');
    assert.deepEqual(row('hc-lossy').problems, [`VLAN 100 gateway 198.19.${octet}.9: loss 100%`]);
    assert.equal(row('hc-new').status, 'skipped');
    assert.match(row('hc-new').problems[0]!, /not probed: not onboarded/);
    assert.equal(sessions - before, 2, 'one SSH session per managed host, none for the others');
    // The textfile on the host (this sshd is the host): the last probe's, atomically replaced.
    assert.match(
      readFileSync(join(textfileDir, TEXTFILE_NAME), 'utf8'),
      /^underlay_gateway_loss_ratio\{server="hc-(ok|lossy)",site="ci",rack="r01",vlan="100"\} [01]$/m,
    );
    // One activity per managed host, each with a summary the Web UI shows in the event history.
    const summaries: string[] = [];
    for (const runId of [handle.firstExecutionRunId, undefined]) {
      const h = env.client.workflow.getHandle(handle.workflowId, runId);
      for (const e of (await h.fetchHistory()).events ?? []) {
        if (e.activityTaskScheduledEventAttributes?.activityType?.name === 'probeHealth')
          summaries.push(String(e.userMetadata?.summary?.data ? Buffer.from(e.userMetadata.summary.data).toString() : ''));
      }
    }
    assert.deepEqual(summaries.sort(), ['"health probe hc-lossy (ci/r01)"', '"health probe hc-ok (ci/r01)"']);
    // The Web UI's "current details" of the sweep (the metadata query it sends): the degraded host first.
    const meta = (await env.client.workflow.getHandle(handle.workflowId).query('__temporal_workflow_metadata')) as { currentDetails?: string };
    const lines = (meta.currentDetails ?? '').split('\n');
    const table = lines.filter((l) => l.startsWith('| hc-'));
    assert.deepEqual(
      table.map((l) =>
        l
          .split('|')
          .slice(1, 5)
          .map((c) => c.trim()),
      ),
      [
        ['hc-lossy', 'degraded', 'VLAN 100: 100%', '-'],
        ['hc-new', 'skipped', '-', '-'],
        ['hc-ok', 'healthy', 'VLAN 100: 0%', '-'],
      ],
      meta.currentDetails,
    );
    assert.match(meta.currentDetails ?? '', /3 host\(s\): 1 healthy · 1 degraded · 0 probe failed · 1 skipped · 1 invalid spec\(s\)/);
  });

  test('underlay health schedule | status | unschedule: the Schedule runs the sweep; status shows it and the last result', async () => {
    const dir = inventory('inv-schedule');
    const created = underlay(
      'health',
      'schedule',
      '--every',
      '1h',
      '--inventory',
      dir,
      '--pings',
      '3',
      '--textfile-dir',
      textfileDir,
      '--task-queue',
      taskQueue,
    );
    assert.equal(created.code, 0, created.err);
    assert.match(created.out, new RegExp(`created schedule ${HEALTH_SCHEDULE_ID}`));
    assert.match(created.out, /every 1h · inventory .*inv-schedule · 10 host\(s\) at once · 3 echo requests per gateway/);
    const bad = underlay('health', 'schedule', '--inventory', dir, '--task-queue', taskQueue);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /exactly one of --every/);

    const { handle } = await healthScheduleHandle(env.client);
    await handle.trigger();
    let d = await handle.describe();
    for (let i = 0; i < 300 && !(d.info.recentActions.length && !d.info.runningActions.length); i++) {
      await new Promise((r) => setTimeout(r, 200));
      d = await handle.describe();
    }
    const wf = d.info.recentActions.at(-1)!.action.workflow.workflowId;
    assert.match(wf, new RegExp(`^${HEALTH_SCHEDULE_ID}-sweep-`));
    const s = await env.client.workflow.getHandle(wf).result();
    assert.equal(s.counts.degraded, 1);

    const status = underlay('health', 'status');
    assert.equal(status.code, 0, status.err);
    assert.match(status.out, /schedule underlay-health: active/);
    assert.match(status.out, /✗ hc-lossy degraded · VLAN 100 loss 100%\n\s+VLAN 100 gateway 198\.19\.\d+\.9: loss 100%/);
    assert.match(status.out, /✓ hc-ok healthy · VLAN 100 loss 0%/);

    const gone = underlay('health', 'unschedule');
    assert.equal(gone.code, 0, gone.err);
    const after = underlay('health', 'status');
    assert.equal(after.code, 1);
    assert.match(after.err, /no health schedule underlay-health: create it with `underlay health schedule --every 5m`/);
  });
});
