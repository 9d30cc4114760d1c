/**
 * What an ESXi install needs on the worker, made for tests: a vendor-layout installer ISO (built here with xorriso,
 * laid out as VMware's: ISOLINUX.BIN + ISOLINUX.CFG + BOOT.CFG at the root, EFI/BOOT/BOOT.CFG and BOOTX64.EFI, an
 * EFI boot image EFIBOOT.IMG, El Torito records for BIOS and UEFI exactly as VMware's mkisofs line makes them),
 * the host's certificate and key, a root password file, and the worker's ISO environment (UNDERLAY_ISO_*).
 *
 * Reading an ISO back (`isoFile`, `isoReport`) uses xorriso directly, not the code under test.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { credentialsSubdir } from './credentials';
import { makeCertificate } from './sushy';

const run = promisify(execFile);

/** The product vcsim's ESX mode reports (about.version / about.build): what test specs expect. */
export const VCSIM_ESX = { version: '6.5.0', build: '5969303' };

export interface VendorIso {
  path: string;
  sha256: string;
  bootCfg: string;
  efiBootCfg: string;
}

/** A BOOT.CFG as VMware's ESXi installer ISOs have it (ESXi 7/8 layout). */
export function vendorBootCfg(version: string, build: string, prefix = ''): string {
  return [
    'bootstate=0',
    'title=Loading ESXi installer',
    'timeout=5',
    `prefix=${prefix}`,
    'kernel=/b.b00',
    'kernelopt=runweasel cdromBoot',
    'modules=/jumpstrt.gz --- /useropts.gz --- /features.gz --- /k.b00 --- /uc_intel.b00 --- /imgdb.tgz --- /imgpayld.tgz',
    `build=${version}-0.0.${build}`,
    'updated=0',
    '',
  ].join('\n');
}

/** Builds a VMware-layout installer ISO in `dir` (≈ 450 KiB, ~0.1 s). */
export async function makeVendorIso(dir: string, o: { version?: string; build?: string; name?: string; withoutBootCfg?: boolean } = {}): Promise<VendorIso> {
  const version = o.version ?? VCSIM_ESX.version;
  const build = o.build ?? VCSIM_ESX.build;
  const tree = await mkdtemp(join(dir, 'tree-'));
  await mkdir(join(tree, 'EFI/BOOT'), { recursive: true });
  const bootCfg = vendorBootCfg(version, build);
  const efiBootCfg = vendorBootCfg(version, build, '/');
  const files: Record<string, string | Buffer> = {
    'ISOLINUX.BIN': Buffer.alloc(2048, 0x90),
    'ISOLINUX.CFG': 'DEFAULT menu.c32\nMENU TITLE ESXi Boot Menu\nLABEL install\n  KERNEL mboot.c32\n  APPEND -c boot.cfg\n',
    'MBOOT.C32': Buffer.alloc(1024, 0x11),
    'B.B00': Buffer.alloc(4096, 0x22),
    'EFIBOOT.IMG': Buffer.alloc(64 * 1024, 0),
    'EFI/BOOT/BOOTX64.EFI': Buffer.alloc(4096, 0x4d),
    'EFI/BOOT/BOOT.CFG': efiBootCfg,
  };
  if (!o.withoutBootCfg) files['BOOT.CFG'] = bootCfg;
  for (const [name, body] of Object.entries(files)) await writeFile(join(tree, name), body);
  const path = join(dir, o.name ?? `VMware-VMvisor-Installer-${version}-${build}.x86_64.iso`);
  // VMware's own documented recipe for a custom installer ISO, with xorriso's mkisofs emulation.
  await run('xorriso', [
    '-as',
    'mkisofs',
    '-relaxed-filenames',
    '-J',
    '-R',
    '-V',
    `ESXI-${version}-${build}`,
    '-o',
    path,
    '-b',
    'ISOLINUX.BIN',
    '-c',
    'BOOT.CAT',
    '-no-emul-boot',
    '-boot-load-size',
    '4',
    '-boot-info-table',
    '-eltorito-alt-boot',
    '-e',
    'EFIBOOT.IMG',
    '-no-emul-boot',
    tree,
  ]);
  await rm(tree, { recursive: true, force: true });
  const sha256 = createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
  return { path, sha256, bootCfg, efiBootCfg };
}

/** One file of an ISO, read with xorriso (-osirrox extract). */
export async function isoFile(iso: string, path: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'underlay-isoread-'));
  try {
    await run('xorriso', ['-osirrox', 'on', '-indev', iso, '-extract', path, join(dir, 'f')]);
    return await readFile(join(dir, 'f'), 'utf8');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** `xorriso -report_el_torito plain` of an ISO: the El Torito lines. */
export async function isoReport(iso: string): Promise<string[]> {
  const { stdout, stderr } = await run('xorriso', ['-indev', iso, '-report_el_torito', 'plain']);
  return `${stdout}\n${stderr}`.split('\n').filter((l) => l.startsWith('El Torito'));
}

/** Every file path of an ISO (xorriso -find). */
export async function isoPaths(iso: string): Promise<string[]> {
  const { stdout } = await run('xorriso', ['-osirrox', 'on', '-indev', iso, '-find', '/', '-type', 'f']);
  return stdout
    .split('\n')
    .filter((l) => l.startsWith("'/"))
    .map((l) => l.slice(1, -1))
    .sort();
}

export interface EsxiWorkerFixture {
  dir: string;
  iso: VendorIso;
  /** The host's certificate (SAN IP:127.0.0.1) and key, and the fingerprint a spec pins. */
  cert: { certFile: string; keyFile: string; fingerprint: string };
  rootPasswordFile: string;
  rootPassword: string;
  isoWorkDir: string;
  /** The ISO server's own certificate (what the BMC is told to trust). */
  isoServerCert: { certFile: string; keyFile: string };
  /** The spec's `hypervisor` fields for this fixture (installer, rootPassword, hostCertificate). */
  hypervisor(): Record<string, unknown>;
  cleanup(): Promise<void>;
}

/**
 * A temp folder with a vendor ISO under an ISO directory, the host certificate, a root password file, and the
 * worker's UNDERLAY_ISO_* environment pointing at it (listening on 127.0.0.1, any free port). `cleanup` restores the
 * environment and removes the folder.
 */
export async function esxiWorkerFixture(): Promise<EsxiWorkerFixture> {
  // In the worker's credentials directory: the host key, the root password and the certificates are read through its secret scope.
  const dir = await credentialsSubdir('esxi-');
  const isoDir = join(dir, 'isos');
  const isoWorkDir = join(dir, 'iso-work');
  await mkdir(isoDir);
  const iso = await makeVendorIso(isoDir);
  const cert = await makeCertificate(dir, 'esxi-host');
  const isoServerCert = await makeCertificate(dir, 'iso-server');
  const rootPassword = `Esx!${createHash('sha256').update(dir).digest('base64url').slice(0, 12)}`;
  const rootPasswordFile = join(dir, 'root-password');
  await writeFile(rootPasswordFile, rootPassword + '\n', { mode: 0o600 });
  const saved: Record<string, string | undefined> = {};
  const env: Record<string, string> = {
    UNDERLAY_ISO_DIR: isoDir,
    UNDERLAY_ISO_WORK_DIR: isoWorkDir,
    UNDERLAY_ISO_LISTEN: '127.0.0.1:0',
    UNDERLAY_ISO_CERT: isoServerCert.certFile,
    UNDERLAY_ISO_KEY: isoServerCert.keyFile,
  };
  for (const [k, v] of Object.entries(env)) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
  return {
    dir,
    iso,
    cert,
    rootPasswordFile,
    rootPassword,
    isoWorkDir,
    isoServerCert,
    hypervisor: () => ({
      installer: { iso: iso.path, sha256: iso.sha256, version: VCSIM_ESX.version, build: VCSIM_ESX.build },
      kickstart: { network: { device: 'vmnic0', address: '198.18.7.21/24', gateway: '198.18.7.1', nameservers: ['198.18.0.53'] } },
      rootPassword: { file: rootPasswordFile },
      hostCertificate: { certFile: cert.certFile, keyFile: cert.keyFile, fingerprint: cert.fingerprint },
    }),
    cleanup: async () => {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
