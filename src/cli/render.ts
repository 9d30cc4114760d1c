/** Plain-text rendering of an onboarding's progress for terminals and logs. */
import { STEP_TITLES, STEPS, type StepName } from '../steps';
import { isFinalPhase, STEP_MARK, type OnboardingStatus, type TimelineEntry } from '../workflows/messages';

/** Braille spinner frames for the running step (terminals only). */
export const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/** What the server knows about the step activity running now (describe → pending activities). */
export interface LiveActivity {
  activityType: string;
  attempt: number;
  /** The last attempt's error, while the activity waits for its retry. */
  lastFailure?: string;
  /** The step's latest progress note (from its heartbeat): what it waits for, how long, the last output line. */
  note?: string;
}

export interface RenderOptions {
  /** Clock for the running step's elapsed time (default Date.now()). */
  now?: number;
  /** Animation frame: the running step gets a spinner instead of ▶. */
  frame?: number;
  /** The running step's activity, for its attempt number and last error. */
  live?: LiveActivity;
}

function seconds(ms: number): string {
  if (ms < 0) return '';
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const m = Math.floor(ms / 60_000);
  return `${m}m${String(Math.floor((ms % 60_000) / 1000)).padStart(2, '0')}s`;
}

function elapsed(a: string | undefined, b: string | undefined, now: number): string {
  if (!a) return '';
  return seconds((b ? Date.parse(b) : now) - Date.parse(a));
}

/** `[██████░░░░░░░░░░░░] 2/6`: steps that hold (done or unchanged) of the steps this onboarding runs. */
export function progressBar(s: OnboardingStatus, width = 18): string {
  const planned = STEPS.filter((st) => s.steps[st].state !== 'skipped');
  const held = planned.filter((st) => ['done', 'unchanged'].includes(s.steps[st].state)).length;
  const fill = planned.length ? Math.round((held / planned.length) * width) : 0;
  return `[${'█'.repeat(fill)}${'░'.repeat(width - fill)}] ${held}/${planned.length}`;
}

function timelineRow(e: TimelineEntry): string {
  const rb = e.compensation
    ? ` → rollback ${e.compensation.outcome}${e.compensation.error ? ` (${e.compensation.error.split('\n')[0]})` : ''} in ${seconds(e.compensation.durationMs)}`
    : '';
  const tries = e.attempts === null ? '? attempts' : `${e.attempts} attempt${e.attempts === 1 ? '' : 's'}`;
  return `    ${STEP_TITLES[e.step].padEnd(18)} ${e.result.padEnd(9)} ${tries.padEnd(11)} ${seconds(e.durationMs).padStart(7)}${e.error ? `  ${e.error.split('\n')[0]}` : ''}${rb}`;
}

export function renderStatus(s: OnboardingStatus, o: RenderOptions = {}): string {
  const now = o.now ?? Date.now();
  const c = s.control;
  const rows = STEPS.map((step: StepName) => {
    const st = s.steps[step];
    const running = st.state === 'running' || st.state === 'compensating';
    const mark = running && o.frame !== undefined ? SPINNER[o.frame % SPINNER.length]! : STEP_MARK[st.state];
    const liveAttempt = running && o.live ? o.live.attempt : undefined;
    const attempts = liveAttempt ?? st.attempts;
    const gate = c?.approvalBefore.includes(step)
      ? c.approvals.find((a) => a.step === step)
        ? `approved by ${c.approvals.find((a) => a.step === step)!.by}`
        : 'needs approval'
      : '';
    const detail = [st.summary, gate, attempts && attempts > 1 ? (running ? `attempt ${attempts}` : `${attempts} attempts`) : '', st.error?.split('\n')[0]]
      .filter(Boolean)
      .join(' · ');
    const row = `  ${mark} ${STEP_TITLES[step].padEnd(18)} ${st.state.padEnd(19)} ${elapsed(st.startedAt, st.endedAt, now).padStart(7)}  ${detail}`.trimEnd();
    // The running step's last error, while its activity waits for the next attempt, and its latest progress
    // note (waiting for a package lock, the install job's last line), each on a line of its own.
    const extra = [
      ...(running && o.live?.lastFailure ? [`      ↻ attempt ${o.live.attempt} after: ${o.live.lastFailure.split('\n')[0]}`] : []),
      ...(running && o.live?.note ? [`      · ${o.live.note.split('\n')[0]}`] : []),
    ];
    return [row, ...extra].join('\n');
  });
  const planned = STEPS.some((st) => s.steps[st].state !== 'skipped');
  const where = c?.waitingBefore ? ` (before ${c.waitingBefore})` : s.currentStep ? ` (${s.currentStep})` : '';
  const lines = [`${s.serverId}: ${s.phase}${where}${planned ? `  ${progressBar(s)}` : ''}`, ...rows];
  if (c) {
    const w = c.waitingBefore;
    if (s.phase === 'paused' && w) lines.push(`  ⏸ paused before ${STEP_TITLES[w]} by ${c.pause?.by ?? '?'}: resume with \`underlay resume ${s.serverId}\``);
    else if (c.pause && !isFinalPhase(s.phase)) lines.push(`  ⏸ pausing before the next step (asked by ${c.pause.by})`);
    if (s.phase === 'awaiting-approval' && w) lines.push(`  ⏳ ${STEP_TITLES[w]} awaits approval: \`underlay approve ${s.serverId} --step ${w}\``);
    if (c.cancel)
      lines.push(`  ✗ cancelled by ${c.cancel.by}${c.cancel.reason ? ` (${c.cancel.reason})` : ''}${s.phase === 'compensating' ? ': rolling back' : ''}`);
  }
  if (s.waitingForWorker) lines.push(`  ⏳ since ${s.waitingForWorker.since.slice(11, 19)}Z ${s.waitingForWorker.detail}`);
  if (s.timeline?.length && s.phase !== 'onboarded' && s.phase !== 'running' && s.phase !== 'paused' && s.phase !== 'awaiting-approval')
    lines.push('  timeline:', ...s.timeline.map(timelineRow));
  return lines.join('\n');
}
