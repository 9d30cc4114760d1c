/**
 * A stand-in for a Windows Server host behind OpenSSH, for the Hyper-V step tests — used ONLY because no
 * Windows peer can run here. It is kept honest:
 *   - it receives exactly what the steps send (`powershell … -EncodedCommand <base64>`), decodes it and
 *     records the PowerShell body the step wrote, so tests assert on real command text;
 *   - it answers reads from the JSON fixtures in test/fixtures/hyperv (SOURCES.md), chosen by its state;
 *   - it changes that state only on the cmdlets that change a host (New-VMSwitch, Set-VMSwitchTeam,
 *     Set-VMNetworkAdapterVlan, Remove-VMSwitch, Install/Uninstall-WindowsFeature, shutdown.exe), the way the
 *     Microsoft documentation says they do; a reboot drops the connection for a few calls;
 *   - anything it does not know fails loudly instead of returning something plausible.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConnectionError } from '../../src/common/errors';
import type { CommandChannel, ExecResult } from '../../src/drivers/remote';
import { decodeCommand } from '../../src/drivers/hyperv/powershell';

const FIX = resolve(__dirname, '../fixtures/hyperv');
const fixture = (name: string) => readFileSync(join(FIX, name), 'utf8');

export type FeatureState = 'available' | 'install-pending' | 'installed' | 'uninstall-pending';

export class FakeWindows implements CommandChannel {
  /** The PowerShell bodies received, in order (the bounded-job wrapper removed). */
  readonly scripts: string[] = [];
  features: FeatureState = 'available';
  /** Boots so far; 0 = the fixture's "before" boot. */
  boots = 0;
  switchExists = false;
  vlan: number | null = null;
  session: 'mgmt' | 'nic1' = 'mgmt';
  adapters = 'get-netadapter.json';
  /** Calls (exec or connect) refused while the host restarts. */
  rebooting = 0;
  /** Answer every call with this exit code (e.g. 124: the host-side deadline fired). */
  forceExit: number | null = null;

  async exec(command: string): Promise<ExecResult> {
    const m = /^powershell -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand ([A-Za-z0-9+/=]+)$/.exec(command);
    if (!m) throw new Error(`fake Windows: not a PowerShell command line: ${command.slice(0, 120)}`);
    const lines = decodeCommand(m[1]!).split('\n');
    if (!/^\$job = Start-Job -ScriptBlock \{/.test(lines[1] ?? '') || !/^if \(-not \(Wait-Job -Job \$job -Timeout \d+\)\)/.test(lines.at(-2) ?? '')) {
      throw new Error('fake Windows: the script is not wrapped in the bounded job');
    }
    const body = lines.slice(2, -3).join('\n');
    this.scripts.push(body);
    this.pass();
    if (this.forceExit !== null) return { stdout: '', stderr: this.forceExit === 124 ? 'timed out after 60 s' : 'failed', exitCode: this.forceExit };
    return { stdout: this.answer(body), stderr: '', exitCode: 0 };
  }

  /** What a connection attempt meets: refused while restarting. */
  connect(): void {
    this.pass();
  }

  /** The scripts matching a pattern. */
  sent(re: RegExp): string[] {
    return this.scripts.filter((s) => re.test(s));
  }

  private pass(): void {
    if (this.rebooting > 0) {
      this.rebooting--;
      if (this.rebooting === 0) this.finishBoot();
      throw new ConnectionError('connect ECONNREFUSED (the host is restarting)', { host: 'fake-windows' });
    }
  }

  private finishBoot(): void {
    this.boots++;
    if (this.features === 'install-pending') this.features = 'installed';
    if (this.features === 'uninstall-pending') this.features = 'available';
  }

  private bootInfo(): string {
    if (this.boots === 0) return fixture('boot-info.before.json');
    const after = JSON.parse(fixture('boot-info.after-install.json')) as Array<{ LastBootUpTime: string; HypervisorPresent: boolean }>;
    // Later boots: the fixture's record, its time moved on by a day per boot, the hypervisor as the features say.
    const t = new Date(Date.parse(after[0]!.LastBootUpTime) + (this.boots - 1) * 86_400_000).toISOString().replace(/\.(\d{3})Z$/, '.$10000Z');
    return JSON.stringify([{ LastBootUpTime: t, HypervisorPresent: this.features === 'installed' || this.features === 'uninstall-pending' }]);
  }

  private answer(body: string): string {
    const json = (inner: RegExp) => new RegExp(`^ConvertTo-Json -InputObject @\\(${inner.source}`).test(body);
    if (json(/Get-WindowsFeature -Name @\('Hyper-V','Hyper-V-PowerShell'\)/)) return fixture(`get-windowsfeature.${this.features}.json`);
    if (json(/Install-WindowsFeature -Name 'Hyper-V' -IncludeManagementTools/)) {
      this.features = 'install-pending';
      return fixture('install-windowsfeature.restart-required.json');
    }
    if (json(/Uninstall-WindowsFeature -Name 'Hyper-V' -IncludeManagementTools/)) {
      this.features = 'uninstall-pending';
      return fixture('install-windowsfeature.restart-required.json');
    }
    if (json(/\$os = Get-CimInstance -ClassName Win32_OperatingSystem/)) return this.bootInfo();
    if (/^& shutdown\.exe \/r \/t \d+ /.test(body)) {
      this.rebooting = 3;
      return '';
    }
    if (json(/Get-Service \| Where-Object \{ \$_\.Name -eq 'vmms' \}/)) return this.features === 'installed' ? fixture('get-service.vmms-running.json') : '[]';
    if (json(/\$local = \(\[string\]\$env:SSH_CONNECTION -split ' '\)\[2\]/)) return fixture(`session-interface.${this.session}.json`);
    if (json(/Get-NetAdapter \| Select-Object/)) return fixture(this.switchExists ? 'get-netadapter.after-set.json' : this.adapters);
    if (json(/Get-VMSwitchTeam \| Where-Object \{ \$_\.Name -eq 'SETswitch' \}/)) return this.switchExists ? fixture('get-vmswitchteam.json') : '[]';
    if (json(/Get-VMSwitch \| Where-Object \{ \$_\.Name -eq 'SETswitch' \}/))
      return this.switchExists ? fixture('get-vmswitch.set.json') : fixture('get-vmswitch.none.json');
    if (json(/Get-VMNetworkAdapterVlan -ManagementOS \| Where-Object \{ \$_\.ParentAdapter\.Name -eq 'SETswitch' \}/)) {
      if (!this.switchExists) return '[]';
      return fixture(this.vlan === 20 ? 'get-vmnetworkadaptervlan.access20.json' : 'get-vmnetworkadaptervlan.untagged.json');
    }
    // Changes: one statement per line (the attach step joins them).
    const changes = body.split('\n');
    if (changes.every((l) => /^(New-VMSwitch|Set-VMSwitchTeam|Set-VMNetworkAdapterVlan|Remove-VMSwitch) /.test(l))) {
      for (const l of changes) this.change(l);
      return '';
    }
    throw new Error(`fake Windows: no answer for:\n${body}`);
  }

  private change(line: string): void {
    if (/^New-VMSwitch -Name 'SETswitch' -NetAdapterName @\('NIC1','NIC2'\) -EnableEmbeddedTeaming \$true -AllowManagementOS \$true \| Out-Null$/.test(line)) {
      if (this.switchExists) throw new Error('New-VMSwitch: a switch of that name exists');
      this.switchExists = true;
    } else if (/^Set-VMSwitchTeam -Name 'SETswitch' -LoadBalancingAlgorithm 'Dynamic'$/.test(line)) {
      if (!this.switchExists) throw new Error('Set-VMSwitchTeam: no such switch');
    } else if (/^Set-VMNetworkAdapterVlan -ManagementOS -VMNetworkAdapterName 'SETswitch' -Access -VlanId 20$/.test(line)) {
      this.vlan = 20;
    } else if (/^Set-VMNetworkAdapterVlan -ManagementOS -VMNetworkAdapterName 'SETswitch' -Untagged$/.test(line)) {
      this.vlan = null;
    } else if (/^Remove-VMSwitch -Name 'SETswitch' -Force$/.test(line)) {
      this.switchExists = false;
      this.vlan = null;
    } else throw new Error(`fake Windows: unknown change: ${line}`);
  }
}
