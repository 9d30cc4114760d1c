/** Field-by-field difference of two plain JSON states, as Changes with dotted paths. */
import type { Change } from './step';

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function diffState(from: unknown, to: unknown, path = ''): Change[] {
  if (isRecord(from) && isRecord(to)) {
    const keys = [...new Set([...Object.keys(from), ...Object.keys(to)])].sort();
    return keys.flatMap((k) => diffState(from[k], to[k], path ? `${path}.${k}` : k));
  }
  const same = JSON.stringify(from ?? null) === JSON.stringify(to ?? null);
  return same ? [] : [{ field: path || '(state)', from: from ?? null, to: to ?? null }];
}
