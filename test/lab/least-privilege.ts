/**
 * Least privilege on a real Debian lab host (issue 11 item 5): the network steps — cable, bond, VLAN, SR-IOV,
 * each persisted through the host's ifupdown — applied, verified and then compensated by the real workflow over
 * a NON-root login whose sudo is restricted to the shipped fragment (deploy/sudoers/underlay, for that login).
 * The login is made over the root login at the start (useradd, the lab key, the fragment in /etc/sudoers.d plus
 * a sudo log file as evidence) and removed at the end: seconds. The hypervisor step is replaced by one that
 * records the host's state and fails on cue, so the run stops after the network steps (a KVM install costs ≈ 6
 * min under TCG) and the saga undoes them as the same restricted login.
 * Registered by the main lab file on server1 before its other scenarios (no extra lab boot); it leaves the host as it
 * found it. Opt-in, below.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { WorkflowHandle } from '@temporalio/client';
import { WorkflowFailedError } from '@temporalio/client';
import { stepSetOf, type StepSet } from '../../src/activities';
import type { Step } from '../../src/activities/step';
import { VerificationError } from '../../src/common/errors';
import { ELEVATED_COMMANDS, sudoersFragment } from '../../src/drivers/elevate';
import type { ServerSpec } from '../../src/spec/server';
import { parseServerSpec } from '../../src/spec/validate';
import type { OnboardingFailureReport } from '../../src/workflows/messages';
import { labDir, labSpecInput } from '../../lab/spec';
import { onHost, snapshot } from '../helpers/lab';

const USER = 'underlay';
const SUDO_LOG = '/var/log/underlay-sudo.log';

export type LabOnboard = (
  spec: ServerSpec,
  steps: StepSet,
) => Promise<{ handle: WorkflowHandle; outcome: { ok: true; result: unknown } | { ok: false; error: unknown } }>;

/** What the host looks like once the network steps are done, read over the root login (not by step code). */
interface NetworkFacts {
  bondPorts: number;
  partnerMac: string;
  gateways: string;
  numVfs: string;
  persisted: string[];
}

async function networkFacts(rootSpec: ServerSpec): Promise<NetworkFacts> {
  return onHost(rootSpec, async (run) => {
    const bond = (JSON.parse(await run('ip -j -d link show bond0')) as Array<Record<string, any>>)[0]!; // eslint-disable-line @typescript-eslint/no-explicit-any
    return {
      bondPorts: bond.linkinfo.info_data.ad_info.num_ports,
      partnerMac: bond.linkinfo.info_data.ad_info.partner_mac,
      gateways: (await run('ping -c 1 -W 2 -I bond0.100 192.0.2.1 >/dev/null && ping -c 1 -W 2 -I bond0.200 198.18.1.1 >/dev/null && echo both')).trim(),
      numVfs: (await run('cat /sys/class/net/eth3/device/sriov_numvfs')).trim(),
      persisted: (await run('stat -c "%U %n" /etc/network/interfaces.d/underlay-* /etc/udev/rules.d/70-underlay-* 2>/dev/null || true'))
        .trim()
        .split('\n')
        .filter(Boolean),
    };
  });
}

/** The commands sudo ran for the login (its log file), and those it refused. */
async function sudoLog(rootSpec: ServerSpec): Promise<{ ran: string[]; refused: string[] }> {
  const text = await onHost(rootSpec, (run) => run(`cat ${SUDO_LOG}`));
  const out = { ran: [] as string[], refused: [] as string[] };
  for (const line of text.replace(/\n\s+/g, ' ').split('\n')) {
    const cmd = /COMMAND=(.*)$/.exec(line)?.[1]?.trim();
    if (cmd) (/command not allowed|password is required/.test(line) ? out.refused : out.ran).push(cmd);
  }
  return out;
}

/**
 * In the default run (UNDERLAY_LAB_LEAST_PRIVILEGE=0 skips it, counted as skipped): every elevated command is its
 * own sudo call, ≈ 2–3 s each on the emulated guest under load, 73–90 of them: 3.2 min in one run, 8.3 min at load
 * average 12 (8.4 and 15 min in two runs on server1 under heavier load). It fits the CI budget since the labs start
 * from a saved boot and server1's chain runs next to server2's KVM install.
 */
export const LEAST_PRIVILEGE_LAB = process.env.UNDERLAY_LAB_LEAST_PRIVILEGE !== '0';

export function describeLeastPrivilege(server: string, onboard: LabOnboard): void {
  describe(`least privilege on ${server}: a non-root login restricted to deploy/sudoers/underlay`, () => {
    test(
      'the network steps applied, verified and compensated as a login whose sudo is the fragment; only listed commands ran as root, reads did not',
      { skip: !LEAST_PRIVILEGE_LAB && 'UNDERLAY_LAB_LEAST_PRIVILEGE=0' },
      async () => {
        const input = labSpecInput(server);
        const rootSpec = parseServerSpec(input, `lab spec of ${server}`);
        const spec = parseServerSpec({ ...input, management: { ...input.management, user: USER } }, `lab spec of ${server} as ${USER}`);
        const before = await snapshot(rootSpec);
        const pub = readFileSync(join(labDir(), 'id_ed25519.pub'), 'utf8').trim();
        const fragment = `${sudoersFragment(USER)}Defaults:${USER} logfile=${SUDO_LOG}\n`;
        const b64 = (s: string) => Buffer.from(s).toString('base64');
        await onHost(rootSpec, (run) =>
          run(
            [
              `id -u ${USER} >/dev/null 2>&1 || useradd -m -s /bin/sh ${USER}`,
              `usermod -p '*' ${USER}`,
              `install -d -o ${USER} -g ${USER} -m 0700 /home/${USER}/.ssh`,
              `printf %s ${b64(pub + '\n')} | base64 -d > /home/${USER}/.ssh/authorized_keys`,
              `chown ${USER}:${USER} /home/${USER}/.ssh/authorized_keys && chmod 0600 /home/${USER}/.ssh/authorized_keys`,
              `printf %s ${b64(fragment)} | base64 -d > /etc/sudoers.d/.underlay.tmp`,
              'visudo -cf /etc/sudoers.d/.underlay.tmp && chmod 0440 /etc/sudoers.d/.underlay.tmp && mv /etc/sudoers.d/.underlay.tmp /etc/sudoers.d/underlay',
              `: > ${SUDO_LOG}`,
            ].join(' && '),
          ),
        );
        try {
          const started = Date.now();
          let facts: NetworkFacts | undefined;
          const linux = stepSetOf('kvm');
          const hv = linux.hypervisor as Step<unknown, unknown>;
          const steps: StepSet = {
            ...linux,
            hypervisor: {
              ...hv,
              observe: async (io) => {
                facts = await networkFacts(rootSpec);
                throw new VerificationError('injected: stop after the network steps', { host: io.host.label, step: 'hypervisor' });
              },
            },
          };
          const { outcome } = await onboard(spec, steps);
          assert.ok(!outcome.ok, 'stopped on cue');
          assert.ok(outcome.error instanceof WorkflowFailedError, String(outcome.error));
          const r = (outcome.error.cause as { details?: unknown[] }).details?.[0] as OnboardingFailureReport;
          assert.equal(r.failedStep, 'hypervisor', r.error);
          assert.match(r.error, /injected: stop after the network steps/);

          // Applied as the restricted login: LACP with the switch, both gateways, 4 VFs, persisted as root's files.
          assert.ok(facts, 'the network steps completed before the injected stop');
          assert.equal(facts.bondPorts, 2);
          assert.match(facts.partnerMac, /^[0-9a-f:]{17}$/);
          assert.notEqual(facts.partnerMac, '00:00:00:00:00:00', 'an LACP partner');
          assert.equal(facts.gateways, 'both');
          assert.equal(facts.numVfs, '4');
          assert.ok(
            facts.persisted.some((l) => l === 'root /etc/network/interfaces.d/underlay-bond0'),
            facts.persisted.join('; '),
          );
          assert.ok(
            facts.persisted.every((l) => l.startsWith('root ')),
            facts.persisted.join('; '),
          );

          // Compensated as the restricted login, back to the host of before.
          assert.deepEqual(
            r.compensations.map((c) => [c.step, c.outcome]),
            [
              ['sriov', 'restored'],
              ['vlan', 'restored'],
              ['bond', 'restored'],
            ],
            JSON.stringify(r.compensations),
          );
          assert.deepEqual(await snapshot(rootSpec), before, 'the host of before');

          // What ran as root: only listed commands, by their absolute paths; no shell; the reads not at all.
          const log = await sudoLog(rootSpec);
          assert.deepEqual(log.refused, [], 'sudo refused nothing the steps asked for');
          const listed = new Set(ELEVATED_COMMANDS.map((c) => c.path));
          const used = new Set(log.ran.map((c) => c.split(' ')[0]!));
          for (const p of used) assert.ok(listed.has(p), `${p} ran as root but is not in ELEVATED_COMMANDS`);
          // On ifupdown the bond and VLANs come and go with ifup/ifdown (persisted stanzas), not with ip.
          for (const p of ['/usr/sbin/lldpctl', '/usr/bin/tee', '/usr/sbin/ifup', '/usr/sbin/ifdown', '/usr/bin/udevadm']) assert.ok(used.has(p), `${p} used`);
          assert.ok(!log.ran.some((c) => /^\/usr\/sbin\/ip (-j|-d|-br)/.test(c)), 'ip reads ran unprivileged');
          console.log(
            `least privilege: network steps applied + compensated as ${USER} in ${Math.round((Date.now() - started) / 1000)} s; ` +
              `${log.ran.length} commands ran as root through sudo: ${[...used].sort().join(' ')}`,
          );
        } finally {
          await onHost(rootSpec, (run) => run(`rm -f /etc/sudoers.d/underlay ${SUDO_LOG}; pkill -u ${USER} || true; userdel -r ${USER} 2>/dev/null || true`));
        }
      },
    );
  });
}
