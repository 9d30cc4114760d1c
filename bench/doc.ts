/** The fixed part of docs/benchmarks.md (the measured tables follow it). */
export const BENCHMARKS_INTRO = `# Benchmarks

\`npm run bench\` (bench/) measures underlay's engine on this machine. Sizes: \`smoke\` (default; CI runs it through
test/bench/bench.test.ts, which checks that every table is complete, never a timing), \`medium\` and \`full\`
(by hand: \`npm run bench -- full --write\`). \`--only engine,fleet,drift\` picks scenarios; \`--write\` rewrites this file.

| scenario | smoke | medium | full |
|---|---:|---:|---:|
| engine: onboardings at once on one worker | 20 | 200 | 1,000 |
| fleet: servers (cap, events per run) | 30 (10, 200) | 1,000 (100, 5,000) | 10,000 (200, 5,000) |
| drift sweep: servers (checks at once, files per page) | 30 (10, 10) | 1,000 (50, 100) | 10,000 (100, 100) |

Every scenario runs against the pinned Temporal dev server (\`temporal server start-dev\`, in-memory SQLite) and one
in-process worker over the **in-memory simulated hosts** of test/helpers/fake-steps.ts: the real activity runner
(observe / plan / apply / verify, retries, heartbeats) with no SSH and no host work, so the figures are the engine's
own cost. Each table names its baseline, measured in the same run, and gives ratios against it. Peak RSS is the
bench process's (worker, client and simulated hosts together) and the scenarios run in order in that one process, so
a later scenario's peak includes what the earlier ones left behind: an upper bound of a worker's, not its own.

Not here yet: the lab benchmark (network onboarding of 1 and 3 lab hosts, underlay vs a raw-SSH script vs
\`ansible-playbook\`). It is one more entry in \`SCENARIOS\` (bench/scenarios.ts) with \`needs: 'lab'\` — skipped
unless named with \`--only\` — that boots the lab (lab/README.md, its own \`UNDERLAY_LAB_DIR\` and port base), runs
the three contenders against the same hosts, restoring them between runs, and returns a Table with the raw-SSH
time as its baseline.`;
