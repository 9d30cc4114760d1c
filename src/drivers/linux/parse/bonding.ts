/**
 * `/proc/net/bonding/<bond>` → the bond's mode, its active aggregator and LACP partner, and per member the MII
 * status, aggregator id, actor and partner port state and churn state (drivers/net/bonding/bond_procfs.c). The
 * one place that file is read as a whole (the bond step reads churn from it with parseChurnedMembers).
 */
import { UnexpectedOutputError, type ErrorContext } from '../../../common/errors';
import { LACP_IN_SERVICE, NO_PARTNER_MAC } from './ip-link';
import { lines } from './text';

export interface BondingMember {
  name: string;
  miiUp: boolean;
  linkFailures: number | null;
  aggregatorId: number | null;
  actorChurned: boolean;
  partnerChurned: boolean;
  /** LACP port state bits (802.1AX), null when the file has no LACP details (not 802.3ad). */
  actorPortState: number | null;
  partnerPortState: number | null;
}

export interface Bonding {
  mode: string;
  lacp: boolean;
  activeAggregator: number | null;
  /** The active aggregator's partner system MAC, lower case; null when none is reported. */
  partnerMac: string | null;
  members: BondingMember[];
}

const int = (s: string | undefined): number | null => (s !== undefined && /^\d+$/.test(s.trim()) ? Number(s.trim()) : null);

export function parseProcNetBonding(text: string, ctx: ErrorContext = {}): Bonding {
  const out: Bonding = { mode: '', lacp: false, activeAggregator: null, partnerMac: null, members: [] };
  let member: BondingMember | undefined;
  // Where "port state:" belongs: the actor's or the partner's LACP PDU details of the current member.
  let pdu: 'actor' | 'partner' | undefined;
  let inActiveAggregator = false;
  for (const raw of lines(text)) {
    const line = raw.trim();
    const kv = /^([^:]+):\s*(.*)$/.exec(line);
    const key = kv?.[1]?.trim().toLowerCase() ?? line.toLowerCase();
    const value = kv?.[2]?.trim() ?? '';
    if (key === 'bonding mode') {
      out.mode = value;
      out.lacp = /802\.3ad/.test(value);
    } else if (key === 'active aggregator info') {
      inActiveAggregator = true;
    } else if (key === 'slave interface') {
      inActiveAggregator = false;
      pdu = undefined;
      member = {
        name: value,
        miiUp: false,
        linkFailures: null,
        aggregatorId: null,
        actorChurned: false,
        partnerChurned: false,
        actorPortState: null,
        partnerPortState: null,
      };
      out.members.push(member);
    } else if (!member && inActiveAggregator && key === 'aggregator id') {
      out.activeAggregator = int(value);
    } else if (!member && inActiveAggregator && key === 'partner mac address') {
      out.partnerMac = value.toLowerCase();
    } else if (member) {
      if (key === 'mii status') member.miiUp = value === 'up';
      else if (key === 'link failure count') member.linkFailures = int(value);
      else if (key === 'aggregator id') member.aggregatorId = int(value);
      else if (key === 'actor churn state') member.actorChurned = value === 'churned';
      else if (key === 'partner churn state') member.partnerChurned = value === 'churned';
      else if (line === 'details actor lacp pdu:') pdu = 'actor';
      else if (line === 'details partner lacp pdu:') pdu = 'partner';
      else if (key === 'port state' && pdu === 'actor') member.actorPortState = int(value);
      else if (key === 'port state' && pdu === 'partner') member.partnerPortState = int(value);
    }
  }
  if (!out.mode) throw new UnexpectedOutputError('/proc/net/bonding: no "Bonding Mode" line', { ...ctx, observed: text.slice(0, 200) });
  return out;
}

/** A member carries traffic under LACP: in the active aggregator, actor and partner both in sync, collecting, distributing. */
export function memberInService(b: Bonding, m: BondingMember): boolean {
  if (!m.miiUp) return false;
  if (!b.lacp) return true;
  return (
    m.aggregatorId !== null &&
    m.aggregatorId === b.activeAggregator &&
    ((m.actorPortState ?? 0) & LACP_IN_SERVICE) === LACP_IN_SERVICE &&
    ((m.partnerPortState ?? 0) & LACP_IN_SERVICE) === LACP_IN_SERVICE
  );
}

/** The bond hears an LACP partner (a non-zero partner system MAC on the active aggregator). */
export function hasPartner(b: Bonding): boolean {
  return !b.lacp || (b.partnerMac !== null && b.partnerMac !== NO_PARTNER_MAC);
}
