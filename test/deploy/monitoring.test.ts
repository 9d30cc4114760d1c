/**
 * The shipped dashboard (deploy/grafana/underlay.json) and alert rules against a REAL Prometheus (Debian's
 * `prometheus`, 127.0.0.1, temporary config and storage) that scrapes REAL data:
 *  - a worker's metrics endpoint (the Runtime's Prometheus exporter, as `underlay worker --metrics`) after a
 *    successful and a failed onboarding (fake steps) on a Temporal dev server;
 *  - the host's node_exporter (Debian's `prometheus-node-exporter`, textfile collector only) serving the
 *    underlay.prom the health probe wrote over a real sshd, with the gateway in a network namespace the test
 *    creates (198.19.x.0/24): answering first, then gone.
 * Every panel's and variable's query must return series; the loss panels and the UnderlayGatewayUnreachable rule
 * must follow the gateway. Cost: ≈ 30 s (dev server, two onboardings, two 10-request bursts, Prometheus at 1 s).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { createActivities } from '../../src/activities';
import { evaluateProbe, probeHost, renderHealthTextfile } from '../../src/activities/probe';
import { parseProbeOutput } from '../../src/drivers/linux/probe';
import { startOnboarding } from '../../src/cli/onboarding';
import { VerificationError } from '../../src/common/errors';
import { SEARCH_ATTRIBUTES } from '../../src/common/search-attributes';
import { RemoteHost } from '../../src/drivers/remote';
import { loadSpecFile } from '../../src/spec/load';
import { parseServerSpec } from '../../src/spec/validate';
import type { ServerSpec } from '../../src/spec/server';
import { SshSession } from '../../src/transports/ssh';
import { metricsRuntimeOptions } from '../../src/workers/step-metrics';
import { createWorker } from '../../src/workers/worker';
import { FakeHost, fakeSteps, nullConnector } from '../helpers/fake-steps';
import { capturedOutput, fx, labSpec } from '../helpers/probe-captures';
import { startPrometheus, type PrometheusStack } from '../helpers/prometheus';
import { freePort, sleep, startSshd, type Sshd } from '../helpers/sshd';
import { TEMPORAL_BIN, workflowBundle } from '../helpers/temporal';

const root = resolve(__dirname, '../..');
const work = mkdtempSync(join(tmpdir(), 'underlay-monitoring-'));
const textfileDir = join(work, 'textfile');
const tag = `ulm${process.pid % 10000}`;
const ns = `${tag}gw`;
const nic = `${tag}n`; // the NIC: a veth whose peer sits in the namespace
const vlanIf = `${tag}v`; // the VLAN interface: a veth to the gateway's namespace
const octet = 150 + (process.pid % 100); // 198.19.150–249 here, 198.19.10–99 in test/activities/probe.test.ts (they may run at once)
const gw = `198.19.${octet}.1`;

let env: TestWorkflowEnvironment;
let sshd: Sshd;
let prom: PrometheusStack;
let hostSpec: ServerSpec;
const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });

before(async () => {
  const workerAddress = `127.0.0.1:${await freePort()}`;
  Runtime.install({ ...metricsRuntimeOptions(workerAddress), logger: new DefaultLogger('ERROR') });
  prom = await startPrometheus({ work, textfileDir, rulesFile: join(root, 'deploy/prometheus/underlay-rules.yml'), workerAddress });

  ip('netns', 'add', ns);
  ip('link', 'add', nic, 'type', 'veth', 'peer', 'name', `${tag}np`);
  ip('link', 'set', `${tag}np`, 'netns', ns);
  ip('link', 'set', nic, 'up');
  ip('-n', ns, 'link', 'set', `${tag}np`, 'up');
  ip('link', 'add', vlanIf, 'type', 'veth', 'peer', 'name', `${tag}g`);
  ip('link', 'set', `${tag}g`, 'netns', ns);
  ip('addr', 'add', `198.19.${octet}.2/24`, 'dev', vlanIf);
  ip('link', 'set', vlanIf, 'up');
  ip('-n', ns, 'addr', 'add', `${gw}/24`, 'dev', `${tag}g`);
  for (const l of ['lo', `${tag}g`]) ip('-n', ns, 'link', 'set', l, 'up');

  [env, sshd] = await Promise.all([
    TestWorkflowEnvironment.createLocal({
      server: {
        executable: { type: 'existing-path', path: TEMPORAL_BIN },
        ip: '127.0.0.1',
        searchAttributes: SEARCH_ATTRIBUTES,
        log: { format: 'pretty', level: 'warn' },
      },
    }),
    startSshd(),
  ]);
  hostSpec = parseServerSpec({
    id: 'mon-host-1',
    site: 'ci-site',
    rack: 'r07',
    management: { address: '127.0.0.1', port: sshd.port, hostKey: sshd.hostKeyFingerprint, credentials: { agent: true } },
    nics: [{ name: nic }],
    vlans: [{ id: 100, parent: nic, name: vlanIf, gateway: gw }],
    hypervisor: { kind: 'kvm' },
  });
});

after(async () => {
  await prom?.stop();
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
  await sleep(300);
  rmSync(work, { recursive: true, force: true });
});

const query = (expr: string) => prom.query(expr);
const until = (expr: string, ok: (v: number) => boolean, what: string) => prom.until(expr, ok, what);

async function probe() {
  const s = await SshSession.connect(sshd.target());
  try {
    return await probeHost(new RemoteHost(s, hostSpec.id, true), hostSpec, { textfileDir });
  } finally {
    s.close();
  }
}

let seq = 0;
async function onboard(base: ServerSpec, host: FakeHost): Promise<void> {
  const spec: ServerSpec = { ...base, id: `mon-${process.pid}-${++seq}` };
  const taskQueue = `tq-${spec.id}`;
  const worker = await createWorker({
    connection: env.nativeConnection,
    namespace: 'default',
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: createActivities(nullConnector, fakeSteps(host)),
    dataConverter: undefined,
  });
  await worker.runUntil(async () => {
    const handle = await startOnboarding(env.client, spec, { taskQueue });
    await handle.result().catch(() => undefined);
  });
}

interface Dashboard {
  templating: { list: Array<{ name: string; type: string; query?: { query: string } | string }> };
  panels: Array<{ type: string; title: string; targets?: Array<{ expr: string }> }>;
}

/** Grafana's variables as the dashboard would send them with `host` selected. */
function substitute(expr: string, host: Pick<ServerSpec, 'id' | 'site' | 'rack'> = hostSpec): string {
  return expr
    .replaceAll('$__rate_interval', '2m')
    .replaceAll('$__range', '10m')
    .replaceAll('$site', host.site)
    .replaceAll('$rack', host.rack)
    .replaceAll('$server', host.id);
}

describe('dashboard and rules against a real Prometheus scraping a worker and a host exporter', () => {
  test('healthy gateway and onboardings: every dashboard query returns series', async () => {
    const healthy = await probe();
    assert.equal(healthy.gateways[0]!.lossRatio, 0);
    // A second host for what this kernel cannot have (bond, LLDP, SR-IOV): the lab server1's probe output as
    // captured there (negotiated bond, lldpd neighbours, 4 VFs), read and rendered by the same code.
    const server1 = evaluateProbe(labSpec, parseProbeOutput(capturedOutput(fx('proc-net-bonding-bond0.lacp-up.txt'))), 2.5);
    writeFileSync(join(textfileDir, 'server1-captured.prom'), renderHealthTextfile({ ...server1, timestamp: Math.floor(Date.now() / 1000) }));
    // The agent as credentials: sshd's helper made this process's credentials directory a temporary one.
    const example = await loadSpecFile(join(root, 'examples/kvm-macvtap.yaml'));
    const base: ServerSpec = { ...example, management: { ...example.management, credentials: { agent: true } } };
    await onboard(base, new FakeHost());
    const failing = new FakeHost();
    failing.faults = [{ step: 'vlan', phase: 'verify', error: () => new VerificationError('injected mismatch', { step: 'vlan' }) }];
    await onboard(base, failing);

    await until(`underlay_gateway_loss_ratio{server="${hostSpec.id}", vlan="100"}`, (v) => v === 0, 'loss 0 scraped from the host exporter');
    await until('sum(underlay_step_total{kind="apply", outcome="failed"})', (v) => v >= 1, 'failed step attempts scraped from the worker');
    await until('sum(underlay_step_total{kind="rollback", outcome="ok"})', (v) => v >= 1, 'rollbacks scraped from the worker');
    // rate()/increase() need two samples after the change: one more scrape of each target.
    await sleep(2500);

    const dash = JSON.parse(readFileSync(join(root, 'deploy/grafana/underlay.json'), 'utf8')) as Dashboard;
    const empty: string[] = [];
    let checked = 0;
    for (const p of dash.panels) {
      for (const t of p.targets ?? []) {
        checked++;
        // With either host selected: the local one has no bond, LLDP or VFs; the captured one no live ping.
        const local = await query(substitute(t.expr));
        const captured = await query(substitute(t.expr, labSpec));
        if (!local.length && !captured.length) empty.push(`${p.title}: ${t.expr}`);
      }
    }
    assert.deepEqual(empty, [], 'panel queries without series');
    assert.equal(checked, 28);

    // Template variables: label_values(<metric>, <label>) is the series API with a match[] selector.
    for (const v of dash.templating.list.filter((x) => x.type === 'query')) {
      const q = typeof v.query === 'string' ? v.query : v.query!.query;
      const m = /^label_values\((.+), (\w+)\)$/.exec(q);
      assert.ok(m, `${v.name}: ${q}`);
      const res = await fetch(`${prom.url}/api/v1/label/${m[2]}/values?${new URLSearchParams({ 'match[]': substitute(m[1]!) })}`);
      const body = (await res.json()) as { data: string[] };
      assert.ok(body.data.includes(substitute(`$${m[2]}`)), `${v.name}: ${JSON.stringify(body.data)}`);
    }

    // A few values the panels must show for this fleet of one host.
    assert.equal((await query(substitute(dash.panels.find((p) => p.title === 'Hosts probed')!.targets![0]!.expr)))[0]!.value[1], '1');
    const bondPanel = dash.panels.find((p) => p.title === 'Bond ports active / configured')!;
    assert.deepEqual(
      await Promise.all(bondPanel.targets!.map(async (t) => (await query(substitute(t.expr, labSpec))).map((r) => [r.metric.nic, r.value[1]]))),
      [[['bond0', '2']], [['bond0', '2']]],
    );
    assert.equal((await query(substitute(dash.panels.find((p) => p.title === 'Gateways losing packets')!.targets![0]!.expr)))[0]!.value[1], '0');
    const failedSteps = await query(substitute(dash.panels.find((p) => p.title === 'Failed attempts over the range')!.targets![0]!.expr));
    assert.deepEqual(
      failedSteps.filter((s) => Number(s.value[1]) > 0).map((s) => s.metric.step),
      ['vlan'],
    );
  });

  test('gateway gone: loss 1 on the panels, UnderlayGatewayUnreachable pending for that host and VLAN', async () => {
    ip('-n', ns, 'addr', 'flush', 'dev', `${tag}g`);
    const gone = await probe();
    assert.equal(gone.gateways[0]!.lossRatio, 1);
    await until(`underlay_gateway_loss_ratio{server="${hostSpec.id}", vlan="100"}`, (v) => v === 1, 'loss 1 scraped');
    const dash = JSON.parse(readFileSync(join(root, 'deploy/grafana/underlay.json'), 'utf8')) as Dashboard;
    const losing = dash.panels.find((p) => p.title === 'Gateways losing packets')!.targets![0]!.expr;
    assert.equal((await query(substitute(losing)))[0]!.value[1], '1');
    const alerts = await until(`ALERTS{alertname="UnderlayGatewayUnreachable", server="${hostSpec.id}"}`, (v) => v === 1, 'the rule matches');
    assert.deepEqual(
      alerts.map((a) => [a.metric.alertstate, a.metric.vlan, a.metric.site, a.metric.rack, a.metric.severity]),
      [['pending', '100', 'ci-site', 'r07', 'critical']],
    );
    // Loss 1 is "unreachable", not "loss": the warning rule stays quiet.
    assert.deepEqual(await query(`ALERTS{alertname="UnderlayGatewayLoss", server="${hostSpec.id}"}`), []);
  });
});
