/**
 * Step 1, cable check: every NIC of the spec is present, has carrier at the expected speed, and hears the
 * expected switch port over LLDP. The only change it makes is bringing admin-down NICs up (lldpd and the
 * carrier reading need that); its undo takes them down again.
 */
import { UnsupportedHardwareError } from '../common/errors';
import { sh, join } from '../drivers/shell';
import { listLinks, readLldpNeighbours, readNicSysfs } from '../drivers/linux/net';
import { describeNeighbour, neighbourMatches } from '../drivers/linux/parse/lldp';
import type { NicSpec } from '../spec/server';
import { diffState } from './diff';
import { pollUntilHolds, type Problem } from './poll';
import type { Change, HealthProblem, Step, StepIo } from './step';

export interface CableState {
  /** Admin state (IFF_UP) of each spec NIC. */
  nics: Record<string, { up: boolean }>;
}

/** lldpd sends every 30 s by default; a freshly raised link may need one full interval to be heard. */
const VERIFY = { timeoutMs: 75_000, intervalMs: 3_000 };

async function observe(io: StepIo<NicSpec[]>): Promise<CableState> {
  const links = await listLinks(io.host);
  const nics: CableState['nics'] = {};
  io.want.forEach((nic, i) => {
    const link = links.get(nic.name);
    if (!link) {
      throw new UnsupportedHardwareError('NIC not found on the host', {
        host: io.host.label,
        step: 'cable',
        field: `nics[${i}].name`,
        expected: nic.name,
        observed: [...links.keys()].join(', '),
      });
    }
    const mac = link.permMac ?? link.mac;
    if (nic.mac && mac !== nic.mac) {
      const owner = [...links.values()].find((l) => (l.permMac ?? l.mac) === nic.mac);
      throw new UnsupportedHardwareError('NIC has another MAC than the spec says', {
        host: io.host.label,
        step: 'cable',
        field: `nics[${i}].mac`,
        expected: `${nic.name} with ${nic.mac}`,
        observed: `${nic.name} has ${mac}${owner ? `; ${nic.mac} is ${owner.name}` : ''}`,
      });
    }
    nics[nic.name] = { up: link.up };
  });
  return { nics };
}

function plan(nics: NicSpec[], observed: CableState): Change[] {
  return nics.filter((n) => n.cabled && !observed.nics[n.name]?.up).map((n) => ({ field: `${n.name}.up`, from: false, to: true }));
}

async function apply(io: StepIo<NicSpec[]>, _observed: CableState, changes: Change[]): Promise<void> {
  const nics = changes.map((c) => c.field.replace(/\.up$/, ''));
  await io.host.run(
    join(
      '&&',
      nics.map((n) => sh`ip link set dev ${n} up`),
    ),
    { description: `bring up ${nics.join(', ')}` },
  );
}

async function check(io: StepIo<NicSpec[]>): Promise<Problem[]> {
  const wantLldp = io.want.some((n) => n.cabled && n.lldp);
  // Link state and LLDP neighbours side by side: one round trip, not two.
  const [sysfs, neighbours] = await Promise.all([readNicSysfs(io.host), wantLldp ? readLldpNeighbours(io.host) : new Map()]);
  const problems: Problem[] = [];
  for (const nic of io.want.filter((n) => n.cabled)) {
    const s = sysfs.get(nic.name);
    if (!s?.carrier) {
      problems.push({ field: `${nic.name}.carrier`, expected: 'link up', observed: s?.carrier === false ? 'no carrier' : 'unknown' });
      continue;
    }
    if (nic.speedMbps !== undefined && s.speedMbps !== nic.speedMbps) {
      // Speed settles within a second or two of carrier; a stable wrong speed is a wrong cable/optic/port.
      problems.push({ field: `${nic.name}.speed`, expected: `${nic.speedMbps} Mb/s`, observed: s.speedMbps ? `${s.speedMbps} Mb/s` : 'unknown' });
    }
    if (nic.lldp) {
      const heard = neighbours.get(nic.name);
      const expected = `${nic.lldp.switch}/${nic.lldp.port}`;
      if (!heard) problems.push({ field: `${nic.name}.lldp`, expected, observed: 'no neighbour' });
      else if (!neighbourMatches(heard, nic.lldp)) problems.push({ field: `${nic.name}.lldp`, expected, observed: describeNeighbour(heard), final: true });
    }
  }
  return problems;
}

async function undo(io: StepIo<NicSpec[]>, pre: CableState, now: CableState): Promise<void> {
  const down = Object.keys(pre.nics).filter((n) => !pre.nics[n]?.up && now.nics[n]?.up);
  if (down.length)
    await io.host.run(
      join(
        '&&',
        down.map((n) => sh`ip link set dev ${n} down`),
      ),
      { description: `take down ${down.join(', ')}` },
    );
}

/** Cabling now, for drift: a NIC without carrier, at another speed, or facing another switch port needs a person. */
async function health(io: StepIo<NicSpec[]>): Promise<HealthProblem[]> {
  return (await check(io)).map((p) => ({
    ...p,
    hint: p.field.endsWith('.lldp')
      ? `the cable of ${p.field.split('.')[0]}: moved to another port, or the switch's LLDP is off`
      : `the link of ${p.field.split('.')[0]}: cable, optic or switch port`,
  }));
}

export const cableStep: Step<CableState, NicSpec[]> = {
  name: 'cable',
  want: (spec) => spec.nics,
  observe,
  plan,
  apply,
  verify: (io) => pollUntilHolds(io, 'cabling', () => check(io), VERIFY),
  undo,
  diff: (a, b) => diffState(a.nics, b.nics),
  health,
};
