/**
 * The shipped alert rules (deploy/prometheus/underlay-rules.yml) checked and unit-tested by Debian's promtool:
 * `promtool check rules` (syntax, PromQL) and `promtool test rules` on underlay-rules.test.yml, which drives every
 * alert through series that fire it and series that must not; docs/monitoring.md names every alert and panel. Cost: ≈ 2 s.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { parse } from 'yaml';

const execFileP = promisify(execFile);
const dir = resolve(__dirname, '../../deploy/prometheus');

async function promtool(...args: string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await execFileP('promtool', args, { cwd: dir, encoding: 'utf8' });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, out: (e.stdout ?? '') + (e.stderr ?? '') };
  }
}

test('promtool check rules: the rules file parses and every expression is valid PromQL', async () => {
  const r = await promtool('check', 'rules', 'underlay-rules.yml');
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /SUCCESS: 14 rules found/);
});

test('promtool test rules: every alert fires on the series that should fire it, and only on those', async () => {
  const r = await promtool('test', 'rules', 'underlay-rules.test.yml');
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /SUCCESS/);
});

test('every alert of the rules file is exercised by a firing case in the unit tests', () => {
  const rules = parse(readFileSync(join(dir, 'underlay-rules.yml'), 'utf8')) as { groups: Array<{ rules: Array<{ alert?: string }> }> };
  const alerts = rules.groups.flatMap((g) => g.rules.map((r) => r.alert)).filter((a): a is string => !!a);
  const tests = parse(readFileSync(join(dir, 'underlay-rules.test.yml'), 'utf8')) as {
    tests: Array<{ alert_rule_test: Array<{ alertname: string; exp_alerts: unknown[] }> }>;
  };
  const fired = new Set(tests.tests.flatMap((t) => t.alert_rule_test.filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname)));
  assert.equal(alerts.length, 14);
  assert.deepEqual(
    alerts.filter((a) => !fired.has(a)),
    [],
  );
});

test('docs/monitoring.md names every alert and every dashboard panel with its query', () => {
  const doc = readFileSync(resolve(__dirname, '../../docs/monitoring.md'), 'utf8');
  const rules = parse(readFileSync(join(dir, 'underlay-rules.yml'), 'utf8')) as { groups: Array<{ rules: Array<{ alert: string }> }> };
  const missing = rules.groups.flatMap((g) => g.rules.map((r) => r.alert)).filter((a) => !doc.includes(`\`${a}\``));
  const dash = JSON.parse(readFileSync(resolve(__dirname, '../../deploy/grafana/underlay.json'), 'utf8')) as {
    panels: Array<{ type: string; title: string; targets?: Array<{ expr: string }> }>;
  };
  for (const p of dash.panels.filter((x) => x.type !== 'row')) {
    if (!doc.includes(`| ${p.title} |`)) missing.push(`panel ${p.title}`);
    for (const t of p.targets ?? []) if (!doc.includes(t.expr.replaceAll('|', '\\|'))) missing.push(`query of ${p.title}`);
  }
  assert.deepEqual(missing, []);
});
