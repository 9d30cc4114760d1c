/**
 * Strict patterns for every identifier a spec can carry.
 *
 * These are the project's first line of defence against shell injection: a value that passes one of these
 * patterns cannot hold a shell metacharacter, whitespace or a quote. Commands still quote every argument
 * (src/drivers/shell.ts); the two layers are deliberate.
 */
import { z } from 'zod';

const re = (pattern: RegExp, what: string) => z.string().regex(pattern, { message: `must be ${what}` });

/** Server id: a lowercase DNS label, so `onboard-<id>` is a clean workflow id. */
export const ServerId = re(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/, 'a lowercase DNS label (a-z, 0-9, -; ≤ 63)');

/** Site, rack, switch names and similar inventory labels. */
export const Label = re(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'letters, digits, ".", "_" or "-" (≤ 64)');

/** A network interface name as Linux allows it (IFNAMSIZ 16 incl. NUL), minus anything a shell could read. */
export const IfName = re(/^[A-Za-z][A-Za-z0-9_.-]{0,14}$/, 'an interface name: a letter, then letters, digits, "_", "." or "-" (≤ 15)');

/** An LLDP port id as switches print it: swp1, Ethernet1/1, xe-0/0/1, Gi1/0/24, a MAC. */
export const PortId = re(/^[A-Za-z0-9][A-Za-z0-9._/:-]{0,63}$/, 'a switch port id: letters, digits, ".", "_", "/", ":" or "-"');

/** A POSIX user name. */
export const UserName = re(/^[a-z_][a-z0-9_-]{0,31}$/, 'a POSIX user name');

/** OpenSSH's SHA256 fingerprint form, as printed by `ssh-keygen -lf`: `SHA256:` + 43 base64 chars. */
export const HostKeyFingerprint = re(/^SHA256:[A-Za-z0-9+/]{43}$/, 'an OpenSSH SHA256 fingerprint ("SHA256:" + 43 base64 characters)');

/** An environment variable name. */
export const EnvVarName = re(/^[A-Z_][A-Z0-9_]{0,127}$/, 'an environment variable name (A-Z, 0-9, _)');

/** A local file path: no spaces, quotes or shell metacharacters. */
export const FilePath = re(/^[A-Za-z0-9_.~/-][A-Za-z0-9_.~/@+-]{0,254}$/, 'a file path of letters, digits and _ . ~ / @ + -');

/**
 * A file on the worker holding a credential or a trust anchor: absolute, or relative to the worker's credentials
 * directory (UNDERLAY_CREDENTIALS_DIR). Refused whatever the worker's configuration: `.` / `..` segments, a
 * leading `~` (nothing expands it), and anything under /proc, /dev or /sys (never a credential; /dev/zero would
 * be read forever). The worker then requires the file to resolve inside its credentials directory
 * (src/transports/secret-scope.ts).
 */
export const CredentialPath = FilePath.refine((p) => !p.split('/').some((s) => s === '.' || s === '..'), {
  message: 'must not have "." or ".." segments: name the file inside the worker\'s credentials directory',
})
  .refine((p) => !p.startsWith('~'), { message: "must be absolute or relative to the worker's credentials directory (no ~)" })
  .refine((p) => !/^\/+(?:proc|dev|sys)(?:\/|$)/.test(p), { message: 'must not be under /proc, /dev or /sys' });

/** A Debian or RPM package name. */
export const PackageName = re(/^[a-z0-9][a-z0-9+._-]{0,99}$/, 'a package name (a-z, 0-9, + . _ -)');

/** A libvirt / OVS / vSphere / Hyper-V object name. */
export const ObjectName = re(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'a name of letters, digits, ".", "_" or "-" (≤ 64)');

/** A MAC address, normalised to lowercase colon form. */
export const MacAddress = z
  .string()
  .regex(/^[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}$/, { message: 'must be a MAC address like 52:54:00:12:34:56' })
  .transform((s) => s.toLowerCase());

export const IpAddress = z.union([z.ipv4(), z.ipv6()], { message: 'must be an IPv4 or IPv6 address' });

/** An interface address with its prefix, e.g. 192.0.2.10/24. */
export const Cidr = z.union([z.cidrv4(), z.cidrv6()], { message: 'must be an address with prefix, like 192.0.2.10/24' });

/** A management address: an IP or a DNS host name. */
export const HostAddress = z.union([z.ipv4(), z.ipv6(), z.hostname()], { message: 'must be an IP address or host name' });

/** An http(s) URL without whitespace, quotes or embedded credentials (installer ISOs, kickstarts). */
export const SafeUrl = z
  .string()
  // Deliberately narrower than RFC 3986: no `&`, `;`, `$`, `(`, quotes or spaces, so no shell could misread it.
  // This check must run BEFORE the URL check: zod's z.url() rewrites the value it checks (trims it and deletes
  // every tab, CR and LF, as the WHATWG parser does), so with the pattern second "https://h/x.iso\n" or
  // " https://h/x" passed and was silently changed instead of refused like every other identifier.
  .regex(/^[A-Za-z0-9:/?#@._~%=+,-]+$/, { message: 'must be a URL of letters, digits and : / ? # @ . _ ~ % = + , -' })
  .check(z.url({ protocol: /^https?$/, message: 'must be an http:// or https:// URL' }))
  // `@` is admitted (paths like /pkg@1.0), which also admitted `https://user:password@host/`: an inline secret
  // in a spec whose rule is that credentials travel by reference only. A user name alone is refused too, since
  // tokens are commonly passed as the user part.
  .refine((s) => !/^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*@/.test(s), {
    message: 'must not carry credentials (user:password@); serve the file without them or by a reference',
  });
