/**
 * `lldpctl -f json0` → the neighbour seen on each interface.
 * json0 always uses arrays (unlike `-f json`, whose shape changes with the number of neighbours), so one schema
 * fits every host: lldp[0].interface[i].{name, chassis[0].{id,name}[0].value, port[0].{id,descr}[0].value}.
 */
import { z } from 'zod';
import type { ErrorContext } from '../../../common/errors';
import { parseJsonOutput } from './json';

const Values = z.array(z.looseObject({ value: z.string().optional(), type: z.string().optional() })).optional();
const Interface = z.looseObject({
  name: z.string(),
  via: z.string().optional(),
  chassis: z.array(z.looseObject({ id: Values, name: Values, descr: Values })).optional(),
  port: z.array(z.looseObject({ id: Values, descr: Values })).optional(),
});
const Lldp = z.looseObject({
  lldp: z.union([z.array(z.looseObject({ interface: z.array(Interface).optional() })), z.looseObject({ interface: z.array(Interface).optional() })]),
});

export interface LldpNeighbour {
  /** Local interface the neighbour was heard on. */
  interface: string;
  chassisName?: string;
  chassisId?: string;
  portId?: string;
  portIdType?: string;
  portDescr?: string;
}

export function parseLldpJson0(text: string, ctx: ErrorContext = {}): LldpNeighbour[] {
  const doc = parseJsonOutput(Lldp, text, 'lldpctl -f json0', ctx);
  const sections = Array.isArray(doc.lldp) ? doc.lldp : [doc.lldp];
  const out: LldpNeighbour[] = [];
  for (const s of sections) {
    for (const i of s.interface ?? []) {
      const chassis = i.chassis?.[0];
      const port = i.port?.[0];
      out.push({
        interface: i.name,
        chassisName: chassis?.name?.[0]?.value,
        chassisId: chassis?.id?.[0]?.value,
        portId: port?.id?.[0]?.value,
        portIdType: port?.id?.[0]?.type,
        portDescr: port?.descr?.[0]?.value,
      });
    }
  }
  return out;
}

/** Does what we heard match what the spec expects? Domains are stripped ("leaf-01.dc1" is "leaf-01"). */
export function neighbourMatches(n: LldpNeighbour, expected: { switch: string; port: string }): boolean {
  const short = (s: string | undefined) => s?.split('.')[0]?.toLowerCase();
  const nameOk = short(n.chassisName) === short(expected.switch) || n.chassisId?.toLowerCase() === expected.switch.toLowerCase();
  const portOk = n.portId === expected.port || n.portDescr === expected.port;
  return nameOk && portOk;
}

export function describeNeighbour(n: LldpNeighbour | undefined): string {
  if (!n) return 'no neighbour';
  return `${n.chassisName ?? n.chassisId ?? '?'}/${n.portId ?? n.portDescr ?? '?'}`;
}
