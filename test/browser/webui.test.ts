/**
 * The Temporal Web UI, as an operator opens it: headless Chromium (Debian's `chromium`, driven by playwright-core)
 * on the dev server's own UI. One onboarding that succeeded and one that failed and was rolled back (fake hosts,
 * test/helpers/fake-steps.ts; the worker stays up so the UI's "current details" query is answered).
 *
 * Checked on the pages: the static summary and details, the live current details (step table, failure
 * timeline), the search attributes, and the step activities by name with their summaries — checkCabling,
 * configureBond… and, for the failed one, rollbackBond… Screenshots go to a temporary directory, or, with
 * UNDERLAY_SCREENSHOT_DIR=docs/img, refresh the ones docs/inspection.md shows.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Browser, Locator, Page } from 'playwright-core';
import { createActivities } from '../../src/activities';
import { startOnboarding } from '../../src/cli/onboarding';
import { VerificationError } from '../../src/common/errors';
import { loadSpecFile } from '../../src/spec/load';
import { stepSummary } from '../../src/steps';
import { createWorker } from '../../src/workers/worker';
import { FakeFleet, fleetSteps, nullConnector } from '../helpers/fake-steps';
import { startTemporal, workflowBundle, runInBackground, type BackgroundWorker } from '../helpers/temporal';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const root = resolve(__dirname, '../..');
const shots = process.env.UNDERLAY_SCREENSHOT_DIR ? resolve(root, process.env.UNDERLAY_SCREENSHOT_DIR) : mkdtempSync(join(tmpdir(), 'underlay-webui-'));

let env: TestWorkflowEnvironment;
let worker: BackgroundWorker | undefined;
let browser: Browser;
let ui: string;
const taskQueue = `webui-${process.pid}`;
const fleet = new FakeFleet();
const runs: Record<'onboarded' | 'rolledBack', { workflowId: string; runId: string; id: string }> = {} as never;
let spec: Awaited<ReturnType<typeof loadSpecFile>>;

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}

describe('the Web UI shows what underlay records', () => {
  before(async () => {
    const uiPort = await freePort();
    [env, spec] = await Promise.all([startTemporal({ uiPort }), loadSpecFile('examples/kvm-macvtap.yaml')]);
    ui = `http://127.0.0.1:${uiPort}`;
    worker = runInBackground(
      await createWorker({
        connection: env.nativeConnection,
        namespace: 'default',
        taskQueue,
        workflowBundle: await workflowBundle(),
        activities: createActivities(nullConnector, fleetSteps(fleet)),
      }),
    );
    const ok = { ...spec, id: 'kvm-r12-07' }; // the dev server is this file's own: ids need no suffix
    const bad = { ...spec, id: 'kvm-r12-08' };
    fleet.host(bad.id).faults = [{ step: 'sriov', phase: 'verify', error: () => new VerificationError('sriov_numvfs is 8, expected 16', { step: 'sriov' }) }];
    const [h1, h2] = await Promise.all([startOnboarding(env.client, ok, { taskQueue }), startOnboarding(env.client, bad, { taskQueue })]);
    await Promise.all([h1.result(), h2.result().catch(() => undefined)]);
    runs.onboarded = { workflowId: h1.workflowId, runId: h1.firstExecutionRunId, id: ok.id };
    runs.rolledBack = { workflowId: h2.workflowId, runId: h2.firstExecutionRunId, id: bad.id };
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM });
    mkdirSync(shots, { recursive: true });
  });
  after(async () => {
    await browser?.close();
    await worker?.stop();
    await env?.teardown();
    if (!process.env.UNDERLAY_SCREENSHOT_DIR) rmSync(shots, { recursive: true, force: true });
  });

  /** A workflow page's tab, once the UI has loaded it (the first load compiles nothing but is slow on 2 cores). */
  async function open(run: { workflowId: string; runId: string }, tab: 'user-metadata' | 'search-attributes' | 'timeline' | 'history'): Promise<Page> {
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    await page.goto(`${ui}/namespaces/default/workflows/${run.workflowId}/${run.runId}/${tab}`, { timeout: 60_000 });
    await page.getByText(run.workflowId).first().waitFor({ timeout: 60_000 });
    return page;
  }

  /** The text of the page and of its frames (the UI renders summaries and details as markdown in iframes). */
  async function allText(page: Page): Promise<string> {
    const texts = await Promise.all(
      page.frames().map((f) =>
        f
          .locator('body')
          .innerText()
          .catch(() => ''),
      ),
    );
    return texts.join('\n');
  }

  async function textUntil(page: Page, re: RegExp, what: string): Promise<string> {
    const end = Date.now() + 60_000;
    let text = '';
    while (Date.now() < end) {
      text = await allText(page);
      if (re.test(text)) return text;
      await page.waitForTimeout(500);
    }
    assert.fail(`the page never showed ${what} (${re}); it shows:\n${text.slice(0, 3000)}`);
  }

  /** The workflow's own content without the navigation column (smaller, and what matters), or one panel of it. */
  async function shot(page: Page, name: string, panel?: Locator): Promise<void> {
    const file = join(shots, name);
    if (panel) await panel.screenshot({ path: file });
    else await page.screenshot({ path: file, clip: { x: 270, y: 60, width: 1000, height: 790 } });
    assert.ok(statSync(file).size < 250_000, `${name} stays small (${statSync(file).size} bytes)`);
  }

  /** The markdown iframe whose text matches (the current details is one of them). */
  async function markdownFrame(page: Page, re: RegExp): Promise<Locator> {
    const frames = page.locator('iframe');
    for (let i = 0; i < (await frames.count()); i++) {
      const text = await frames
        .nth(i)
        .contentFrame()
        .locator('body')
        .innerText()
        .catch(() => '');
      if (re.test(text)) return frames.nth(i);
    }
    assert.fail(`no iframe shows ${re}`);
  }

  test('an onboarding that succeeded: summary, details, current details, search attributes, named step activities', async () => {
    const run = runs.onboarded;
    const meta = await open(run, 'user-metadata');
    const text = await textUntil(meta, /kvm-r12-07 · onboarded/, 'the current details');
    assert.match(text, new RegExp(`Onboard ${run.id} → kvm \\(fra1/r12\\)`));
    assert.match(text, /Planned steps/);
    assert.ok(text.includes(`bond — ${stepSummary('bond', spec)}`), 'the details list each step with its summary');
    assert.match(text, new RegExp(`✓ network attach\\s+done · [\\d.]+ s\\s+${stepSummary('attach', spec).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    await shot(meta, 'webui-onboarded-metadata.png');
    await meta.close();

    const sa = await open(run, 'search-attributes');
    const saText = await textUntil(sa, /"UnderlayOutcome": "onboarded"/, 'the search attributes');
    for (const kv of [
      `"UnderlayServerId": "${run.id}"`,
      '"UnderlaySite": "fra1"',
      '"UnderlayRack": "r12"',
      '"UnderlayHypervisor": "kvm"',
      '"UnderlayStep": "done"',
    ])
      assert.ok(saText.includes(kv), kv);
    await sa.close();

    const tl = await open(run, 'timeline');
    const tlText = await textUntil(tl, /attachNetwork/, 'the step activities');
    for (const [activity, step] of [
      ['checkCabling', 'cable'],
      ['configureBond', 'bond'],
      ['configureVlans', 'vlan'],
      ['enableSriov', 'sriov'],
      ['installHypervisor', 'hypervisor'],
      ['attachNetwork', 'attach'],
    ] as const) {
      assert.ok(tlText.includes(`${activity} • ${stepSummary(step, spec)}`), `${activity} with its summary`);
    }
    assert.doesNotMatch(tlText, /rollback/);
    await tl.close();
  });

  test('an onboarding rolled back: the failure timeline and the rollback activities by name', async () => {
    const run = runs.rolledBack;
    const meta = await open(run, 'user-metadata');
    const text = await textUntil(meta, /kvm-r12-08 · failed/, 'the current details');
    assert.match(text, /Timeline/);
    assert.match(text, /SR-IOV enable\s+failed · 1 attempt · [\d.]+ s\s+step sriov: sriov_numvfs is 8, expected 16\s+restored · [\d.]+ s/);
    assert.match(text, /bond\s+done · 1 attempt · [\d.]+ s\s+–\s+restored · [\d.]+ s/);
    await shot(meta, 'webui-rolled-back-details.png', await markdownFrame(meta, /Timeline/));
    await meta.close();

    const sa = await open(run, 'search-attributes');
    const saText = await textUntil(sa, /"UnderlayOutcome": "failed"/, 'the search attributes');
    assert.ok(saText.includes('"UnderlayStep": "rollback:cable"'));
    await sa.close();

    const tl = await open(run, 'timeline');
    const tlText = await textUntil(tl, /rollbackCabling/, 'the rollback activities');
    for (const a of ['checkCabling', 'configureBond', 'configureVlans', 'enableSriov', 'rollbackSriov', 'rollbackVlans', 'rollbackBond', 'rollbackCabling'])
      assert.ok(tlText.includes(`${a} • `), a);
    assert.ok(tlText.includes(`rollbackBond • undo bond: restore the pre-state of ${stepSummary('bond', spec)}`));
    assert.doesNotMatch(tlText, /installHypervisor/, 'the steps after the failure never ran');
    // The chart sits below the input and result panels: bring its heading to the top first.
    await tl
      .getByRole('heading', { name: /^Timeline/ })
      .first()
      .evaluate((el) => el.scrollIntoView({ block: 'start' }));
    await shot(tl, 'webui-rolled-back-timeline.png');
    await tl.close();
  });
});
