/**
 * Commit-confirmed network changes on a Linux host: a host-side dead-man that undoes a change by itself unless the
 * controller confirms it can still reach the host (the rule of Junos `commit confirmed`, `netplan try`, NM
 * checkpoints). Pure command builders and parsers; the protocol lives in src/activities/move.ts.
 *
 * On the host, one transaction is a directory `/var/lib/underlay/txn/<id>/`:
 *
 *   files/<i>    the saved content of each persisted file the change may touch (absent.<i>: it did not exist)
 *   restore.sh   puts those files back and re-activates them through the network manager (runtime pre-state);
 *                `restore.sh boot` only puts the files back (early boot, before the manager starts)
 *   change.sh    the change itself, run detached: the SSH session that started it may drop half-way
 *   apply.rc     the change's exit status, once it ran
 *   decided/     created by whichever comes first — the confirm or the rollback (mkdir is atomic); `which` says
 *
 * Armed by two things: a transient systemd timer `underlay-txn-<id>-rollback.timer` (on-active = the window) that
 * runs restore.sh, and a boot guard `underlay-txn-<id>-boot.service` (enabled, before the network manager) so a
 * reboot inside the window restores the files before the manager reads them. The confirm stops and removes both.
 */
import { join, sh, type Shell } from '../shell';

export const TXN_ROOT = '/var/lib/underlay/txn';
/** One line per event of every transaction (`<epoch> <id> change-start|change-exit <rc>|rolled-back|confirmed|abandoned`), kept. */
export const TXN_JOURNAL = `${TXN_ROOT}/journal`;

/** A transaction id: step and a random token, safe as a path segment and a unit name. */
const TXN_ID = /^[a-z][a-z0-9-]{2,62}$/;

export function txnDir(id: string): string {
  if (!TXN_ID.test(id)) throw new Error(`not a transaction id: ${JSON.stringify(id)}`);
  return `${TXN_ROOT}/${id}`;
}

export const rollbackUnit = (id: string): string => `underlay-txn-${id}-rollback`;
export const applyUnit = (id: string): string => `underlay-txn-${id}-apply`;
export const bootGuardUnit = (id: string): string => `underlay-txn-${id}-boot.service`;
const bootGuardPath = (id: string): string => `/etc/systemd/system/${bootGuardUnit(id)}`;
/** Enabled by hand (a symlink), so that removing it needs no `systemctl disable` at early boot. */
const bootGuardLink = (id: string): string => `/etc/systemd/system/sysinit.target.wants/${bootGuardUnit(id)}`;

export interface TxnPlan {
  id: string;
  /** Persisted files the change may write or remove: saved now, put back by a rollback. */
  files: readonly string[];
  /** Runs after the files are back: makes the network manager apply them (the runtime pre-state). */
  reactivate: Shell;
  /** The change (files and activation), run detached on the host. */
  change: Shell;
  /** Seconds the host waits for the confirm. */
  windowSec: number;
  /** Seconds the detached change waits first, so the SSH command that armed it returns before the link moves. */
  delaySec?: number;
}

/**
 * Writes a marker file atomically (a temporary file, then `mv`): a status read racing the write sees the file
 * absent or complete, never created-but-empty (`date +%s > f` truncates first — a read in between printed an
 * empty field, and the status line did not parse; seen once in CI).
 */
function writeMarker(path: string, value: Shell): Shell {
  return sh`printf '%s\n' ${value} > ${`${path}.tmp`} && mv -f ${`${path}.tmp`} ${path}`;
}

/** Writes `content` to `path` (0700, atomically). */
function writeExecutable(path: string, content: string): Shell {
  return sh`printf '%s' ${content} > ${`${path}.tmp`} && chmod 0700 ${`${path}.tmp`} && mv -f ${`${path}.tmp`} ${path}`;
}

/** restore.sh: files back (byte for byte, mode and owner kept), then — unless at boot — the manager re-applies them. */
export function restoreScript(plan: TxnPlan): string {
  const d = txnDir(plan.id);
  const files = plan.files.map(
    (p, i) =>
      sh`if [ -f ${`${d}/files/${i}`} ]; then cp -p ${`${d}/files/${i}`} ${`${p}.underlay-tmp`} && mv -f ${`${p}.underlay-tmp`} ${p}; else rm -f ${p}; fi`.text,
  );
  return [
    '#!/bin/sh',
    '# underlay commit-confirmed transaction: restore the pre-state unless confirmed (see src/drivers/linux/txn.ts)',
    sh`exec >>${`${d}/log`} 2>&1`.text,
    // The confirm may have won: then this is a no-op. mkdir is the atomic decision.
    sh`mkdir ${`${d}/decided`} 2>/dev/null || { echo "$(date +%s) rollback: already decided: $(cat ${`${d}/decided/which`} 2>/dev/null)"; exit 0; }`.text,
    writeMarker(`${d}/decided/which`, sh`rolled-back`).text,
    'echo "$(date +%s) rollback (${1:-timer}): restoring files"',
    // A change still running is stopped first (it would undo the restore half-way).
    sh`[ "\${1:-}" = boot ] || systemctl stop ${`${applyUnit(plan.id)}.service`} 2>/dev/null || true`.text,
    ...files,
    sh`if [ "\${1:-}" = boot ]; then :; else`.text,
    `  ${plan.reactivate.text}`,
    'fi',
    sh`rm -f ${bootGuardLink(plan.id)} ${bootGuardPath(plan.id)}`.text,
    sh`[ "\${1:-}" = boot ] || systemctl daemon-reload`.text,
    writeMarker(`${d}/rolled-back`, sh`"$(date +%s)"`).text,
    'echo "$(date +%s) rollback: done"',
    sh`echo "$(date +%s) ${plan.id} rolled-back \${1:-timer}" >> ${TXN_JOURNAL}`.text,
    '',
  ].join('\n');
}

/** change.sh: after a short delay (the arming command returns first), the change; its exit status to apply.rc. */
export function changeScript(plan: TxnPlan): string {
  const d = txnDir(plan.id);
  return [
    '#!/bin/sh',
    sh`exec >>${`${d}/log`} 2>&1`.text,
    `sleep ${Math.max(0, Math.min(30, Math.trunc(plan.delaySec ?? 2)))}`,
    // A rollback (or confirm) already decided: never apply after the fact.
    sh`[ -e ${`${d}/decided`} ] && { echo "$(date +%s) change: skipped, already decided"; exit 0; }`.text,
    'echo "$(date +%s) change: start"',
    sh`echo "$(date +%s) ${plan.id} change-start" >> ${TXN_JOURNAL}`.text,
    `( ${plan.change.text} )`,
    'rc=$?',
    writeMarker(`${d}/apply.rc`, sh`"$rc"`).text,
    'echo "$(date +%s) change: exit $rc"',
    sh`echo "$(date +%s) ${plan.id} change-exit $rc" >> ${TXN_JOURNAL}`.text,
    'exit "$rc"',
    '',
  ].join('\n');
}

function bootGuard(plan: TxnPlan): string {
  const d = txnDir(plan.id);
  return [
    '[Unit]',
    `Description=underlay: roll back unconfirmed network transaction ${plan.id} at boot`,
    'DefaultDependencies=no',
    'After=local-fs.target',
    'Before=network-pre.target systemd-networkd.service NetworkManager.service networking.service',
    'Wants=network-pre.target',
    '',
    '[Service]',
    'Type=oneshot',
    `ExecStart=/bin/sh ${d}/restore.sh boot`,
    '',
    '[Install]',
    'WantedBy=sysinit.target',
    '',
  ].join('\n');
}

/**
 * One command: save the files, write restore.sh / change.sh and the boot guard, arm the timer, start the change
 * detached. Refuses (exit 3) when a transaction of that id exists already: arming twice would save the changed
 * files as the "pre-state".
 */
export function armScript(plan: TxnPlan): Shell {
  const d = txnDir(plan.id);
  const window = Math.trunc(plan.windowSec);
  if (!(window >= 10 && window <= 3600)) throw new Error(`confirm window out of range: ${window}`);
  const save = plan.files.map((p, i) => sh`if [ -f ${p} ]; then cp -p ${p} ${`${d}/files/${i}`}; else : > ${`${d}/absent.${i}`}; fi`);
  return join('&&', [
    sh`{ ! [ -e ${d} ] || { echo ${`transaction ${plan.id} exists already`} >&2; exit 3; }; }`,
    sh`mkdir -p -m 0700 ${TXN_ROOT} && mkdir -m 0700 ${d} ${`${d}/files`}`,
    ...save,
    writeExecutable(`${d}/restore.sh`, restoreScript(plan)),
    writeExecutable(`${d}/change.sh`, changeScript(plan)),
    sh`printf '%s' ${bootGuard(plan)} > ${bootGuardPath(plan.id)}`,
    sh`mkdir -p /etc/systemd/system/sysinit.target.wants && ln -sf ${bootGuardPath(plan.id)} ${bootGuardLink(plan.id)} && systemctl daemon-reload`,
    writeMarker(`${d}/armed`, sh`"$(date +%s)"`),
    sh`systemd-run --quiet --collect --unit=${rollbackUnit(plan.id)} --on-active=${`${window}s`} --timer-property=AccuracySec=1s /bin/sh ${`${d}/restore.sh`} timer`,
    sh`systemd-run --quiet --collect --unit=${applyUnit(plan.id)} /bin/sh ${`${d}/change.sh`}`,
  ]);
}

/**
 * The confirm: wins the decision (or says the rollback did: exit 5), stops the timer, removes the boot guard and
 * the transaction. Idempotent: a transaction already confirmed and removed confirms again (exit 0, "gone").
 */
export function confirmScript(id: string): Shell {
  const d = txnDir(id);
  return join('&&', [
    sh`{ [ -d ${d} ] || { echo gone; exit 0; }; }`,
    sh`{ mkdir ${`${d}/decided`} 2>/dev/null && ${writeMarker(`${d}/decided/which`, sh`confirmed`)} || [ "$(cat ${`${d}/decided/which`} 2>/dev/null)" = confirmed ] || { echo rolled-back; exit 5; }; }`,
    sh`{ systemctl stop ${`${rollbackUnit(id)}.timer`} 2>/dev/null || true; }`,
    sh`rm -f ${bootGuardLink(id)} ${bootGuardPath(id)} && systemctl daemon-reload`,
    sh`rm -rf ${d}`,
    sh`echo "$(date +%s) ${id} confirmed" >> ${TXN_JOURNAL}`,
    sh`echo confirmed`,
  ]);
}

export type TxnState =
  /** No such transaction (never armed, or confirmed and removed). */
  | { state: 'none' }
  /** Armed and not decided; `applied`: the change's exit status once it ran. */
  | { state: 'armed'; applied: number | null; timerActive: boolean }
  | { state: 'rolled-back'; done: boolean; applied: number | null }
  | { state: 'confirmed' };

/** Prints one line: `none`, or `<decided|-> <apply.rc|-> <rolled-back epoch|-> <timer active|inactive>`. */
export function statusScript(id: string): Shell {
  const d = txnDir(id);
  // A marker is written atomically (writeMarker); an empty read still prints `-`, never an empty field.
  const field = (path: string): Shell => sh`"$(v=$(cat ${path} 2>/dev/null); echo "\${v:--}")"`;
  return sh`if [ -d ${d} ]; then printf '%s %s %s %s\n' ${field(`${d}/decided/which`)} ${field(`${d}/apply.rc`)} ${field(`${d}/rolled-back`)} "$(v=$(systemctl is-active ${`${rollbackUnit(id)}.timer`} 2>/dev/null); echo "\${v:-unknown}")"; else echo none; fi`;
}

export function parseTxnStatus(text: string): TxnState | undefined {
  const line = text.trim();
  if (line === 'none') return { state: 'none' };
  const m = /^(confirmed|rolled-back|-) (-?\d+|-) (\d+|-) (\S+)$/.exec(line);
  if (!m) return undefined;
  const applied = m[2] === '-' ? null : Number(m[2]);
  if (m[1] === 'confirmed') return { state: 'confirmed' };
  if (m[1] === 'rolled-back') return { state: 'rolled-back', done: m[3] !== '-', applied };
  return { state: 'armed', applied, timerActive: m[4] === 'active' };
}

/** The transaction's log (tail), for error messages. */
export function logScript(id: string): Shell {
  return sh`tail -n 20 ${`${txnDir(id)}/log`} 2>/dev/null || true`;
}

/**
 * Gives up a transaction whose arm was cut off half-way (the arming command timed out or its session dropped): when
 * no timer was armed, no rollback runs and the change never started, nothing on the host changed — the boot guard
 * and the directory are removed (a journal line says so) and `abandoned` is printed, so a retry can arm afresh.
 * Anything else prints `kept` (an armed transaction runs its course) or `none`.
 */
export function abandonScript(id: string): Shell {
  const d = txnDir(id);
  return join(';', [
    sh`if ! [ -d ${d} ]; then echo none; exit 0; fi`,
    sh`if systemctl is-active --quiet ${`${rollbackUnit(id)}.timer`} ${`${rollbackUnit(id)}.service`} ${`${applyUnit(id)}.service`} || [ -e ${`${d}/apply.rc`} ] || grep -q 'change: start' ${`${d}/log`} 2>/dev/null; then echo kept; exit 0; fi`,
    sh`mkdir ${`${d}/decided`} 2>/dev/null || { echo kept; exit 0; }`,
    writeMarker(`${d}/decided/which`, sh`abandoned`),
    sh`rm -f ${bootGuardLink(id)} ${bootGuardPath(id)}`,
    sh`systemctl daemon-reload`,
    sh`rm -rf ${d}`,
    sh`echo "$(date +%s) ${id} abandoned" >> ${TXN_JOURNAL}`,
    sh`echo abandoned`,
  ]);
}

/** Removes a transaction the host rolled back, once the controller verified the rollback (its record stays in the journal). */
export function cleanupScript(id: string): Shell {
  const d = txnDir(id);
  return sh`if [ "$(cat ${`${d}/decided/which`} 2>/dev/null)" = rolled-back ] && [ -e ${`${d}/rolled-back`} ]; then rm -rf ${d}; fi`;
}
