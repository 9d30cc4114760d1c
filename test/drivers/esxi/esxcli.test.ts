/**
 * esxcli command builders and parsers for the standard-vSwitch alternative. No ESXi host runs here: the samples
 * in test/fixtures/esxi are written from the documented output format (SOURCES.md says exactly how).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { UnexpectedOutputError } from '../../../src/common/errors';
import { esxcli, parseEsxcliCsv, parseEsxcliXml, parsePortgroupList, parseVswitchList, standardVswitchCommands } from '../../../src/drivers/esxi/esxcli';

const fixture = (name: string) => readFileSync(join(__dirname, '../../fixtures/esxi', name), 'utf8');

describe('esxcli command builders', () => {
  test('every value is quoted; plain names stay readable', () => {
    assert.equal(esxcli.vswitchAdd('vSwitch1').text, 'esxcli network vswitch standard add --vswitch-name=vSwitch1');
    assert.equal(esxcli.vswitchAdd('vSwitch1', 256).text, 'esxcli network vswitch standard add --vswitch-name=vSwitch1 --ports=256');
    assert.equal(esxcli.vswitchRemove('vSwitch1').text, 'esxcli network vswitch standard remove --vswitch-name=vSwitch1');
    assert.equal(esxcli.uplinkAdd('vSwitch1', 'vmnic1').text, 'esxcli network vswitch standard uplink add --uplink-name=vmnic1 --vswitch-name=vSwitch1');
    assert.equal(esxcli.uplinkRemove('vSwitch1', 'vmnic1').text, 'esxcli network vswitch standard uplink remove --uplink-name=vmnic1 --vswitch-name=vSwitch1');
    assert.equal(
      esxcli.portgroupAdd('vSwitch1', 'VM Network').text,
      "esxcli network vswitch standard portgroup add --portgroup-name='VM Network' --vswitch-name=vSwitch1",
    );
    assert.equal(
      esxcli.portgroupRemove('vSwitch1', 'pg-vm-120').text,
      'esxcli network vswitch standard portgroup remove --portgroup-name=pg-vm-120 --vswitch-name=vSwitch1',
    );
    assert.equal(esxcli.portgroupSetVlan('pg-vm-120', 120).text, 'esxcli network vswitch standard portgroup set --portgroup-name=pg-vm-120 --vlan-id=120');
    assert.equal(esxcli.vswitchList().text, 'esxcli --formatter=xml network vswitch standard list');
    assert.equal(esxcli.portgroupList('csv').text, 'esxcli --formatter=csv network vswitch standard portgroup list');
  });

  test('failover policy: active (and standby) uplinks, load balancing, detection, notify, failback', () => {
    assert.equal(
      esxcli.failoverSet('vSwitch1', {
        active: ['vmnic0', 'vmnic1'],
        standby: ['vmnic2'],
        loadBalancing: 'iphash',
        failureDetection: 'link',
        notifySwitches: true,
        failback: false,
      }).text,
      'esxcli network vswitch standard policy failover set --vswitch-name=vSwitch1 --active-uplinks=vmnic0,vmnic1 --standby-uplinks=vmnic2 --load-balancing=iphash --failure-detection=link --notify-switches=true --failback=false',
    );
    assert.equal(
      esxcli.failoverSet('vSwitch1', { active: ['vmnic0'] }).text,
      'esxcli network vswitch standard policy failover set --vswitch-name=vSwitch1 --active-uplinks=vmnic0',
    );
  });

  test('a hostile value stays one quoted word; bad input is refused before any command exists', () => {
    assert.equal(
      esxcli.portgroupAdd('vSwitch1', "x'; reboot; '").text,
      "esxcli network vswitch standard portgroup add --portgroup-name='x'\\''; reboot; '\\''' --vswitch-name=vSwitch1",
    );
    assert.throws(() => esxcli.portgroupSetVlan('pg', 4096), TypeError);
    assert.throws(() => esxcli.portgroupSetVlan('pg', 1.5), TypeError);
    assert.throws(() => esxcli.vswitchAdd(''), TypeError);
    assert.throws(() => esxcli.failoverSet('vSwitch1', { active: [] }), TypeError);
  });
});

describe('esxcli output parsers', () => {
  test('vswitch standard list (XML): names, uplinks, port groups, MTU, ports', () => {
    const sw = parseVswitchList(fixture('esxcli-xml-network-vswitch-standard-list.xml'));
    assert.deepEqual(sw, [
      {
        name: 'vSwitch0',
        uplinks: ['vmnic3', 'vmnic0'],
        portgroups: ['VM Network', 'Management Network'],
        mtu: 1500,
        numPorts: 2290,
        usedPorts: 6,
        configuredPorts: 128,
        cdpStatus: 'listen',
      },
      { name: 'vSwitch1', uplinks: ['vmnic1'], portgroups: ['pg-vm-120'], mtu: 9000, numPorts: 2290, usedPorts: 4, configuredPorts: 128, cdpStatus: 'listen' },
    ]);
  });

  test('generic XML records keep types: boolean, integer, empty and one-element string lists', () => {
    const [first] = parseEsxcliXml(fixture('esxcli-xml-network-vswitch-standard-list.xml'), 'list');
    assert.equal(first!.BeaconEnabled, false);
    assert.equal(first!.BeaconInterval, 1);
    assert.deepEqual(first!.BeaconRequiredBy, []);
  });

  test('portgroup list: XML and CSV give the same port groups', () => {
    const expected = [
      { name: 'Management Network', vswitch: 'vSwitch0', vlanId: 0, activeClients: 1 },
      { name: 'VM Network', vswitch: 'vSwitch0', vlanId: 0, activeClients: 3 },
      { name: 'pg-vm-120', vswitch: 'vSwitch1', vlanId: 120, activeClients: 0 },
    ];
    assert.deepEqual(parsePortgroupList(fixture('esxcli-xml-network-vswitch-standard-portgroup-list.xml'), 'xml'), expected);
    assert.deepEqual(parsePortgroupList(fixture('esxcli-csv-network-vswitch-standard-portgroup-list.csv'), 'csv'), expected);
    assert.deepEqual(parsePortgroupList(fixture('esxcli-xml-network-vswitch-standard-portgroup-list.empty.xml'), 'xml'), []);
  });

  test('CSV: quoted fields with commas and doubled quotes; the trailing comma of every line', () => {
    assert.deepEqual(parseEsxcliCsv('ActiveClients,Name,VLANID,VirtualSwitch,\n0,"Lab, ""blue""",5,vSwitch1,\n', 'c'), [
      { ActiveClients: '0', Name: 'Lab, "blue"', VLANID: '5', VirtualSwitch: 'vSwitch1' },
    ]);
  });

  test('anything else is UnexpectedOutputError, not a guess', () => {
    const bad = [
      () => parseVswitchList('esxcli: command not found'),
      () => parseVswitchList('<html><body>no</body></html>'),
      () => parseVswitchList(fixture('esxcli-xml-network-vswitch-standard-portgroup-list.xml')), // no Uplinks field
      () => parsePortgroupList('Name,VirtualSwitch,\npg,vSwitch0,\n', 'csv'), // no VLANID
      () => parsePortgroupList('ActiveClients,Name,VLANID,VirtualSwitch,\n1,pg,0\n', 'csv'), // short line
      () => parsePortgroupList('ActiveClients,Name,VLANID,VirtualSwitch,\n1,pg,5000,vSwitch0,\n', 'csv'), // VLAN out of range
      () => parsePortgroupList('', 'csv'),
      () =>
        parseEsxcliXml('<output><root><list type="structure"><structure><field name="X"><float>1.5</float></field></structure></list></root></output>', 'x'),
    ];
    for (const f of bad) assert.throws(f, UnexpectedOutputError);
  });
});

describe('standard vSwitch convergence (the commands a standard-vSwitch step would run)', () => {
  const vswitches = parseVswitchList(fixture('esxcli-xml-network-vswitch-standard-list.xml'));
  const portgroups = parsePortgroupList(fixture('esxcli-xml-network-vswitch-standard-portgroup-list.xml'), 'xml');

  test('nothing to do when the switch, uplinks and port group VLAN already hold', () => {
    assert.deepEqual(standardVswitchCommands(vswitches, portgroups, { vswitch: 'vSwitch1', uplinks: ['vmnic1'], portgroup: 'pg-vm-120', vlan: 120 }), []);
  });

  test('a new switch: add, uplinks, failover order, port group, VLAN — in that order', () => {
    const cmds = standardVswitchCommands(vswitches, portgroups, {
      vswitch: 'vSwitch2',
      uplinks: ['vmnic4', 'vmnic5'],
      portgroup: 'pg-storage',
      vlan: 30,
      loadBalancing: 'portid',
    }).map((c) => c.text);
    assert.deepEqual(cmds, [
      'esxcli network vswitch standard add --vswitch-name=vSwitch2',
      'esxcli network vswitch standard uplink add --uplink-name=vmnic4 --vswitch-name=vSwitch2',
      'esxcli network vswitch standard uplink add --uplink-name=vmnic5 --vswitch-name=vSwitch2',
      'esxcli network vswitch standard policy failover set --vswitch-name=vSwitch2 --active-uplinks=vmnic4,vmnic5 --load-balancing=portid',
      'esxcli network vswitch standard portgroup add --portgroup-name=pg-storage --vswitch-name=vSwitch2',
      'esxcli network vswitch standard portgroup set --portgroup-name=pg-storage --vlan-id=30',
    ]);
  });

  test('an extra uplink is removed, a wrong VLAN retagged; a port group on another switch is refused', () => {
    const cmds = standardVswitchCommands(vswitches, portgroups, { vswitch: 'vSwitch1', uplinks: ['vmnic2'], portgroup: 'pg-vm-120', vlan: 121 }).map(
      (c) => c.text,
    );
    assert.deepEqual(cmds, [
      'esxcli network vswitch standard uplink add --uplink-name=vmnic2 --vswitch-name=vSwitch1',
      'esxcli network vswitch standard uplink remove --uplink-name=vmnic1 --vswitch-name=vSwitch1',
      'esxcli network vswitch standard policy failover set --vswitch-name=vSwitch1 --active-uplinks=vmnic2',
      'esxcli network vswitch standard portgroup set --portgroup-name=pg-vm-120 --vlan-id=121',
    ]);
    assert.throws(
      () => standardVswitchCommands(vswitches, portgroups, { vswitch: 'vSwitch1', uplinks: ['vmnic1'], portgroup: 'VM Network', vlan: 0 }),
      UnexpectedOutputError,
    );
  });
});
