/**
 * The ESXi scripted-install file (kickstart, `ks=cdrom:/KS.CFG`) underlay generates per host from the spec:
 *
 *   vmaccepteula
 *   install --firstdisk --overwritevmfs            (or --disk=<hypervisor.kickstart.disk>)
 *   rootpw --iscrypted $6$…                        (SHA-512 crypt of the root password file; never the password)
 *   network --bootproto=static|dhcp --device=vmnic0 [--ip --netmask --gateway --nameserver --hostname --vlanid]
 *   reboot
 *   %firstboot --interpreter=busybox               (installs the pinned host certificate and restarts hostd)
 *
 * Every value comes from the validated spec (patterns that admit no quote, space or newline), a PEM checked line by
 * line, or a crypt hash checked against its alphabet — nothing else reaches the file. The result is a secret (it
 * holds the password hash and the host's private key): callers keep it at mode 0600 and never log it.
 */
import { InvalidSpecError } from '../../common/errors';

export interface KickstartNetwork {
  device: string;
  /** `a.b.c.d/nn`; absent: DHCP. */
  address?: string;
  gateway?: string;
  nameservers: string[];
  vlan?: number;
}

export interface KickstartInput {
  /** Server id (errors and the header comment). */
  serverId: string;
  /** The host name the installed host gets (its FQDN), when management.address is a name. */
  hostname?: string;
  disk?: string;
  network: KickstartNetwork;
  /** SHA-512 crypt of the root password (`openssl passwd -6`). */
  rootPasswordHash: string;
  /** The host's certificate and key, PEM. */
  certificatePem: string;
  keyPem: string;
}

/** Largest kickstart accepted (the ISO carries it; the installer reads it whole). */
export const MAX_KICKSTART_BYTES = 64 * 1024;

const CRYPT_SHA512 = /^\$6\$(?:rounds=\d{4,9}\$)?[A-Za-z0-9./]{1,16}\$[A-Za-z0-9./]{86}$/;
const SAFE = /^[A-Za-z0-9:._/-]{1,253}$/;

/** A PEM block of the given labels, normalised to `\n` line ends: the only text that reaches the %firstboot script. */
export function checkPem(pem: string, labels: string[], what: string, serverId: string, field: string): string {
  const text = pem.replace(/\r\n/g, '\n').trim();
  const m = /^-----BEGIN ([A-Z ]{1,40})-----\n((?:[A-Za-z0-9+/=]{1,76}\n)+)-----END ([A-Z ]{1,40})-----$/.exec(text);
  if (!m || m[1] !== m[3] || !labels.includes(m[1]!)) {
    throw new InvalidSpecError(`${what} is not a single PEM block (${labels.join(' or ')})`, [], {
      host: serverId,
      field,
      expected: labels.map((l) => `-----BEGIN ${l}-----`).join(' or '),
      observed: m ? `-----BEGIN ${m[1]}-----` : 'no PEM block',
    });
  }
  return text + '\n';
}

/** `openssl passwd -6 -stdin`: the password goes in on stdin, the crypt hash comes out. */
export const CRYPT_ARGS = ['passwd', '-6', '-stdin'];

/** The crypt hash `openssl passwd -6` printed, checked. */
export function parseCryptHash(stdout: string, serverId: string): string {
  const hash = stdout.trim();
  if (!CRYPT_SHA512.test(hash)) {
    throw new InvalidSpecError('openssl did not print a SHA-512 crypt hash', [], { host: serverId, command: 'openssl passwd -6', observed: 'another shape' });
  }
  return hash;
}

function netmask(prefix: number): string {
  const bits = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return [24, 16, 8, 0].map((s) => (bits >>> s) & 0xff).join('.');
}

function safe(value: string, field: string, serverId: string): string {
  if (!SAFE.test(value)) throw new InvalidSpecError(`${field} cannot go into a kickstart`, [], { host: serverId, field });
  return value;
}

/** The `network …` line. */
export function networkLine(n: KickstartNetwork, hostname: string | undefined, serverId: string): string {
  const parts = ['network', `--device=${safe(n.device, 'hypervisor.kickstart.network.device', serverId)}`];
  if (n.address) {
    const [ip, prefixText] = n.address.split('/');
    const prefix = Number(prefixText);
    if (!ip || !Number.isInteger(prefix) || prefix < 0 || prefix > 32) {
      throw new InvalidSpecError('not an IPv4 address with prefix', [], { host: serverId, field: 'hypervisor.kickstart.network.address' });
    }
    parts.splice(1, 0, '--bootproto=static');
    parts.push(`--ip=${safe(ip, 'hypervisor.kickstart.network.address', serverId)}`, `--netmask=${netmask(prefix)}`);
    if (n.gateway) parts.push(`--gateway=${safe(n.gateway, 'hypervisor.kickstart.network.gateway', serverId)}`);
    if (n.nameservers.length) {
      parts.push(`--nameserver="${n.nameservers.map((s, i) => safe(s, `hypervisor.kickstart.network.nameservers[${i}]`, serverId)).join(',')}"`);
    }
  } else {
    parts.splice(1, 0, '--bootproto=dhcp');
  }
  if (hostname) parts.push(`--hostname=${safe(hostname, 'management.address', serverId)}`);
  if (n.vlan !== undefined) {
    if (!Number.isInteger(n.vlan) || n.vlan < 1 || n.vlan > 4094) {
      throw new InvalidSpecError('VLAN id must be 1–4094', [], { host: serverId, field: 'hypervisor.kickstart.network.vlan' });
    }
    parts.push(`--vlanid=${n.vlan}`);
  }
  return parts.join(' ');
}

/** The kickstart file. */
export function renderKickstart(k: KickstartInput): string {
  const id = k.serverId;
  if (!CRYPT_SHA512.test(k.rootPasswordHash)) {
    throw new InvalidSpecError('the root password hash is not a SHA-512 crypt hash', [], { host: id, field: 'hypervisor.rootPassword' });
  }
  const cert = checkPem(k.certificatePem, ['CERTIFICATE'], 'the host certificate', id, 'hypervisor.hostCertificate.certFile');
  const key = checkPem(k.keyPem, ['PRIVATE KEY', 'EC PRIVATE KEY', 'RSA PRIVATE KEY'], 'the host key', id, 'hypervisor.hostCertificate.keyFile');
  const install = k.disk ? `install --disk=${safe(k.disk, 'hypervisor.kickstart.disk', id)} --overwritevmfs` : 'install --firstdisk --overwritevmfs';
  const text = [
    `# underlay: ESXi kickstart for ${safe(id, 'id', id)}, generated. A secret: root password hash and TLS private key.`,
    'vmaccepteula',
    install,
    `rootpw --iscrypted ${k.rootPasswordHash}`,
    networkLine(k.network, k.hostname, id),
    'reboot',
    '',
    '%firstboot --interpreter=busybox',
    '# The certificate underlay pins for this host (hypervisor.hostCertificate) replaces the one made at install.',
    "cat > /etc/vmware/ssl/rui.crt <<'UNDERLAY_PEM'",
    cert + 'UNDERLAY_PEM',
    "cat > /etc/vmware/ssl/rui.key <<'UNDERLAY_PEM'",
    key + 'UNDERLAY_PEM',
    'chmod 0600 /etc/vmware/ssl/rui.key',
    '/sbin/auto-backup.sh',
    '/etc/init.d/hostd restart',
    '/etc/init.d/rhttpproxy restart',
    '',
  ].join('\n');
  if (Buffer.byteLength(text) > MAX_KICKSTART_BYTES) {
    throw new InvalidSpecError(`the kickstart would be larger than ${MAX_KICKSTART_BYTES} bytes`, [], { host: id, field: 'hypervisor.hostCertificate' });
  }
  return text;
}
