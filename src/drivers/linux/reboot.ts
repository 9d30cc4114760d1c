/**
 * Rebooting a Linux host over SSH: its boot identity (the kernel's random boot_id, new on every boot) and a
 * reboot issued detached, so the SSH command returns before the host goes down.
 */
import { sh, type Shell } from '../shell';
import type { RemoteHost } from '../remote';

export const BOOT_ID_PATH = '/proc/sys/kernel/random/boot_id';

/** A systemd transient unit name: at most one pending underlay reboot per boot. */
export const REBOOT_UNIT = 'underlay-reboot';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** `cat /proc/sys/kernel/random/boot_id` → the UUID, or undefined when the text is not one. */
export function parseBootId(text: string): string | undefined {
  const id = text.trim().toLowerCase();
  return UUID.test(id) ? id : undefined;
}

export async function readBootId(host: RemoteHost): Promise<string> {
  const out = await host.read(sh`cat ${BOOT_ID_PATH}`, { description: `read ${BOOT_ID_PATH}`, privileged: false, timeoutMs: 30_000 });
  const id = parseBootId(out);
  if (!id) throw host.unexpected(BOOT_ID_PATH, out);
  return id;
}

/**
 * Schedules `systemctl reboot` `delaySec` seconds from now in a transient systemd timer (the command returns at
 * once, the session is still open when it does) — unless one is already pending in this boot. Without systemd:
 * a detached `sleep; reboot`. Prints `scheduled` or `already-scheduled`.
 */
export function rebootScript(delaySec = 2): Shell {
  const unit = REBOOT_UNIT;
  return sh`if command -v systemd-run >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  if systemctl is-active --quiet ${`${unit}.timer`}; then echo already-scheduled; exit 0; fi
  systemd-run --quiet --unit=${unit} --description=${'underlay: reboot requested by an onboarding step'} --on-active=${`${delaySec}s`} /bin/systemctl reboot && echo scheduled
else
  nohup sh -c ${`sleep ${delaySec}; reboot`} >/dev/null 2>&1 </dev/null &
  echo scheduled
fi`;
}

/** Issues the reboot (detached). Resolves once it is scheduled; the host goes down `delaySec` later. */
export async function issueReboot(host: RemoteHost, delaySec = 2): Promise<'scheduled' | 'already-scheduled'> {
  const out = (await host.read(rebootScript(delaySec), { description: 'schedule a reboot', timeoutMs: 30_000, retryable: false })).trim();
  if (out !== 'scheduled' && out !== 'already-scheduled') throw host.unexpected('schedule a reboot', out);
  return out;
}
