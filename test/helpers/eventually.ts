/**
 * Waits until `fn` answers something truthy (returned), bounded in time; errors meanwhile are retried and the last
 * one named on timeout. For what a real counterpart settles on a moment later (visibility listing a workflow that
 * just closed, a search attribute written by the last task).
 */
export async function eventually<T>(what: string, fn: () => Promise<T | undefined | null | false>, timeoutMs = 20_000, everyMs = 200): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
