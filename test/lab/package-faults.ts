/**
 * Package-database faults on a real Debian lab host, with tiny packages built there (test/helpers/dpkg-lab.ts):
 * - an install interrupted on the host (its job killed while dpkg configures) is compensated: underlay recovers
 *   the dpkg it interrupted, purges what the install added, and keeps — and names — the package a pre-existing
 *   package now depends on (the install upgraded it); dpkg --audit is clean afterwards;
 * - a dpkg someone else left half-configured is refused, naming the package, and nothing is installed;
 * - a package lock held by another apt run (as unattended-upgrades holds it after first boot) is waited for,
 *   with progress notes naming the holder, its pid and unit, and the install proceeds once it is free.
 * Registered by the main lab file on a server it has finished with (no extra lab boot).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { MockActivityEnvironment } from '@temporalio/testing';
import { sshConnector } from '../../src/activities/connect';
import { hypervisorStep, KVM_PACKAGE_JOBS, type HypervisorState } from '../../src/activities/hypervisor';
import type { JobMark } from '../../src/activities/job';
import { installDetached } from '../../src/activities/packages';
import { undoStep } from '../../src/activities/run-step';
import type { StepChoice, StepIo, UndoResult } from '../../src/activities/step';
import { PackageDatabaseError } from '../../src/common/errors';
import { DPKG_JOB_RECORD } from '../../src/drivers/linux/dpkg';
import type { ServerSpec } from '../../src/spec/server';
import { setUpTestPackages, tearDownTestPackages, testPackageStates, UL_HOLD } from '../helpers/dpkg-lab';
import { rejectionOf } from '../helpers/failures';
import { onHost, snapshot } from '../helpers/lab';

const noop = () => undefined;
type Logger = Record<'trace' | 'debug' | 'info' | 'warn' | 'error' | 'log', (message: string) => void>;
const silent: Logger = { trace: noop, debug: noop, info: noop, warn: noop, error: noop, log: noop };
const act = (logger: Logger = silent) => new MockActivityEnvironment({}, { logger });
const OPTS = { ...KVM_PACKAGE_JOBS, pollMs: 2_000, lockWaitMs: 5 * 60_000 };

/** Runs fn with a StepIo of the hypervisor step over a real SSH session (marks kept in `marks`). */
async function withIo<T>(
  spec: ServerSpec,
  fn: (io: StepIo<unknown>) => Promise<T>,
  o: { marks?: Record<string, unknown>; notes?: string[]; sleep?: (ms: number) => Promise<void> } = {},
): Promise<T> {
  const marks = o.marks ?? {};
  return (await act().run(async () => {
    const conn = await sshConnector(spec, 'hypervisor', noop);
    try {
      const io: StepIo<unknown> = {
        host: conn.host,
        spec,
        want: { withOvs: false },
        sleep: o.sleep ?? ((ms) => sleep(ms)),
        progress: (n) => o.notes?.push(n),
        marks,
        mark: (k, v) => {
          marks[k] = v;
        },
      };
      return await fn(io);
    } finally {
      conn.close();
    }
  })) as T;
}

/** Polls (bounded) until ul-slow's postinst is running: dpkg has it half-configured. */
async function untilSlowConfiguring(spec: ServerSpec): Promise<void> {
  for (let i = 0; i < 120; i++) {
    if ((await testPackageStates(spec))['ul-slow']?.startsWith('iF')) return;
    await sleep(1_000);
  }
  assert.fail(`ul-slow never got to its postinst: ${JSON.stringify(await testPackageStates(spec))}`);
}

const run = (spec: ServerSpec, cmd: string) => onHost(spec, (r) => r(cmd, 3 * 60_000));

export function describePackageFaults(specOf: () => ServerSpec): void {
  describe('package-database faults on a real Debian host (tiny packages)', { concurrency: false }, () => {
    let spec: ServerSpec;
    before(async () => {
      spec = specOf();
      await setUpTestPackages(spec);
    });
    after(async () => {
      if (spec) await tearDownTestPackages(spec);
    });

    test('an install killed on the host mid-configure is compensated: dpkg recovered, purged, the package a pre-existing one needs kept', async () => {
      const t0 = Date.now();
      const phase = (what: string) => console.log(`  [${((Date.now() - t0) / 1000).toFixed(1)} s] ${what}`);
      const pre = (await withIo(spec, (io) => hypervisorStep.observe(io as never))) as HypervisorState;
      const packagesBefore = ((await snapshot(spec)).packages as string[]).map((l) => l.trimEnd());
      await run(spec, `touch ${UL_HOLD}`);
      // The apply's install, started as underlay starts it; the worker "dies" once it runs (its wait throws).
      const marks: Record<string, unknown> = {};
      const dying = async (ms: number) => {
        if ((marks['job:install'] as JobMark | undefined)?.phase === 'started') throw new Error('worker died');
        await sleep(ms);
      };
      await assert.rejects(
        withIo(spec, (io) => installDetached(io, 'debian', ['ul-top'], OPTS), { marks, sleep: dying }),
        /worker died/,
      );
      phase('install job started; the worker stopped waiting');
      const unit = (marks['job:install'] as JobMark).unit;
      assert.equal(unit, `underlay-${spec.id}-hypervisor-install`);
      await untilSlowConfiguring(spec);
      phase('ul-slow half-configured');
      // The job dies on the host (the OOM killer, a reboot): dpkg is left half-way, with underlay's record.
      await run(spec, `systemctl kill --signal=KILL ${unit}.service; rm -f ${UL_HOLD}`);
      for (let i = 0; i < 30 && !(await run(spec, `systemctl is-failed ${unit}.service || true`)).includes('failed'); i++) await sleep(500);
      const broken = await testPackageStates(spec);
      assert.equal(broken['ul-slow'], 'iF 1.0', JSON.stringify(broken));
      assert.equal(broken['ul-base'], 'ii 2.0', 'the pre-existing package was upgraded before ul-slow was configured');
      assert.equal((await run(spec, `cat ${DPKG_JOB_RECORD}`)).trim(), unit, 'the job left its record');

      phase('job killed; compensating');
      const u = (await act({ ...silent, debug: (m: string) => phase(`    undo: ${m}`) }).run(
        undoStep,
        'hypervisor' as const,
        hypervisorStep as StepChoice,
        spec,
        pre,
        sshConnector,
      )) as UndoResult;
      phase('compensated');
      assert.match(u.note ?? '', /^kept ul-dep \(needed by ul-base\): the install upgraded packages present before/);
      const states = await testPackageStates(spec);
      assert.deepEqual(
        Object.fromEntries(Object.entries(states).filter(([, s]) => !s.startsWith('pn') && !s.startsWith('un'))),
        { 'ul-base': 'ii 2.0', 'ul-dep': 'ii 1.0' },
        JSON.stringify(states),
      );
      assert.equal((await run(spec, 'dpkg --audit; ls -A /var/lib/dpkg/updates')).trim(), '', 'dpkg --audit clean');
      assert.equal((await run(spec, `test -e ${DPKG_JOB_RECORD} && echo present || echo absent`)).trim(), 'absent');
      const after = ((await snapshot(spec)).packages as string[]).map((l) => l.trimEnd());
      assert.deepEqual(after, [...packagesBefore, 'ul-dep ii'].sort(), 'the package set of before, and ul-dep');
      assert.equal((await run(spec, `systemctl show -p LoadState --value ${unit}.service`)).trim(), 'not-found', 'the killed job released');
      // Back to ul-base 1.0 alone for the next case.
      await run(
        spec,
        'DEBIAN_FRONTEND=noninteractive apt-get -y -qq --allow-downgrades install ul-base=1.0 >/dev/null && apt-get -y -qq purge ul-dep >/dev/null',
      );
    });

    test('a dpkg someone else left half-configured is refused, naming the package; nothing is installed', async () => {
      await run(
        spec,
        `touch ${UL_HOLD}; systemd-run --quiet --collect --unit=ul-hand-install env DEBIAN_FRONTEND=noninteractive apt-get -y -q install ul-slow`,
      );
      await untilSlowConfiguring(spec);
      await run(spec, `systemctl kill --signal=KILL ul-hand-install.service; rm -f ${UL_HOLD}`);
      await sleep(1_000);
      const err = await rejectionOf(withIo(spec, (io) => installDetached(io, 'debian', ['ul-leaf'], OPTS)));
      assert.ok(err instanceof PackageDatabaseError, String(err));
      assert.match(err.message, /dpkg on this host was left unclean, and not by an underlay job; not repairing/);
      assert.match(err.message, /observed ".*ul-slow \(half-configured\)/);
      assert.equal((await testPackageStates(spec))['ul-leaf'], undefined, 'nothing installed');
      await run(
        spec,
        'systemctl reset-failed ul-hand-install.service 2>/dev/null; dpkg --configure -a >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get -y -qq purge ul-slow ul-dep >/dev/null; apt-get -y -qq --allow-downgrades install ul-base=1.0 >/dev/null',
      );
    });

    test('a package lock held by another apt run is waited for, with the holder named in the progress notes', async () => {
      await run(
        spec,
        `touch ${UL_HOLD}; systemd-run --quiet --collect --unit=ul-fake-unattended-upgrades env DEBIAN_FRONTEND=noninteractive apt-get -y -q install ul-slow`,
      );
      await untilSlowConfiguring(spec);
      const notes: string[] = [];
      const t0 = Date.now();
      // Settled into a value at once: a rejection must reach the assertion, not the runner as unhandled.
      const install = withIo(spec, (io) => installDetached(io, 'debian', ['ul-leaf'], OPTS), { notes }).then(
        (r) => ({ r }),
        (e: unknown) => ({ e }),
      );
      for (let i = 0; i < 60 && !notes.some((n) => n.startsWith('waiting for the dpkg lock')); i++) await sleep(500);
      await sleep(6_000);
      await run(spec, `rm -f ${UL_HOLD}`);
      const outcome = await install;
      assert.ok('r' in outcome, String('e' in outcome && outcome.e));
      assert.equal(outcome.r?.reattached, false);
      const waits = notes.filter((n) => n.startsWith('waiting for the dpkg lock'));
      assert.ok(waits.length >= 2, notes.join('\n'));
      assert.match(waits[0]!, /^waiting for the dpkg lock \(lock(-frontend)?\) held by apt-get \(pid \d+, ul-fake-unattended-upgrades\.service\)/);
      assert.ok(
        notes.some((n) => /^the dpkg lock is free after \d+ s$/.test(n)),
        notes.join('\n'),
      );
      assert.equal((await testPackageStates(spec))['ul-leaf'], 'ii 1.0');
      console.log(`lock wait: ${waits.length} notes, install done ${((Date.now() - t0) / 1000).toFixed(1)} s after it was asked for`);
    });
  });
}
