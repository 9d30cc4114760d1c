/**
 * A real Prometheus (Debian's `prometheus`) and node_exporter (`prometheus-node-exporter`, textfile collector only)
 * on 127.0.0.1 with a temporary config and storage, scraping every second: what the monitoring tests and the lab's
 * health faults query. One place starts them, waits for them and queries them. And the text exposition format a
 * worker's metrics endpoint serves, for tests that scrape it directly (parseMetrics, find, total).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, sleep } from './sshd';

export interface PromSeries {
  metric: Record<string, string>;
  value: [number, string];
}

export interface PrometheusStack {
  url: string;
  /** Instant query; fails the test on an API error. */
  query(expr: string): Promise<PromSeries[]>;
  /** Waits (bounded: 20 s) until `expr` returns a series whose value satisfies `ok`. */
  until(expr: string, ok: (v: number) => boolean, what: string): Promise<PromSeries[]>;
  stop(): Promise<void>;
}

export interface PrometheusOptions {
  /** Scratch directory: config, storage (tsdb/). */
  work: string;
  /** The node_exporter textfile collector's directory. */
  textfileDir: string;
  /** The rule file Prometheus evaluates. */
  rulesFile: string;
  /** Scraped as job `underlay-worker` (host:port of a worker's metrics endpoint). */
  workerAddress?: string;
}

/** Starts node_exporter and Prometheus and waits (bounded: 30 s) until Prometheus answers. */
export async function startPrometheus(opts: PrometheusOptions): Promise<PrometheusStack> {
  const children: ChildProcess[] = [];
  const start = (cmd: string, args: string[]) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    child.on('exit', (code) => {
      if (code && code !== 0) process.stderr.write(`${cmd} exited ${code}: ${err}\n`);
    });
    children.push(child);
  };
  const [nodePort, promPort] = [await freePort(), await freePort()];
  mkdirSync(opts.textfileDir, { recursive: true });
  mkdirSync(join(opts.work, 'tsdb'), { recursive: true });
  writeFileSync(
    join(opts.work, 'prometheus.yml'),
    [
      'global: { scrape_interval: 1s, evaluation_interval: 1s }',
      `rule_files: ['${opts.rulesFile}']`,
      'scrape_configs:',
      ...(opts.workerAddress ? [`  - { job_name: underlay-worker, static_configs: [{ targets: ['${opts.workerAddress}'] }] }`] : []),
      `  - { job_name: node, static_configs: [{ targets: ['127.0.0.1:${nodePort}'] }] }`,
      '',
    ].join('\n'),
  );
  start('prometheus-node-exporter', [
    `--web.listen-address=127.0.0.1:${nodePort}`,
    '--collector.disable-defaults',
    '--collector.textfile',
    `--collector.textfile.directory=${opts.textfileDir}`,
  ]);
  start('prometheus', [
    `--config.file=${join(opts.work, 'prometheus.yml')}`,
    `--storage.tsdb.path=${join(opts.work, 'tsdb')}`,
    `--web.listen-address=127.0.0.1:${promPort}`,
    '--log.level=warn',
  ]);
  const url = `http://127.0.0.1:${promPort}`;
  const stack: PrometheusStack = {
    url,
    async query(expr) {
      const res = await fetch(`${url}/api/v1/query?${new URLSearchParams({ query: expr })}`);
      const body = (await res.json()) as { status: string; error?: string; data?: { result: PromSeries[] } };
      assert.equal(body.status, 'success', `${expr}: ${body.error}`);
      return body.data!.result;
    },
    async until(expr, ok, what) {
      let last: PromSeries[] = [];
      for (let i = 0; i < 80; i++) {
        last = await stack.query(expr);
        if (last.some((s) => ok(Number(s.value[1])))) return last;
        await sleep(250);
      }
      assert.fail(`${what}: ${expr} → ${JSON.stringify(last)}`);
    },
    async stop() {
      for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
      await sleep(300);
    },
  };
  for (let i = 0; i < 120; i++) {
    if (
      await fetch(`${url}/-/ready`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return stack;
    await sleep(250);
  }
  await stack.stop();
  throw new Error(`Prometheus did not answer on ${url} within 30 s`);
}

/** The Prometheus text exposition format, as a worker's metrics endpoint serves it (scraped by tests directly). */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the exposition text (enough of it: no escaped quotes in our label values). */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"/g)].map((l) => [l[1]!, l[2]!]));
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The samples of `name` whose labels include `labels`. */
export function find(samples: Sample[], name: string, labels: Record<string, string>): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/** The sum over the series of `name` whose labels include `labels` (0 when there are none). */
export function total(text: string, name: string, labels: Record<string, string>): number {
  return find(parseMetrics(text), name, labels).reduce((sum, s) => sum + s.value, 0);
}
