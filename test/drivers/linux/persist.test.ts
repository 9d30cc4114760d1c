/**
 * Persistence drivers without a host: the file scripts on a real /bin/sh in a temporary tree (backup, atomic write,
 * byte-for-byte restore, a missing backup refused), the ifupdown stanza takeover, the rendered files of each manager
 * (deterministic: their hashes are what plan and verify compare), and the manager choice from facts.
 * The managers themselves are proven on the lab's Debian hosts (test/lab/persistence.lab.test.ts).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { convergeFilesScript, restoreFilesScript, sha256, type DesiredFile, type FileHashes } from '../../../src/drivers/linux/files';
import { chooseManager, parseManagerFacts, type ManagerFacts } from '../../../src/drivers/linux/netmgr';
import { connectionUuid, renderBondFiles, renderVlanFiles, type BondConfig } from '../../../src/drivers/linux/persist';
import { definedInterfaces, DISABLED_MARK, disableInterfaces } from '../../../src/drivers/linux/persist/ifupdown-parse';
import { UnsupportedPlatformError } from '../../../src/common/errors';

const tmp = mkdtempSync(join(tmpdir(), 'underlay-persist-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const sh = (script: string) => execFileSync('/bin/sh', ['-c', script], { encoding: 'utf8' });

function hashesOf(paths: string[]): FileHashes {
  return Object.fromEntries(
    paths.map((p) => [
      p,
      (() => {
        try {
          return sha256(readFileSync(p, 'utf8'));
        } catch {
          return null;
        }
      })(),
    ]),
  );
}

describe('file scripts on a real /bin/sh', () => {
  test('write, back up, restore byte for byte; a file that did not exist is removed; a missing backup is refused', () => {
    const dir = join(tmp, 'etc');
    const store = join(tmp, 'store');
    mkdirSync(dir, { recursive: true });
    const old = join(dir, 'interfaces');
    const text = "auto eth1\niface eth1 inet manual\n# it's 'quoted' $(not run) `nor this`\n";
    writeFileSync(old, text);
    chmodSync(old, 0o640);
    const fresh = join(dir, 'underlay-bond0');
    const paths = [old, fresh];
    const pre = hashesOf(paths);
    const desired: DesiredFile[] = [
      { path: old, content: 'replaced\n', mode: '0644' },
      { path: fresh, content: "auto bond0\n# $HOME 'x'\n", mode: '0600' },
    ];
    sh(convergeFilesScript(desired, pre, store)!.text);
    assert.equal(readFileSync(fresh, 'utf8'), "auto bond0\n# $HOME 'x'\n");
    assert.equal(statSync(fresh).mode & 0o777, 0o600);
    assert.equal(readFileSync(old, 'utf8'), 'replaced\n');
    assert.equal(readFileSync(join(store, sha256(text)), 'utf8'), text, 'the old content is kept under its hash');
    const now = hashesOf(paths);
    assert.equal(convergeFilesScript(desired, now, store), null, 'a second apply changes nothing');

    sh(restoreFilesScript(pre, now, store)!.text);
    assert.equal(readFileSync(old, 'utf8'), text);
    assert.equal(statSync(old).mode & 0o777, 0o640, 'mode restored too');
    assert.throws(() => statSync(fresh), /ENOENT/);
    assert.deepEqual(hashesOf(paths), pre);

    // A restore whose backup is gone says so, and changes nothing it cannot restore exactly.
    writeFileSync(old, 'other\n');
    const lost = { [old]: sha256('never backed up\n') };
    assert.throws(() => sh(restoreFilesScript(lost, hashesOf([old]), store)!.text), /no backup of .*interfaces with sha256/);
    assert.equal(readFileSync(old, 'utf8'), 'other\n');
  });
});

describe('ifupdown stanza takeover', () => {
  const file = `# The loopback network interface
auto lo
iface lo inet loopback

auto eth0 eth1
iface eth0 inet static
    address 198.18.0.15/24

allow-hotplug eth2
iface eth1 inet manual
    up ip link set $IFACE up

iface eth2 inet dhcp
    # the installer's
    hostname node7

source /etc/network/interfaces.d/*
`;

  test('finds the interfaces a file defines', () => {
    assert.deepEqual(definedInterfaces(file).sort(), ['eth0', 'eth1', 'eth2', 'lo']);
  });

  test('disables exactly the members: their stanzas commented, their names out of auto lines; the rest byte for byte', () => {
    const out = disableInterfaces(file, ['eth1', 'eth2']);
    assert.deepEqual(definedInterfaces(out).sort(), ['eth0', 'lo']);
    const lines = out.split('\n');
    assert.ok(lines.includes('auto eth0'));
    assert.ok(lines.includes(`${DISABLED_MARK}auto eth1`));
    assert.ok(lines.includes(`${DISABLED_MARK}allow-hotplug eth2`));
    assert.ok(lines.includes(`${DISABLED_MARK}iface eth1 inet manual`));
    assert.ok(lines.includes(`${DISABLED_MARK}    up ip link set $IFACE up`));
    assert.ok(lines.includes(`${DISABLED_MARK}    hostname node7`));
    assert.ok(lines.includes('iface eth0 inet static') && lines.includes('    address 198.18.0.15/24'));
    assert.ok(lines.includes('source /etc/network/interfaces.d/*'), 'the source line is not part of eth2’s stanza');
    assert.equal(disableInterfaces(file, ['eth9']), file, 'nothing to disable: unchanged');
  });
});

const bond: BondConfig = { name: 'bond0', members: ['eth1', 'eth2'], mode: '802.3ad', miimon: 100, lacpRate: 'fast', xmitHashPolicy: 'layer3+4' };

describe('rendered configuration', () => {
  test('networkd: netdev with the bond parameters, the ports by name, and the VLAN drop-in next to the parent’s file', () => {
    const files = renderBondFiles('networkd', bond, 'srv-1');
    assert.deepEqual(
      files.map((f) => f.path),
      [
        '/etc/systemd/network/10-underlay-bond0.netdev',
        '/etc/systemd/network/10-underlay-bond0.network',
        '/etc/systemd/network/10-underlay-bond0-ports.network',
      ],
    );
    assert.match(
      files[0]!.content!,
      /\[NetDev\]\nName=bond0\nKind=bond\n\n\[Bond\]\nMode=802\.3ad\nLACPTransmitRate=fast\nMIIMonitorSec=100ms\nTransmitHashPolicy=layer3\+4\n$/,
    );
    assert.match(files[2]!.content!, /\[Match\]\nName=eth1 eth2\n\n\[Network\]\nBond=bond0\n$/);
    const vlans = renderVlanFiles('networkd', [{ name: 'bond0.100', parent: 'bond0', id: 100, address: '192.0.2.11/24' }], 'srv-1', {
      bond0: '/etc/systemd/network/10-underlay-bond0.network',
    });
    assert.deepEqual(
      vlans.map((f) => f.path),
      [
        '/etc/systemd/network/20-underlay-bond0.100.netdev',
        '/etc/systemd/network/20-underlay-bond0.100.network',
        '/etc/systemd/network/10-underlay-bond0.network.d/underlay-vlans.conf',
      ],
    );
    assert.match(vlans[2]!.content!, /\[Network\]\nVLAN=bond0\.100\n$/);
  });

  test('NetworkManager: keyfiles, root-only, stable UUIDs, ports above the installer’s profile', () => {
    const files = renderBondFiles('networkmanager', bond, 'srv-1');
    assert.ok(
      files.every((f) => f.mode === '0600'),
      'NetworkManager ignores keyfiles others can read',
    );
    assert.match(files[0]!.content!, /\[bond\]\nlacp_rate=fast\nmiimon=100\nmode=802\.3ad\nxmit_hash_policy=layer3\+4\n/);
    assert.match(files[1]!.content!, /interface-name=eth1\nmaster=bond0\nslave-type=bond\nautoconnect-priority=100\n/);
    assert.equal(connectionUuid('srv-1', 'underlay-bond0'), connectionUuid('srv-1', 'underlay-bond0'));
    assert.notEqual(connectionUuid('srv-1', 'underlay-bond0'), connectionUuid('srv-2', 'underlay-bond0'));
    assert.match(connectionUuid('srv-1', 'x'), /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.deepEqual(renderBondFiles('networkmanager', bond, 'srv-1'), files, 'deterministic');
  });

  test('ifupdown: one stanza file per bond and VLAN, names plain enough for source-directory', () => {
    const [f] = renderBondFiles('ifupdown', bond, 'srv-1');
    assert.equal(f!.path, '/etc/network/interfaces.d/underlay-bond0');
    assert.match(
      f!.content!,
      /auto bond0\niface bond0 inet manual\n {4}bond-slaves eth1 eth2\n {4}bond-mode 802\.3ad\n {4}bond-miimon 100\n {4}bond-lacp-rate fast\n {4}bond-xmit-hash-policy layer3\+4\n$/,
    );
    const [v] = renderVlanFiles('ifupdown', [{ name: 'bond0.200', parent: 'bond0', id: 200 }], 'srv-1', {});
    assert.equal(v!.path, '/etc/network/interfaces.d/underlay-vlan-bond0-200');
    assert.match(v!.content!, /auto bond0\.200\niface bond0\.200 inet manual\n$/);
  });
});

function facts(over: Partial<ManagerFacts>): ManagerFacts {
  return { ...parseManagerFacts(''), ...over };
}

describe('choosing the manager', () => {
  const where = { host: 'srv-1', step: 'bond' as const };

  test('parses the facts script’s sections', () => {
    const f = parseManagerFacts(
      [
        '## active systemd-networkd',
        'inactive',
        '## enabled systemd-networkd',
        'disabled',
        '## active NetworkManager',
        'active',
        '## enabled NetworkManager',
        'enabled',
        '## active networking',
        'inactive',
        '## enabled networking',
        '',
        '## ifupdown',
        '## netplan',
        '## nm',
        'eth0:connected:mgmt',
        'eth1:connected:Wired\\: eth1',
        'eth3:unmanaged:',
        '## networkd',
        '## ifupdown-up',
        '## ifupdown-defined',
      ].join('\n'),
    );
    assert.deepEqual(f.active, { networkd: false, networkmanager: true, ifupdown: false });
    assert.deepEqual(f.nm.eth1, { state: 'connected', connection: 'Wired: eth1' });
    assert.deepEqual(f.nm.eth3, { state: 'unmanaged', connection: null });
    assert.equal(chooseManager(f, 'auto', ['eth1', 'eth2'], where).manager, 'networkmanager');
  });

  test('the owner of the NICs wins; two owners, netplan, none, or a forced manager that does not run are refused', () => {
    const base = facts({
      active: { networkd: true, networkmanager: false, ifupdown: true },
      enabled: { networkd: true, networkmanager: false, ifupdown: true },
      ifupdown: { installed: true, ifenslave: true, bridgeUtils: true, sourcesInterfacesD: true },
    });
    assert.equal(chooseManager({ ...base, ifupdownDefined: ['eth1', 'eth2'] }, 'auto', ['eth1', 'eth2'], where).manager, 'ifupdown');
    const nd = { ...base, networkd: { eth1: { setup: 'configured', networkFile: '/etc/systemd/network/20-eth1.network' } } };
    assert.equal(chooseManager(nd, 'auto', ['eth1'], where).manager, 'networkd');
    assert.throws(() => chooseManager({ ...nd, ifupdownDefined: ['eth2'] }, 'auto', ['eth1', 'eth2'], where), /configured by different managers/);
    assert.throws(() => chooseManager(base, 'auto', ['eth1'], where), /several network managers run/);
    assert.throws(() => chooseManager({ ...base, netplan: ['/etc/netplan/50-cloud-init.yaml'] }, 'auto', ['eth1'], where), /netplan/);
    const none = facts({});
    const err = (() => {
      try {
        chooseManager(none, 'auto', ['eth1'], where);
      } catch (e) {
        return e;
      }
    })();
    assert.ok(err instanceof UnsupportedPlatformError && err.retryable === false);
    assert.match(err.message, /no supported network manager runs/);
    assert.equal(err.context.field, 'network.manager');
    assert.match(String(err.context.observed), /systemd-networkd inactive, NetworkManager inactive, ifupdown not installed/);
    assert.throws(() => chooseManager(base, 'networkmanager', ['eth1'], where), /asks for networkmanager, which does not run/);
    assert.equal(chooseManager(base, 'networkd', ['eth1'], where).why, 'networkd (set by the spec)');
  });
});
