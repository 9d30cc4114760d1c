/**
 * The Hyper-V and Windows networking cmdlets underlay runs, and zod schemas for what they print through
 * ConvertTo-Json. Enum-typed properties are converted to their names in the Select-Object ([string]), because
 * Windows PowerShell 5.1 serializes enums as numbers; everything else is the cmdlet's own property.
 */
import { z } from 'zod';
import { UnexpectedOutputError } from '../../common/errors';
import type { RemoteHost } from '../remote';
import { ps, type Ps } from './powershell';
import { readPs, runPs } from './run';

// ---- Get-WindowsFeature -------------------------------------------------------------------------------------

export const HYPERV_FEATURES = ['Hyper-V', 'Hyper-V-PowerShell'] as const;

/** InstallState of Microsoft.Windows.ServerManager.Commands.Feature. */
export const WindowsFeature = z.looseObject({
  Name: z.string(),
  InstallState: z.enum(['Installed', 'InstallPending', 'Available', 'UninstallPending', 'Removed']),
});
export type WindowsFeatureJson = z.output<typeof WindowsFeature>;

export function getWindowsFeatures(names: readonly string[]): Ps {
  return ps`Get-WindowsFeature -Name ${names} | Select-Object Name, @{n='InstallState';e={[string]$_.InstallState}}`;
}

/** Install-WindowsFeature's FeatureOperationResult; RestartNeeded is Yes/No/Maybe, ExitCode e.g. SuccessRestartRequired. */
export const FeatureOperationResult = z.looseObject({
  Success: z.boolean(),
  RestartNeeded: z.string(),
  ExitCode: z.string(),
});

export function installHyperV(): Ps {
  return ps`Install-WindowsFeature -Name 'Hyper-V' -IncludeManagementTools | Select-Object Success, @{n='RestartNeeded';e={[string]$_.RestartNeeded}}, @{n='ExitCode';e={[string]$_.ExitCode}}`;
}

export function uninstallHyperV(): Ps {
  return ps`Uninstall-WindowsFeature -Name 'Hyper-V' -IncludeManagementTools | Select-Object Success, @{n='RestartNeeded';e={[string]$_.RestartNeeded}}, @{n='ExitCode';e={[string]$_.ExitCode}}`;
}

/** Get-Service's Name and Status (Running, Stopped, ...). */
export const ServiceStatus = z.looseObject({ Name: z.string(), Status: z.string() });

export function getService(name: string): Ps {
  return ps`Get-Service | Where-Object { $_.Name -eq ${name} } | Select-Object Name, @{n='Status';e={[string]$_.Status}}`;
}

// ---- boot identity ------------------------------------------------------------------------------------------

/** Win32_OperatingSystem.LastBootUpTime in UTC, ISO 8601 (the boot-id analogue), and whether a hypervisor runs. */
export const BootInfo = z.looseObject({
  LastBootUpTime: z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/, { message: 'must be an ISO 8601 UTC time' }),
  HypervisorPresent: z.boolean(),
});
export type BootInfoJson = z.output<typeof BootInfo>;

export function getBootInfo(): Ps {
  return ps`$os = Get-CimInstance -ClassName Win32_OperatingSystem; $cs = Get-CimInstance -ClassName Win32_ComputerSystem
[pscustomobject]@{ LastBootUpTime = $os.LastBootUpTime.ToUniversalTime().ToString('o'); HypervisorPresent = [bool]$cs.HypervisorPresent }`;
}

export async function readBootInfo(host: RemoteHost): Promise<BootInfoJson> {
  const [info] = await readPs(host, getBootInfo(), BootInfo, { description: 'Get-CimInstance Win32_OperatingSystem', timeoutMs: 60_000 });
  if (!info) throw new UnexpectedOutputError('Win32_OperatingSystem: no instance', { host: host.label, step: host.step });
  return info;
}

/** A detached reboot: shutdown.exe returns at once and restarts the machine `delaySec` later. */
export function restartComputer(reason: string, delaySec = 5): Ps {
  return ps`& shutdown.exe /r /t ${delaySec} /d p:4:1 /c ${reason}; if ($LASTEXITCODE -ne 0) { throw "shutdown.exe exited $LASTEXITCODE" }`;
}

export async function issueRestart(host: RemoteHost, reason: string): Promise<void> {
  await runPs(host, restartComputer(reason), { description: 'shutdown.exe /r', timeoutMs: 60_000, retryable: false });
}

// ---- Get-NetAdapter -----------------------------------------------------------------------------------------

export const NetAdapter = z.looseObject({
  Name: z.string(),
  InterfaceDescription: z.string(),
  /** Up, Disconnected, Disabled, Not Present, ... */
  Status: z.string(),
  LinkSpeed: z.string().optional(),
  /** Bits per second (UInt64); 0 when disconnected. */
  ReceiveLinkSpeed: z.number().nonnegative().nullable().optional(),
  /** `98-03-9B-4A-10-01`. */
  MacAddress: z.string().nullable().optional(),
});
export type NetAdapterJson = z.output<typeof NetAdapter>;

export function getNetAdapters(): Ps {
  return ps`Get-NetAdapter | Select-Object Name, InterfaceDescription, @{n='Status';e={[string]$_.Status}}, LinkSpeed, ReceiveLinkSpeed, MacAddress`;
}

export async function readNetAdapters(host: RemoteHost): Promise<NetAdapterJson[]> {
  return readPs(host, getNetAdapters(), NetAdapter, { description: 'Get-NetAdapter', timeoutMs: 60_000 });
}

/** `98-03-9B-4A-10-01` → `98:03:9b:4a:10:01`; null when not a MAC. */
export function normalizeMac(mac: string | null | undefined): string | null {
  if (!mac) return null;
  const m = mac.trim().toLowerCase().replace(/-/g, ':');
  return /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(m) ? m : null;
}

// ---- Get-VMSwitch / Get-VMSwitchTeam ----------------------------------------------------------------------------

export const VMSwitch = z.looseObject({
  Name: z.string(),
  /** Private, Internal, External. */
  SwitchType: z.string(),
  EmbeddedTeamingEnabled: z.boolean(),
  AllowManagementOS: z.boolean(),
  NetAdapterInterfaceDescriptions: z.array(z.string()).nullable().optional(),
});
export type VMSwitchJson = z.output<typeof VMSwitch>;

/** Exact name match (Get-VMSwitch -Name takes wildcards). */
export function getVMSwitch(name: string): Ps {
  return ps`Get-VMSwitch | Where-Object { $_.Name -eq ${name} } | Select-Object Name, @{n='SwitchType';e={[string]$_.SwitchType}}, EmbeddedTeamingEnabled, AllowManagementOS, @{n='NetAdapterInterfaceDescriptions';e={@($_.NetAdapterInterfaceDescriptions)}}`;
}

export const VMSwitchTeam = z.looseObject({
  Name: z.string(),
  /** SET supports SwitchIndependent only. */
  TeamingMode: z.string(),
  /** HyperVPort or Dynamic. */
  LoadBalancingAlgorithm: z.string(),
  NetAdapterInterfaceDescription: z.array(z.string()),
});
export type VMSwitchTeamJson = z.output<typeof VMSwitchTeam>;

export function getVMSwitchTeam(name: string): Ps {
  return ps`Get-VMSwitchTeam | Where-Object { $_.Name -eq ${name} } | Select-Object Name, @{n='TeamingMode';e={[string]$_.TeamingMode}}, @{n='LoadBalancingAlgorithm';e={[string]$_.LoadBalancingAlgorithm}}, @{n='NetAdapterInterfaceDescription';e={@($_.NetAdapterInterfaceDescription)}}`;
}

// ---- Get-VMNetworkAdapterVlan -ManagementOS -----------------------------------------------------------------------

export const VlanSetting = z.looseObject({
  /** The host vNIC the setting belongs to (named after the switch by New-VMSwitch -AllowManagementOS). */
  ParentAdapter: z.string(),
  /** Untagged, Access, Trunk, Private. */
  OperationMode: z.string(),
  AccessVlanId: z.number().int().nonnegative(),
});
export type VlanSettingJson = z.output<typeof VlanSetting>;

export function getManagementOsVlan(adapter: string): Ps {
  return ps`Get-VMNetworkAdapterVlan -ManagementOS | Where-Object { $_.ParentAdapter.Name -eq ${adapter} } | Select-Object @{n='ParentAdapter';e={[string]$_.ParentAdapter.Name}}, @{n='OperationMode';e={[string]$_.OperationMode}}, AccessVlanId`;
}

// ---- changes ------------------------------------------------------------------------------------------------

export function newSetSwitch(name: string, nics: readonly string[]): Ps {
  return ps`New-VMSwitch -Name ${name} -NetAdapterName ${nics} -EnableEmbeddedTeaming $true -AllowManagementOS $true | Out-Null`;
}

export function setSwitchTeam(name: string, change: { nics?: readonly string[]; loadBalancing?: string }): Ps {
  let cmd = ps`Set-VMSwitchTeam -Name ${name}`;
  if (change.nics) cmd = ps`${cmd} -NetAdapterName ${change.nics}`;
  if (change.loadBalancing) cmd = ps`${cmd} -LoadBalancingAlgorithm ${change.loadBalancing}`;
  return cmd;
}

export function setAllowManagementOS(name: string, allow: boolean): Ps {
  return ps`Set-VMSwitch -Name ${name} -AllowManagementOS ${allow}`;
}

export function setManagementOsVlan(adapter: string, vlan: number | null): Ps {
  return vlan === null
    ? ps`Set-VMNetworkAdapterVlan -ManagementOS -VMNetworkAdapterName ${adapter} -Untagged`
    : ps`Set-VMNetworkAdapterVlan -ManagementOS -VMNetworkAdapterName ${adapter} -Access -VlanId ${vlan}`;
}

export function removeSwitch(name: string): Ps {
  return ps`Remove-VMSwitch -Name ${name} -Force`;
}

// ---- the session's own interface (lockout guard) ----------------------------------------------------------------

export const SessionInterface = z.looseObject({ InterfaceAlias: z.string(), IPAddress: z.string() });

/** The interface holding the server address of this SSH session (SSH_CONNECTION field 3). */
export function getSessionInterface(): Ps {
  return ps`$local = ([string]$env:SSH_CONNECTION -split ' ')[2]
if ($local) { Get-NetIPAddress | Where-Object { $_.IPAddress -eq $local } | Select-Object InterfaceAlias, IPAddress }`;
}

export async function readSessionInterface(host: RemoteHost): Promise<string | undefined> {
  const [hit] = await readPs(host, getSessionInterface(), SessionInterface, { description: 'find the interface of this SSH session', timeoutMs: 60_000 });
  return hit?.InterfaceAlias;
}
