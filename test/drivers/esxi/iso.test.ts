/**
 * The per-host installer ISO: the kickstart rendered from a spec, BOOT.CFG edited, and a vendor-layout ISO (built
 * here with xorriso the way VMware documents it) remastered — then read back with xorriso itself: the kickstart at
 * /KS.CFG, both BOOT.CFGs booting with ks=cdrom:/KS.CFG, every other file untouched, the El Torito BIOS and UEFI
 * records as the vendor's.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { CRYPT_ARGS, checkPem, networkLine, parseCryptHash, renderKickstart } from '../../../src/drivers/esxi/kickstart';
import { KS_KERNELOPT, bootCfgProduct, editBootCfg, parseElTorito, remasterInstaller } from '../../../src/drivers/esxi/iso';
import { runLocal } from '../../../src/transports/local-tool';
import { isoFile, isoPaths, isoReport, makeVendorIso, vendorBootCfg, type VendorIso } from '../../helpers/esxi';
import { makeCertificate } from '../../helpers/sushy';
import { readFile } from 'node:fs/promises';

const execFileP = promisify(execFile);

let dir: string;
let vendor: VendorIso;
let certPem: string;
let keyPem: string;
let hash: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'underlay-iso-test-'));
  vendor = await makeVendorIso(dir);
  const c = await makeCertificate(dir, 'host');
  certPem = await readFile(c.certFile, 'utf8');
  keyPem = await readFile(c.keyFile, 'utf8');
  hash = parseCryptHash(
    (await runLocal({ file: 'openssl', args: CRYPT_ARGS, input: 'VMware1!secret\n', timeoutMs: 10_000, label: 't', what: 'hash' })).stdout,
    't',
  );
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function kickstart(over: Partial<Parameters<typeof renderKickstart>[0]> = {}): string {
  return renderKickstart({
    serverId: 'esx01',
    hostname: 'esx01.lab.example',
    network: { device: 'vmnic0', address: '198.18.7.21/24', gateway: '198.18.7.1', nameservers: ['198.18.0.53', '198.18.0.54'], vlan: 20 },
    rootPasswordHash: hash,
    certificatePem: certPem,
    keyPem,
    ...over,
  });
}

describe('kickstart', () => {
  test('from the spec: EULA, first disk, crypted root password, static network, reboot, the pinned certificate in %firstboot', () => {
    const ks = kickstart();
    const lines = ks.split('\n');
    assert.equal(lines[1], 'vmaccepteula');
    assert.equal(lines[2], 'install --firstdisk --overwritevmfs');
    assert.match(lines[3]!, /^rootpw --iscrypted \$6\$[A-Za-z0-9./]+\$[A-Za-z0-9./]{86}$/);
    assert.equal(
      lines[4],
      'network --bootproto=static --device=vmnic0 --ip=198.18.7.21 --netmask=255.255.255.0 --gateway=198.18.7.1 --nameserver="198.18.0.53,198.18.0.54" --hostname=esx01.lab.example --vlanid=20',
    );
    assert.equal(lines[5], 'reboot');
    assert.ok(ks.includes('%firstboot --interpreter=busybox'));
    assert.ok(ks.includes(`cat > /etc/vmware/ssl/rui.crt <<'UNDERLAY_PEM'\n${certPem.trim()}\nUNDERLAY_PEM`));
    assert.ok(ks.includes(`cat > /etc/vmware/ssl/rui.key <<'UNDERLAY_PEM'\n${keyPem.trim()}\nUNDERLAY_PEM`));
    assert.ok(!ks.includes('VMware1!secret'), 'the password itself is never in the kickstart');
  });

  test('the crypt hash verifies the password (openssl passwd with the same salt)', async () => {
    const salt = hash.split('$')[2]!;
    const { stdout } = await execFileP('openssl', ['passwd', '-6', '-salt', salt, 'VMware1!secret']);
    assert.equal(stdout.trim(), hash);
  });

  test('DHCP, a named disk, no host name', () => {
    assert.equal(networkLine({ device: 'vmnic1', nameservers: [] }, undefined, 'x'), 'network --bootproto=dhcp --device=vmnic1');
    assert.match(kickstart({ disk: 'mpx.vmhba0:C0:T0:L0', hostname: undefined }), /^install --disk=mpx\.vmhba0:C0:T0:L0 --overwritevmfs$/m);
  });

  test('refuses what could break out of the file: a PEM with a stray line, a key that is encrypted, a hash of another shape', () => {
    assert.throws(() => kickstart({ certificatePem: certPem.replace('-----END', 'rm -rf /\n-----END') }), /not a single PEM block/);
    assert.throws(() => kickstart({ keyPem: '-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n' }), /not a single PEM block/);
    assert.throws(() => kickstart({ rootPasswordHash: 'secret' }), /not a SHA-512 crypt hash/);
    assert.throws(() => kickstart({ hostname: 'a b' }), /cannot go into a kickstart/);
    assert.throws(() => checkPem(certPem + certPem, ['CERTIFICATE'], 'c', 'x', 'f'), /not a single PEM block/);
  });
});

describe('BOOT.CFG and the El Torito report', () => {
  test('kernelopt gets ks=cdrom:/KS.CFG (an older ks= dropped), every other line stays', () => {
    const cfg = vendorBootCfg('8.0.3', '24022510');
    const edited = editBootCfg(cfg, '/BOOT.CFG', 't');
    assert.deepEqual(
      edited.split('\n').filter((l, i) => l !== cfg.split('\n')[i]),
      [`kernelopt=runweasel cdromBoot ${KS_KERNELOPT}`],
    );
    assert.match(
      editBootCfg(cfg.replace('cdromBoot', 'cdromBoot ks=http://old/ks.cfg'), '/BOOT.CFG', 't'),
      /^kernelopt=runweasel cdromBoot ks=cdrom:\/KS\.CFG$/m,
    );
    assert.match(editBootCfg(cfg.replace(/\n/g, '\r\n'), '/BOOT.CFG', 't'), /kernelopt=runweasel cdromBoot ks=cdrom:\/KS\.CFG\r\n/);
    assert.throws(() => editBootCfg('title=x\n', '/BOOT.CFG', 't'), /0 kernelopt= lines/);
  });

  test('the build= line names version and build', () => {
    assert.deepEqual(bootCfgProduct(vendorBootCfg('8.0.3', '24022510')), { version: '8.0.3', build: '24022510' });
    assert.deepEqual(bootCfgProduct('build=7.0.3-0.50.20036589\n'), { version: '7.0.3', build: '20036589' });
    assert.equal(bootCfgProduct('title=x\n'), undefined);
  });

  test('the vendor ISO built here has VMware’s boot records (BIOS ISOLINUX.BIN with boot-info-table, UEFI EFIBOOT.IMG)', async () => {
    const report = await isoReport(vendor.path);
    assert.deepEqual(
      parseElTorito(report.join('\n')).map((e) => [e.platform, e.path]),
      [
        ['BIOS', '/ISOLINUX.BIN'],
        ['UEFI', '/EFIBOOT.IMG'],
      ],
    );
    assert.ok(report.some((l) => /img opts\s*:\s+1\s+boot-info-table/.test(l)));
  });
});

describe('remaster with xorriso', () => {
  test('the per-host ISO carries the kickstart and both edited BOOT.CFGs; the rest and the boot records are the vendor’s', async () => {
    const out = join(dir, 'esx01.iso');
    const ks = kickstart();
    const t0 = Date.now();
    const r = await remasterInstaller({
      source: vendor.path,
      output: out,
      kickstart: ks,
      scratchParent: dir,
      expect: { version: '6.5.0', build: '5969303' },
      label: 'esx01',
    });
    const ms = Date.now() - t0;
    assert.deepEqual(r.bootCfgs.sort(), ['/BOOT.CFG', '/EFI/BOOT/BOOT.CFG']);
    assert.deepEqual(r.isoProduct, { version: '6.5.0', build: '5969303' });
    // Read back with xorriso itself.
    assert.equal(await isoFile(out, '/KS.CFG'), ks);
    assert.equal(await isoFile(out, '/BOOT.CFG'), vendor.bootCfg.replace('kernelopt=runweasel cdromBoot', `kernelopt=runweasel cdromBoot ${KS_KERNELOPT}`));
    assert.equal(
      await isoFile(out, '/EFI/BOOT/BOOT.CFG'),
      vendor.efiBootCfg.replace('kernelopt=runweasel cdromBoot', `kernelopt=runweasel cdromBoot ${KS_KERNELOPT}`),
    );
    assert.equal(await isoFile(out, '/ISOLINUX.CFG'), await isoFile(vendor.path, '/ISOLINUX.CFG'));
    assert.deepEqual(await isoPaths(out), [...(await isoPaths(vendor.path)), '/KS.CFG'].sort());
    // El Torito: the same images for the same platforms, boot-info-table kept.
    const strip = (lines: string[]) => lines.filter((l) => /boot img|img path|img opts|cat path/.test(l)).map((l) => l.replace(/\s+\d+\s*$/, ''));
    assert.deepEqual(strip(await isoReport(out)), strip(await isoReport(vendor.path)));
    // A secret at rest: only the worker's user may read it.
    assert.equal((await stat(out)).mode & 0o777, 0o600);
    console.log(`# remaster of a ${(await stat(vendor.path)).size} byte ISO: ${ms} ms`);
  });

  test('an ISO of another version than the spec expects is refused before anything is written', async () => {
    const out = join(dir, 'other.iso');
    await assert.rejects(
      remasterInstaller({ source: vendor.path, output: out, kickstart: kickstart(), scratchParent: dir, expect: { version: '8.0.3' }, label: 'esx01' }),
      (e: Error) => e.name === 'InvalidSpecError' && /expected "8\.0\.3"; observed "6\.5\.0 build 5969303/.test(e.message),
    );
    await assert.rejects(stat(out), /ENOENT/);
  });

  test('an ISO without /BOOT.CFG is not an ESXi installer: refused', async () => {
    const other = await makeVendorIso(dir, { name: 'no-bootcfg.iso', withoutBootCfg: true });
    await assert.rejects(
      remasterInstaller({
        source: other.path,
        output: join(dir, 'x.iso'),
        kickstart: kickstart(),
        scratchParent: dir,
        expect: { version: '6.5.0' },
        label: 'esx01',
      }),
      /has no \/BOOT\.CFG/,
    );
  });
});
