/**
 * The shipped service unit and configuration examples (deploy/), checked by Debian's systemd tools without
 * starting anything: `systemd-analyze verify` (the unit parses, every key known, ExecStart executable — here
 * pointed at this clone's bin/underlay), `systemd-analyze security --offline` (hardening), and what the unit
 * promises about stopping (SIGTERM, a stop timeout above the worker's grace).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { loadClientConfig } from '@temporalio/envconfig';
import { FORCE_MARGIN_MS, parseShutdownGrace, TUNING_FLAGS } from '../../src/workers/service';

const execFileP = promisify(execFile);
const root = resolve(__dirname, '../..');
const UNIT = readFileSync(join(root, 'deploy/systemd/underlay-worker.service'), 'utf8');
const tmp = mkdtempSync(join(tmpdir(), 'underlay-systemd-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** The unit as installed from this clone: /opt/underlay → the clone (so ExecStart exists). */
function installed(text = UNIT, name = 'underlay-worker.service'): string {
  const p = join(tmp, name);
  writeFileSync(p, text.replaceAll('/opt/underlay', root));
  return p;
}

async function analyze(...args: string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await execFileP('systemd-analyze', args, { encoding: 'utf8' });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, out: (e.stdout ?? '') + (e.stderr ?? '') };
  }
}

function directives(text: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const d = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (d) m.set(d[1]!, [...(m.get(d[1]!) ?? []), d[2]!]);
  }
  return m;
}

test('systemd-analyze verify: no error, no warning (and it does report a broken copy)', async () => {
  const ok = await analyze('verify', installed());
  assert.deepEqual(ok, { code: 0, out: '' });
  const broken = await analyze(
    'verify',
    installed(UNIT.replace('KillSignal=SIGTERM', 'KillSignal=SIGFOO').replace('ProtectSystem=', 'ProtectSytem='), 'broken.service'),
  );
  assert.match(broken.out, /Failed to parse signal name, ignoring: SIGFOO/);
  assert.match(broken.out, /Unknown key 'ProtectSytem'/);
});

test('systemd-analyze security: overall exposure at most 2.0 ("OK")', async () => {
  const r = await analyze('security', '--offline=yes', '--threshold=20', installed());
  const level = /Overall exposure level for underlay-worker\.service: ([\d.]+) (\w+)/.exec(r.out);
  assert.ok(level, r.out);
  assert.ok(Number(level[1]) <= 2.0, `exposure ${level[1]} ${level[2]}`);
  assert.equal(r.code, 0);
});

test('stopping: SIGTERM to the worker only, a stop timeout above grace + force margin, restarted on failure', () => {
  const d = directives(UNIT);
  const exec = d.get('ExecStart')![0]!;
  assert.match(exec, /^\/opt\/underlay\/bin\/underlay worker( |$)/);
  const grace = parseShutdownGrace(/--shutdown-grace (\S+)/.exec(exec)?.[1] ?? '60s');
  const timeout = parseShutdownGrace(d.get('TimeoutStopSec')![0]!);
  assert.ok(timeout > grace + FORCE_MARGIN_MS, `TimeoutStopSec ${timeout} ms must exceed grace ${grace} + ${FORCE_MARGIN_MS} ms`);
  assert.deepEqual(
    ['KillSignal', 'KillMode', 'Restart', 'User', 'NoNewPrivileges', 'ProtectSystem', 'PrivateTmp', 'ProtectHome'].map((k) => [k, d.get(k)?.[0]]),
    [
      ['KillSignal', 'SIGTERM'],
      ['KillMode', 'mixed'],
      ['Restart', 'on-failure'],
      ['User', 'underlay'],
      ['NoNewPrivileges', 'yes'],
      ['ProtectSystem', 'strict'],
      ['PrivateTmp', 'yes'],
      ['ProtectHome', 'yes'],
    ],
  );
});

test('the configuration examples: only variables underlay reads, no inline secret; TOML profiles parse strictly, files by path', () => {
  const env = readFileSync(join(root, 'deploy/systemd/underlay-worker.env.example'), 'utf8');
  const known = new Set([
    'TEMPORAL_CONFIG_FILE',
    'TEMPORAL_PROFILE',
    'UNDERLAY_TEMPORAL_API_KEY_FILE',
    'UNDERLAY_CODEC_KEYS_FILE',
    'UNDERLAY_METRICS_ADDRESS',
    'UNDERLAY_WORKER_HEAP_MIB',
    ...Object.values(TUNING_FLAGS).map((t) => t.env),
  ]);
  const vars = [...env.matchAll(/^#?([A-Z_]+)=/gm)].map((m) => m[1]!);
  assert.ok(vars.length >= 4);
  for (const v of vars) assert.ok(known.has(v), `${v} is not a variable underlay reads`);
  assert.doesNotMatch(env, /^#?(TEMPORAL_API_KEY|UNDERLAY_CODEC_KEY|TEMPORAL_TLS_CLIENT_KEY_DATA)=/m);

  const toml = readFileSync(join(root, 'deploy/temporal.toml.example'), 'utf8');
  const { profiles } = loadClientConfig({ configSource: { data: toml }, configFileStrict: true });
  assert.deepEqual(Object.keys(profiles).sort(), ['cloud', 'cloud-mtls', 'dev', 'prod']);
  for (const [name, p] of Object.entries(profiles)) {
    assert.equal(p.apiKey, undefined, `${name}: no API key in the file`);
    for (const src of [p.tls?.clientCert, p.tls?.clientKey, p.tls?.serverCACert]) if (src) assert.ok('path' in src, `${name}: TLS material by path`);
  }
});
