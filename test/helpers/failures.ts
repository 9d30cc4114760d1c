/** Assertions on rejections: the tests want the typed error a step or workflow failed with, not just "it threw". */
import assert from 'node:assert/strict';
import { ApplicationFailure } from '@temporalio/common';

/** The error `p` rejects with; fails the test if it resolves. */
export async function rejectionOf(p: Promise<unknown>, expected = 'a failure'): Promise<unknown> {
  return p.then(
    () => assert.fail(`expected ${expected}`),
    (e: unknown) => e,
  );
}

/** The ApplicationFailure `p` rejects with (a step's typed error as Temporal carries it); fails the test otherwise. */
export async function applicationFailureOf(p: Promise<unknown>, expected = 'the step to fail'): Promise<ApplicationFailure> {
  const err = await rejectionOf(p, expected);
  assert.ok(err instanceof ApplicationFailure, String(err));
  return err;
}
