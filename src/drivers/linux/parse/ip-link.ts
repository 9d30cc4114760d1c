/**
 * `ip -j -d link show` → normalised link records (bond, bond member, VLAN and SR-IOV details).
 * Field names follow iproute2's JSON (ip/iplink_bond.c, iplink_bond_slave.c, iplink_vlan.c, ipaddress.c).
 */
import { z } from 'zod';
import type { ErrorContext } from '../../../common/errors';
import { parseJsonOutput } from './json';

const num = z.number();
const BondInfo = z.looseObject({
  mode: z.string(),
  miimon: num.optional(),
  xmit_hash_policy: z.string().optional(),
  ad_lacp_rate: z.string().optional(),
  ad_info: z.looseObject({ aggregator: num, num_ports: num, actor_key: num.optional(), partner_key: num.optional(), partner_mac: z.string() }).optional(),
});
const BondSlaveInfo = z.looseObject({
  state: z.string(),
  mii_status: z.string(),
  link_failure_count: num.optional(),
  perm_hwaddr: z.string().optional(),
  ad_aggregator_id: num.optional(),
  ad_actor_oper_port_state: num.optional(),
  ad_partner_oper_port_state: num.optional(),
});
const VlanInfo = z.looseObject({ protocol: z.string().optional(), id: num });

const LinkJson = z.looseObject({
  ifindex: num,
  ifname: z.string(),
  flags: z.array(z.string()),
  mtu: num.optional(),
  operstate: z.string().optional(),
  address: z.string().optional(),
  permaddr: z.string().optional(),
  master: z.string().optional(),
  link: z.string().nullable().optional(),
  linkinfo: z
    .looseObject({
      info_kind: z.string().optional(),
      info_data: z.unknown().optional(),
      info_slave_kind: z.string().optional(),
      info_slave_data: z.unknown().optional(),
    })
    .optional(),
  vfinfo_list: z.array(z.unknown()).optional(),
});

export interface BondDetails {
  mode: string;
  miimon?: number;
  xmitHashPolicy?: string;
  lacpRate?: string;
  adInfo?: { aggregator: number; numPorts: number; partnerMac: string };
}

export interface BondMemberDetails {
  state: string;
  miiStatus: string;
  linkFailures?: number;
  permMac?: string;
  aggregatorId?: number;
  actorPortState?: number;
  partnerPortState?: number;
}

export interface Link {
  name: string;
  index: number;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** Carrier present (IFF_LOWER_UP). */
  lowerUp: boolean;
  operstate: string;
  mtu?: number;
  mac?: string;
  /** Permanent MAC when the kernel reports one differing from `mac` (bond members, some drivers). */
  permMac?: string;
  master?: string;
  /** Lower device of a VLAN / macvlan. */
  parent?: string;
  kind?: string;
  bond?: BondDetails;
  bondMember?: BondMemberDetails;
  vlan?: { id: number; protocol?: string };
  vfCount?: number;
}

export function parseIpLink(text: string, ctx: ErrorContext = {}): Link[] {
  const links = parseJsonOutput(z.array(LinkJson), text, 'ip -j -d link show', ctx);
  return links.map((l) => {
    const kind = l.linkinfo?.info_kind;
    const out: Link = {
      name: l.ifname,
      index: l.ifindex,
      up: l.flags.includes('UP'),
      lowerUp: l.flags.includes('LOWER_UP'),
      operstate: l.operstate ?? 'UNKNOWN',
      mtu: l.mtu,
      mac: l.address?.toLowerCase(),
      permMac: l.permaddr?.toLowerCase(),
      master: l.master,
      parent: l.link ?? undefined,
      kind,
    };
    if (kind === 'bond') {
      const b = parseJsonOutput(BondInfo, JSON.stringify(l.linkinfo?.info_data ?? {}), `bond info of ${l.ifname}`, ctx);
      out.bond = {
        mode: b.mode,
        miimon: b.miimon,
        xmitHashPolicy: b.xmit_hash_policy,
        lacpRate: b.ad_lacp_rate,
        adInfo: b.ad_info && { aggregator: b.ad_info.aggregator, numPorts: b.ad_info.num_ports, partnerMac: b.ad_info.partner_mac.toLowerCase() },
      };
    }
    if (kind === 'vlan') {
      const v = parseJsonOutput(VlanInfo, JSON.stringify(l.linkinfo?.info_data ?? {}), `vlan info of ${l.ifname}`, ctx);
      out.vlan = { id: v.id, protocol: v.protocol };
    }
    if (l.linkinfo?.info_slave_kind === 'bond') {
      const s = parseJsonOutput(BondSlaveInfo, JSON.stringify(l.linkinfo.info_slave_data ?? {}), `bond member info of ${l.ifname}`, ctx);
      out.bondMember = {
        state: s.state,
        miiStatus: s.mii_status,
        linkFailures: s.link_failure_count,
        permMac: s.perm_hwaddr?.toLowerCase(),
        aggregatorId: s.ad_aggregator_id,
        actorPortState: s.ad_actor_oper_port_state,
        partnerPortState: s.ad_partner_oper_port_state,
      };
      out.permMac ??= out.bondMember.permMac;
    }
    if (l.vfinfo_list) out.vfCount = l.vfinfo_list.length;
    return out;
  });
}

/** LACP port state bits (IEEE 802.1AX): synchronization, collecting, distributing must all be set. */
export const LACP_SYNC = 0x08;
export const LACP_COLLECTING = 0x10;
export const LACP_DISTRIBUTING = 0x20;
export const LACP_DEFAULTED = 0x40;
export const LACP_IN_SERVICE = LACP_SYNC | LACP_COLLECTING | LACP_DISTRIBUTING;

export const NO_PARTNER_MAC = '00:00:00:00:00:00';
