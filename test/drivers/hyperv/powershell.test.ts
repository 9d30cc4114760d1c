/**
 * The PowerShell command builder and parsers: exact command text, quoting of hostile values, the
 * -EncodedCommand round trip, and the cmdlets' JSON (test/fixtures/hyperv, see SOURCES.md) through the zod
 * schemas. No PowerShell runs here (none can be installed from the allowed registries): what is proven is the
 * text we send and what we accept back.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { UnexpectedOutputError } from '../../../src/common/errors';
import {
  BootInfo,
  FeatureOperationResult,
  getManagementOsVlan,
  getVMSwitch,
  getWindowsFeatures,
  HYPERV_FEATURES,
  NetAdapter,
  newSetSwitch,
  normalizeMac,
  restartComputer,
  setManagementOsVlan,
  setSwitchTeam,
  VlanSetting,
  VMSwitch,
  VMSwitchTeam,
  WindowsFeature,
} from '../../../src/drivers/hyperv/cmdlets';
import {
  boundedScript,
  decodeCommand,
  encodeCommand,
  MAX_COMMAND_LINE,
  powershellCommandLine,
  ps,
  psQuote,
  toJson,
} from '../../../src/drivers/hyperv/powershell';
import { cleanStderr, parsePsJsonList } from '../../../src/drivers/hyperv/run';

const FIX = resolve(__dirname, '../../fixtures/hyperv');
const fixture = (name: string) => readFileSync(join(FIX, name), 'utf8');

describe('ps: PowerShell single-quoted values', () => {
  test('plain values, numbers, booleans, arrays', () => {
    assert.equal(ps`Get-VMSwitch -Name ${'SETswitch'}`.text, "Get-VMSwitch -Name 'SETswitch'");
    assert.equal(ps`-VlanId ${20} -Enable ${true} -Off ${false}`.text, '-VlanId 20 -Enable $true -Off $false');
    assert.equal(ps`-NetAdapterName ${['NIC1', 'NIC2']}`.text, "-NetAdapterName @('NIC1','NIC2')");
    assert.equal(ps`@(${[]})`.text, '@(@())');
  });

  test('hostile values stay one literal: quotes doubled (also the typographic ones), nothing expands', () => {
    assert.equal(psQuote("it's"), "'it''s'");
    assert.equal(psQuote('$(Remove-Item C:\\ -Recurse) `n $env:PATH; & calc | x'), "'$(Remove-Item C:\\ -Recurse) `n $env:PATH; & calc | x'");
    // U+2018 ‘ U+2019 ’ U+201A ‚ U+201B ‛ all close a single-quoted string in PowerShell's tokenizer.
    assert.equal(psQuote('a\u2018b\u2019c\u201Ad\u201Be'), "'a\u2018\u2018b\u2019\u2019c\u201A\u201Ad\u201B\u201Be'");
    assert.equal(psQuote("x'; Remove-VMSwitch -Name * -Force; '"), "'x''; Remove-VMSwitch -Name * -Force; '''");
    assert.equal(psQuote('line1\nline2'), "'line1\nline2'", 'newlines are literal inside single quotes');
    assert.equal(psQuote(''), "''");
  });

  test('refused: NUL, non-finite numbers', () => {
    assert.throws(() => psQuote('a\0b'), /NUL/);
    assert.throws(() => ps`${Number.NaN}`, /finite/);
    assert.throws(() => ps`${Infinity}`, /finite/);
  });

  test('a hostile value is always an odd-free quote sequence: the literal ends where we end it', () => {
    for (const v of ["'", "''", "'''", '\u2019', "a'\u2018'b", "'; exit 1; '"]) {
      const q = psQuote(v);
      const inner = q.slice(1, -1);
      // Every quote character inside comes in pairs: none terminates the literal.
      assert.match(inner, /^(?:[^'\u2018\u2019\u201A\u201B]|''|\u2018\u2018|\u2019\u2019|\u201A\u201A|\u201B\u201B)*$/, JSON.stringify(v));
    }
  });
});

describe('-EncodedCommand', () => {
  test('base64 of UTF-16LE: a known value, and a round trip with non-ASCII text', () => {
    assert.equal(encodeCommand('Get-Date'), 'RwBlAHQALQBEAGEAdABlAA==');
    const script = ps`Write-Output ${"Grüße ‘x’ 'y' $z"}`;
    assert.equal(decodeCommand(encodeCommand(script)), "Write-Output 'Grüße ‘‘x’’ ''y'' $z'");
  });

  test('the command line: fixed words, then a single base64 word (nothing for cmd.exe to reinterpret)', () => {
    const line = powershellCommandLine(ps`Get-VMSwitch -Name ${'a&b|c^d"e'}`);
    const m = /^powershell -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand ([A-Za-z0-9+/=]+)$/.exec(line);
    assert.ok(m, line);
    assert.equal(decodeCommand(m[1]!), "Get-VMSwitch -Name 'a&b|c^d\"e'");
  });

  test('scripts too long for cmd.exe are refused before sending', () => {
    assert.throws(() => powershellCommandLine(ps`${'x'.repeat(4000)}`), new RegExp(`> ${MAX_COMMAND_LINE}`));
  });

  test('the bounded wrapper: stop on errors, job with a host-side deadline, exit 124 / 1', () => {
    const s = boundedScript(ps`Get-Date`, 90.2).text;
    assert.equal(
      s,
      [
        "$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'",
        "$job = Start-Job -ScriptBlock { $ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'",
        'Get-Date',
        '}',
        "if (-not (Wait-Job -Job $job -Timeout 91)) { Stop-Job -Job $job; Remove-Job -Job $job -Force; [Console]::Error.WriteLine('timed out after 91 s'); exit 124 }",
        'try { Receive-Job -Job $job -ErrorAction Stop } catch { [Console]::Error.WriteLine($_.Exception.Message); exit 1 } finally { Remove-Job -Job $job -Force }',
      ].join('\n'),
    );
  });

  test('a typical read fits the command line with room to spare', () => {
    const line = powershellCommandLine(boundedScript(toJson(getVMSwitch('SETswitch')), 60));
    assert.ok(line.length < MAX_COMMAND_LINE / 2, String(line.length));
  });
});

describe('cmdlets: exact text', () => {
  test('reads', () => {
    assert.equal(
      getWindowsFeatures(HYPERV_FEATURES).text,
      "Get-WindowsFeature -Name @('Hyper-V','Hyper-V-PowerShell') | Select-Object Name, @{n='InstallState';e={[string]$_.InstallState}}",
    );
    assert.equal(
      getVMSwitch('SETswitch').text,
      "Get-VMSwitch | Where-Object { $_.Name -eq 'SETswitch' } | Select-Object Name, @{n='SwitchType';e={[string]$_.SwitchType}}, EmbeddedTeamingEnabled, AllowManagementOS, @{n='NetAdapterInterfaceDescriptions';e={@($_.NetAdapterInterfaceDescriptions)}}",
    );
    assert.equal(
      getManagementOsVlan('SETswitch').text,
      "Get-VMNetworkAdapterVlan -ManagementOS | Where-Object { $_.ParentAdapter.Name -eq 'SETswitch' } | Select-Object @{n='ParentAdapter';e={[string]$_.ParentAdapter.Name}}, @{n='OperationMode';e={[string]$_.OperationMode}}, AccessVlanId",
    );
    assert.equal(toJson(ps`Get-Date`).text, 'ConvertTo-Json -InputObject @(Get-Date) -Depth 4 -Compress');
  });

  test('changes', () => {
    assert.equal(
      newSetSwitch('SETswitch', ['NIC1', 'NIC2']).text,
      "New-VMSwitch -Name 'SETswitch' -NetAdapterName @('NIC1','NIC2') -EnableEmbeddedTeaming $true -AllowManagementOS $true | Out-Null",
    );
    assert.equal(setSwitchTeam('SETswitch', { loadBalancing: 'HyperVPort' }).text, "Set-VMSwitchTeam -Name 'SETswitch' -LoadBalancingAlgorithm 'HyperVPort'");
    assert.equal(
      setSwitchTeam('SETswitch', { nics: ['NIC1', 'NIC3'], loadBalancing: 'Dynamic' }).text,
      "Set-VMSwitchTeam -Name 'SETswitch' -NetAdapterName @('NIC1','NIC3') -LoadBalancingAlgorithm 'Dynamic'",
    );
    assert.equal(setManagementOsVlan('SETswitch', 20).text, "Set-VMNetworkAdapterVlan -ManagementOS -VMNetworkAdapterName 'SETswitch' -Access -VlanId 20");
    assert.equal(setManagementOsVlan('SETswitch', null).text, "Set-VMNetworkAdapterVlan -ManagementOS -VMNetworkAdapterName 'SETswitch' -Untagged");
    assert.equal(
      restartComputer('underlay: test', 5).text,
      '& shutdown.exe /r /t 5 /d p:4:1 /c \'underlay: test\'; if ($LASTEXITCODE -ne 0) { throw "shutdown.exe exited $LASTEXITCODE" }',
    );
  });

  test('a hostile switch name cannot leave its literal', () => {
    assert.equal(
      newSetSwitch("x'; Remove-Item C:\\*; '", ['NIC1']).text,
      "New-VMSwitch -Name 'x''; Remove-Item C:\\*; ''' -NetAdapterName @('NIC1') -EnableEmbeddedTeaming $true -AllowManagementOS $true | Out-Null",
    );
  });
});

describe('parsers on the cmdlets’ JSON', () => {
  test('Get-WindowsFeature: every InstallState', () => {
    for (const [file, states] of [
      ['get-windowsfeature.available.json', ['Available', 'Available']],
      ['get-windowsfeature.install-pending.json', ['InstallPending', 'Installed']],
      ['get-windowsfeature.installed.json', ['Installed', 'Installed']],
      ['get-windowsfeature.uninstall-pending.json', ['UninstallPending', 'Available']],
    ] as const) {
      assert.deepEqual(
        parsePsJsonList(WindowsFeature, fixture(file), file).map((f) => f.InstallState),
        states,
        file,
      );
    }
    assert.throws(() => parsePsJsonList(WindowsFeature, '[{"Name":"Hyper-V","InstallState":1}]', 'x'), UnexpectedOutputError, 'numeric enum refused');
  });

  test('Install-WindowsFeature result, boot info', () => {
    assert.deepEqual(parsePsJsonList(FeatureOperationResult, fixture('install-windowsfeature.restart-required.json'), 'x'), [
      { Success: true, RestartNeeded: 'Yes', ExitCode: 'SuccessRestartRequired' },
    ]);
    const [b] = parsePsJsonList(BootInfo, fixture('boot-info.before.json'), 'x');
    assert.equal(b?.LastBootUpTime, '2026-11-20T06:14:02.5000000Z');
    assert.throws(
      () => parsePsJsonList(BootInfo, '{"LastBootUpTime":"/Date(1740556800000)/","HypervisorPresent":true}', 'x'),
      /ISO 8601/,
      'PS 5.1 default date form refused',
    );
  });

  test('Get-NetAdapter: names, status, bits/s, MACs', () => {
    const list = parsePsJsonList(NetAdapter, fixture('get-netadapter.json'), 'x');
    assert.deepEqual(
      list.map((a) => [a.Name, a.Status, a.ReceiveLinkSpeed, normalizeMac(a.MacAddress)]),
      [
        ['MGMT', 'Up', 1e9, '3c:ec:ef:00:00:01'],
        ['NIC1', 'Up', 25e9, '98:03:9b:4a:10:01'],
        ['NIC2', 'Up', 25e9, '98:03:9b:4a:10:02'],
      ],
    );
    assert.equal(normalizeMac('not-a-mac'), null);
  });

  test('Get-VMSwitch: SET switch, none, the single-object form of PowerShell 5.1', () => {
    const [sw] = parsePsJsonList(VMSwitch, fixture('get-vmswitch.set.json'), 'x');
    assert.deepEqual(sw, {
      Name: 'SETswitch',
      SwitchType: 'External',
      EmbeddedTeamingEnabled: true,
      AllowManagementOS: true,
      NetAdapterInterfaceDescriptions: ['Mellanox ConnectX-5 Adapter', 'Mellanox ConnectX-5 Adapter #2'],
    });
    assert.deepEqual(parsePsJsonList(VMSwitch, fixture('get-vmswitch.none.json'), 'x'), []);
    assert.deepEqual(parsePsJsonList(VMSwitch, '', 'x'), [], 'no output at all');
    assert.deepEqual(parsePsJsonList(VMSwitch, '\uFEFF' + fixture('get-vmswitch.set.single-object-ps51.json'), 'x'), [sw]);
  });

  test('Get-VMSwitch unprojected (numeric enums, as PowerShell 5.1 prints them) is refused, not misread', () => {
    assert.throws(
      () => parsePsJsonList(VMSwitch, fixture('get-vmswitch.raw-numeric-enums.json'), 'Get-VMSwitch'),
      (e: unknown) => e instanceof UnexpectedOutputError && /SwitchType/.test(e.message),
    );
  });

  test('Get-VMSwitchTeam and Get-VMNetworkAdapterVlan -ManagementOS', () => {
    const [team] = parsePsJsonList(VMSwitchTeam, fixture('get-vmswitchteam.json'), 'x');
    assert.equal(team?.TeamingMode, 'SwitchIndependent');
    assert.equal(team?.LoadBalancingAlgorithm, 'Dynamic');
    assert.deepEqual(parsePsJsonList(VlanSetting, fixture('get-vmnetworkadaptervlan.access20.json'), 'x'), [
      { ParentAdapter: 'SETswitch', OperationMode: 'Access', AccessVlanId: 20 },
    ]);
    assert.equal(parsePsJsonList(VlanSetting, fixture('get-vmnetworkadaptervlan.untagged.json'), 'x')[0]?.OperationMode, 'Untagged');
  });

  test('not JSON → a typed error showing the start of the output', () => {
    assert.throws(
      () => parsePsJsonList(VMSwitch, "Get-VMSwitch : The term 'Get-VMSwitch' is not recognized", 'Get-VMSwitch'),
      (e: unknown) => e instanceof UnexpectedOutputError && /not JSON/.test(e.message),
    );
  });

  test('stderr: the CLIXML progress/error stream is stripped from messages', () => {
    const raw =
      '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04"><Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T></TN></Obj></Objs>\r\nNew-VMSwitch : The switch name is already in use.';
    assert.equal(cleanStderr(raw), 'New-VMSwitch : The switch name is already in use.');
  });
});
