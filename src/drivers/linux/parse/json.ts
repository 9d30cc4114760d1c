/** Shared helper: parse JSON command output against a zod schema, or throw a typed UnexpectedOutputError. */
import type { z } from 'zod';
import { UnexpectedOutputError, type ErrorContext } from '../../../common/errors';

export function parseJsonOutput<T extends z.ZodType>(schema: T, text: string, what: string, ctx: ErrorContext = {}): z.output<T> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new UnexpectedOutputError(`${what}: not JSON`, { ...ctx, observed: text.slice(0, 200) });
  }
  const r = schema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new UnexpectedOutputError(`${what}: ${issue ? `${issue.path.join('.')}: ${issue.message}` : 'bad shape'}`, {
      ...ctx,
      observed: text.slice(0, 200),
    });
  }
  return r.data;
}
