/** `ip -j addr show` → global addresses per interface, as `address/prefix`. */
import { z } from 'zod';
import type { ErrorContext } from '../../../common/errors';
import { parseJsonOutput } from './json';

const AddrJson = z.array(
  z.looseObject({
    ifname: z.string(),
    addr_info: z
      .array(z.looseObject({ family: z.string().optional(), local: z.string().optional(), prefixlen: z.number().optional(), scope: z.string().optional() }))
      .default([]),
  }),
);

/** Map of interface → addresses (scope global only; link-local v6 addresses come and go by themselves). */
export function parseIpAddr(text: string, ctx: ErrorContext = {}): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const l of parseJsonOutput(AddrJson, text, 'ip -j addr show', ctx)) {
    const addrs = l.addr_info.filter((a) => a.local && a.prefixlen !== undefined && (a.scope ?? 'global') === 'global').map((a) => `${a.local}/${a.prefixlen}`);
    out.set(l.ifname, addrs);
  }
  return out;
}
