/**
 * Health probes on a real onboarded lab host (issue 17's proof), registered by the main lab file after its drift
 * scenarios on server1 (bond, VLANs 100/200, 4 VFs, OVS attach; no extra lab boot): the health sweep workflow
 * (the Schedule's action) probes server1 over SSH on the lab's Temporal dev server and writes underlay.prom on it;
 * the test copies that file next to a REAL node_exporter (Debian's, textfile collector) on this machine — the lab
 * image has no node_exporter — scraped by a REAL Prometheus (1 s) evaluating the shipped rules, with every `for:`
 * set to 0 s so a rule fires on its first evaluation (its expression is the shipped one; the `for:` durations are
 * tested by `promtool test rules`). Then, each undone after its check:
 *  - healthy: loss 0 on both VLANs, 2 of 2 bond ports, no underlay alert firing for the host, every host panel of
 *    the dashboard returns data;
 *  - one switch leg down (swp2 on the switch): 1 of 2 bond ports, UnderlayBondOneLeg;
 *  - `tc netem loss 50%` on the switch's VLAN 100 interface: loss between 0 and 1 on VLAN 100 only, UnderlayGatewayLoss;
 *  - the gateway 192.0.2.1 removed from the switch: loss 1 on VLAN 100, UnderlayGatewayUnreachable.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createActivities, stepSetOf, type HealthRow } from '../../src/activities';
import { DEFAULT_TEXTFILE_DIR, TEXTFILE_NAME } from '../../src/activities/probe';
import { startHealthSweep } from '../../src/cli/health';
import type { ServerSpec } from '../../src/spec/server';
import { createWorker } from '../../src/workers/worker';
import { startPrometheus, type PrometheusStack } from '../helpers/prometheus';
import { labVm } from '../helpers/lab';
import { sshTarget } from '../../src/activities/connect';
import { RemoteHost } from '../../src/drivers/remote';
import { SshSession } from '../../src/transports/ssh';
import { runInBackground, workflowBundle, type BackgroundWorker } from '../helpers/temporal';

const root = resolve(__dirname, '../..');

export interface HealthFaultsContext {
  env: TestWorkflowEnvironment;
  /** The onboarded lab host (its onboarding completed on env's dev server). */
  spec: ServerSpec;
}

export function describeHealthFaults(ctxOf: () => HealthFaultsContext): void {
  describe('health probes on the onboarded host: faults move their metric and fire their rule in a real Prometheus', { concurrency: 1 }, () => {
    const work = mkdtempSync(join(tmpdir(), 'underlay-lab-health-'));
    const textfileDir = join(work, 'textfile');
    const inventoryDir = join(work, 'inventory');
    const taskQueue = `lab-health-${process.pid}`;
    let worker: BackgroundWorker | undefined;
    let prom: PrometheusStack;
    let spec: ServerSpec;
    let env: TestWorkflowEnvironment;
    const t0 = Date.now();
    const sweeps: number[] = [];
    const copies: number[] = [];

    // One SSH session each to the host and the switch for the whole scenario (a handshake with a TCG guest costs
    // seconds); dropped on any error and opened again by the next command.
    const sessions = new Map<string, { session: SshSession; host: RemoteHost }>();
    async function runOn(target: ServerSpec, cmd: string): Promise<string> {
      let c = sessions.get(target.id);
      if (!c) {
        const session = await SshSession.connect(sshTarget(target));
        c = { session, host: new RemoteHost(session, target.id, true) };
        sessions.set(target.id, c);
      }
      try {
        return (await c.host.runLine({ text: cmd }, { description: cmd.slice(0, 80), timeoutMs: 120_000 })).stdout;
      } catch (err) {
        c.session.close();
        sessions.delete(target.id);
        throw err;
      }
    }
    const onSwitch = (cmd: string) => {
      const sw = labVm('switch');
      return runOn({ ...spec, id: 'lab-switch', management: { ...spec.management, port: sw.port, hostKey: sw.hostKey } }, cmd);
    };

    before(async () => {
      ({ env, spec } = ctxOf());
      mkdirSync(textfileDir, { recursive: true });
      mkdirSync(inventoryDir, { recursive: true });
      writeFileSync(join(inventoryDir, `${spec.id}.json`), JSON.stringify(spec));
      // The shipped rules with every `for:` at 0 s (expressions untouched).
      const rules = readFileSync(join(root, 'deploy/prometheus/underlay-rules.yml'), 'utf8');
      const immediate = rules.replace(/^(\s+for:\s*).+$/gm, '$10s');
      assert.notEqual(immediate, rules, 'the rules file has for: clauses');
      writeFileSync(join(work, 'rules.yml'), immediate);
      prom = await startPrometheus({ work, textfileDir, rulesFile: join(work, 'rules.yml') });
      worker = runInBackground(
        await createWorker({
          connection: env.nativeConnection,
          namespace: 'default',
          taskQueue,
          workflowBundle: await workflowBundle(),
          activities: createActivities(undefined, stepSetOf('kvm')),
        }),
      );
    });

    after(async () => {
      await worker?.stop();
      for (const c of sessions.values()) c.session.close();
      await prom?.stop();
      rmSync(work, { recursive: true, force: true });
      const ms = [...sweeps].sort((a, b) => a - b);
      console.log(
        `health faults on the lab: ${Math.round((Date.now() - t0) / 1000)} s, ${ms.length} sweeps (median ${((ms[ms.length >> 1] ?? 0) / 1000).toFixed(1)} s each; textfile copies ${copies.map((c) => (c / 1000).toFixed(1)).join(', ')} s)`,
      );
    });

    const query = (expr: string) => prom.query(expr);
    const until = (expr: string, ok: (v: number) => boolean, what: string) => prom.until(expr, ok, what);

    /** The alerts firing for the host, as `name/label` (label: vlan or nic). */
    async function firing(): Promise<string[]> {
      const a = await query(`ALERTS{alertstate="firing", server="${spec.id}"}`);
      return a.map((s) => `${s.metric.alertname}/${s.metric.vlan ?? s.metric.nic ?? s.metric.probe ?? ''}`).sort();
    }

    /** One health sweep (the Schedule's workflow) over the host, then its textfile next to the local node_exporter. */
    async function sweep(count = 10): Promise<HealthRow> {
      const started = Date.now();
      const s = await (await startHealthSweep(env.client, { inventoryDir, count, taskQueue })).result();
      const probed = Date.now();
      sweeps.push(probed - started);
      assert.equal(s.counts.servers, 1, JSON.stringify(s));
      const prom = await runOn(spec, `cat ${DEFAULT_TEXTFILE_DIR}/${TEXTFILE_NAME}`);
      writeFileSync(join(textfileDir, `.${TEXTFILE_NAME}.tmp`), prom);
      renameSync(join(textfileDir, `.${TEXTFILE_NAME}.tmp`), join(textfileDir, TEXTFILE_NAME));
      copies.push(Date.now() - probed);
      return s.rows[0]!;
    }

    /** Sweeps (bounded: 8) until the row satisfies `ok` (LACP and lldpd settle within seconds). */
    async function sweepUntil(ok: (r: HealthRow) => boolean, what: string, count = 10): Promise<HealthRow> {
      let r = await sweep(count);
      for (let i = 0; i < 5 && !ok(r); i++) {
        await sleep(2_000);
        r = await sweep(count);
      }
      assert.ok(ok(r), `${what}: ${JSON.stringify(r)}`);
      return r;
    }

    const healthy = (r: HealthRow) => r.status === 'healthy';

    test('healthy: loss 0 on both VLANs, 2 of 2 bond ports, no alert firing, every host panel of the dashboard has data', async () => {
      const r = await sweepUntil(healthy, 'healthy');
      assert.deepEqual(
        r.gateways.map((g) => [g.vlan, g.loss]),
        [
          [100, 0],
          [200, 0],
        ],
      );
      assert.deepEqual(r.bond, { active: 2, configured: 2, partner: true });
      await until(`underlay_bond_ports_active{server="${spec.id}", nic="bond0"}`, (v) => v === 2, 'bond ports scraped');
      await until(`underlay_gateway_loss_ratio{server="${spec.id}", vlan="200"}`, (v) => v === 0, 'loss scraped');
      await sleep(2_500); // two more scrapes and evaluations (rate() needs two samples)
      assert.deepEqual(await firing(), []);
      const dash = JSON.parse(readFileSync(join(root, 'deploy/grafana/underlay.json'), 'utf8')) as {
        panels: Array<{ title: string; targets?: Array<{ expr: string }> }>;
      };
      const empty: string[] = [];
      let checked = 0;
      for (const p of dash.panels) {
        for (const t of p.targets ?? []) {
          // The onboarding panels read the workers' metrics (test/deploy/monitoring.test.ts); these read the host's.
          if (t.expr.includes('underlay_step_')) continue;
          checked++;
          const expr = t.expr.replaceAll('$__rate_interval', '1m').replaceAll('$site', spec.site).replaceAll('$rack', spec.rack).replaceAll('$server', spec.id);
          if (!(await query(expr)).length) empty.push(`${p.title}: ${expr}`);
        }
      }
      assert.deepEqual(empty, [], 'host panel queries without data');
      assert.ok(checked >= 20, `${checked} queries`);
    });

    test('one switch leg down: 1 of 2 bond ports, UnderlayBondOneLeg fires', async () => {
      await onSwitch('ip link set dev swp2 down');
      try {
        const r = await sweepUntil((x) => x.bond?.active === 1, 'one leg');
        assert.ok(r.problems.includes('bond0: 1/2 ports in service'), JSON.stringify(r));
        await until(`underlay_bond_ports_active{server="${spec.id}", nic="bond0"}`, (v) => v === 1, 'bond ports 1 scraped');
        await until(`ALERTS{alertname="UnderlayBondOneLeg", alertstate="firing", server="${spec.id}", nic="bond0"}`, (v) => v === 1, 'UnderlayBondOneLeg');
        assert.ok((await firing()).includes('UnderlayBondOneLeg/bond0'));
        assert.ok(!(await firing()).some((a) => a.startsWith('UnderlayGateway')), 'the gateways still answer');
      } finally {
        await onSwitch('ip link set dev swp2 up');
      }
      // Both legs back: checked by the next scenario's sweeps (LACP re-converges meanwhile).
    });

    test('tc netem loss on the switch side of VLAN 100: loss between 0 and 1 there only, UnderlayGatewayLoss fires', async () => {
      await onSwitch('tc qdisc add dev vlan100 root netem loss 50%');
      try {
        // 20 echo requests: all 20 answered (or all lost) at 50% loss has a chance of 2 in a million.
        const r = await sweepUntil((x) => (x.gateways.find((g) => g.vlan === 100)?.loss ?? 0) > 0 && x.bond?.active === 2, 'loss, both legs back', 20);
        const v100 = r.gateways.find((g) => g.vlan === 100)!;
        assert.ok(v100.loss > 0 && v100.loss < 1, JSON.stringify(r));
        assert.equal(r.gateways.find((g) => g.vlan === 200)!.loss, 0);
        await until(`underlay_gateway_loss_ratio{server="${spec.id}", vlan="100"}`, (v) => v > 0 && v < 1, 'partial loss scraped');
        await until(`ALERTS{alertname="UnderlayGatewayLoss", alertstate="firing", server="${spec.id}", vlan="100"}`, (v) => v === 1, 'UnderlayGatewayLoss');
        // A sweep of the loop above, run while LACP re-converged after the last scenario's leg came back, may have
        // lost packets on VLAN 200 too (measured once in CI: its alert still firing here). The last sweep's loss 0
        // there must be scraped and its rule evaluated before the alerts are read.
        await until(`underlay_gateway_loss_ratio{server="${spec.id}", vlan="200"}`, (v) => v === 0, 'VLAN 200 loss 0 scraped');
        await until(
          `count(ALERTS{alertname="UnderlayGatewayLoss", alertstate="firing", server="${spec.id}", vlan="200"}) or vector(0)`,
          (v) => v === 0,
          'UnderlayGatewayLoss/200 resolved',
        );
        assert.ok(!(await firing()).includes('UnderlayGatewayLoss/200'));
      } finally {
        await onSwitch('tc qdisc del dev vlan100 root');
      }
    });

    test('the VLAN 100 gateway dropped on the switch: loss 1, UnderlayGatewayUnreachable fires; all undone: healthy, no alert', async () => {
      await onSwitch('ip addr del 192.0.2.1/24 dev vlan100');
      try {
        const r = await sweep();
        assert.equal(r.gateways.find((g) => g.vlan === 100)!.loss, 1, JSON.stringify(r));
        assert.equal(r.gateways.find((g) => g.vlan === 200)!.loss, 0);
        await until(`underlay_gateway_loss_ratio{server="${spec.id}", vlan="100"}`, (v) => v === 1, 'loss 1 scraped');
        await until(
          `ALERTS{alertname="UnderlayGatewayUnreachable", alertstate="firing", server="${spec.id}", vlan="100"}`,
          (v) => v === 1,
          'UnderlayGatewayUnreachable',
        );
        assert.ok(!(await firing()).includes('UnderlayGatewayLoss/100'), 'unreachable, not "loss"');
      } finally {
        await onSwitch('ip addr add 192.0.2.1/24 dev vlan100');
      }
      // Every fault undone: healthy again, and no alert left firing for the host.
      const r = await sweepUntil(healthy, 'all faults undone');
      assert.deepEqual(r.bond, { active: 2, configured: 2, partner: true });
      await until(`count(ALERTS{alertstate="firing", server="${spec.id}"}) or vector(0)`, (v) => v === 0, 'alerts resolved');
    });
  });
}
