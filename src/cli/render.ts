/** Plain-text rendering of an onboarding's progress for terminals and logs. */
import { STEP_TITLES, STEPS } from '../common/steps';
import type { OnboardingStatus, StepState } from '../workflows/messages';

const MARK: Record<StepState, string> = {
  pending: '·',
  skipped: '-',
  running: '▶',
  done: '✓',
  unchanged: '=',
  failed: '✗',
  compensating: '↺',
  compensated: '↩',
  'compensation-failed': '!',
  'not-run': '·',
};

function elapsed(a?: string, b?: string): string {
  if (!a) return '';
  const ms = (b ? Date.parse(b) : Date.now()) - Date.parse(a);
  return ms >= 0 ? `${(ms / 1000).toFixed(1)}s` : '';
}

export function renderStatus(s: OnboardingStatus): string {
  const rows = STEPS.map((step) => {
    const st = s.steps[step];
    const detail = [st.summary, st.attempts && st.attempts > 1 ? `${st.attempts} attempts` : '', st.error?.split('\n')[0]].filter(Boolean).join(' · ');
    return `  ${MARK[st.state]} ${STEP_TITLES[step].padEnd(18)} ${st.state.padEnd(19)} ${elapsed(st.startedAt, st.endedAt).padStart(7)}  ${detail}`.trimEnd();
  });
  return [`${s.serverId}: ${s.phase}${s.currentStep ? ` (${s.currentStep})` : ''}`, ...rows].join('\n');
}
