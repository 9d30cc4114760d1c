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
worker over the **in-memory simulated hosts** of test/helpers/fake-steps.ts: the real activity runner
(observe / plan / apply / verify, retries, heartbeats) with no SSH and no host work, so the figures are the engine's
own cost. Each table names its baseline, measured in the same run, and gives ratios against it.

The engine scenario runs its worker in a **process of its own** (bench/engine-worker.ts: \`createWorker\` with the
production options, node with tsx as \`bin/underlay\` runs it, the simulated hosts in that process since they are
the activities' counterpart), one process per row pair, and reports that process's peak RSS — the kernel's
high-water mark (\`VmHWM\`, reset through \`/proc/<pid>/clear_refs\` before each batch) — apart from the bench
process's (the client). It measures the options before tuning (node's own heap sizing, a cache of 500: the
baseline) and the tuned defaults side by side in one run. At the medium and full sizes the worker bundles its
workflows at start, as \`underlay worker\` does (webpack in its process: what it leaves resident counts); the CI smoke
loads the prebuilt bundle instead, to save 5–10 s of CPU per worker. The fleet and drift scenarios share one such
worker process with the tuned production options (the sweep checks the hosts the fleet onboarded, which live in
it), its peak reset at each scenario's start.

## The lab benchmark (\`--only lab\`, by hand, never in CI)

\`npm run bench -- --only lab [--write]\` (bench/lab-onboarding.ts): network onboarding of lab hosts — cable check,
802.3ad bond, two VLANs, 4 SR-IOV VFs, the hypervisor step and a libvirt macvtap network — by three contenders,
measured one after the other in one run against the same hosts, each host put back to one VM snapshot (QEMU
savevm/loadvm, lab/snapshot.sh) before each contender. Sizes \`smoke\`/\`medium\`: 1 host; \`full\`: a 3-server lab,
rows for 1 and for 3 hosts. Hosts boot the lab's \`ifupdown\` image: ifupdown runs the network and the KVM set is
installed, so the hypervisor step only verifies (packages, \`/dev/kvm\`, libvirtd, \`virsh version\`).

1. **raw SSH** (the baseline, the lower bound): a bash script generated from the same spec
   (bench/lab-contenders.ts) with the same commands — the files rendered by underlay's own functions, \`ifdown\`/
   \`ifup\`, sysfs, \`udevadm\`, \`virsh\` — and the same waits with the same bounds (LLDP and carrier, LACP converged,
   both gateways answer, VF count, libvirtd, the network active), piped to \`bash -s\` over **one** plain \`ssh\`
   session per host, hosts in parallel. No observation beyond the waits, no backups, no record: nothing to undo with.
2. **underlay**: the real \`onboardServer\` workflow on the bench's Temporal dev server and a real in-process worker
   (the pooled SSH connector), as test/lab/onboard.lab.test.ts runs it. Its notes break server1's time down by
   host command (every command's wire time through \`observeCommands\`, src/drivers/remote.ts): per step the count
   and summed time, and the slowest commands.
3. **ansible-playbook**: ansible-core 2.19.14 (pinned, from PyPI by scripts/install-ansible.sh into the tool
   cache; the scenario runs it, \`npm run setup\` does not), one play over all hosts (default linear strategy, forks
   ≥ hosts), \`ansible.builtin\` modules only (\`copy\`, \`command\`, \`shell\` with \`until\` for the waits, \`file\`),
   no fact gathering, pipelining on, OpenSSH with its default ControlPersist, the lab's pinned \`known_hosts\`
   with \`StrictHostKeyChecking=yes\` (host key checking stays on). Ansible's modules need python3 on the target:
   the \`ifupdown\` image already has it (openvswitch-switch pulls in python3-openvswitch); on an image without
   it, the scenario downloads the bookworm python3 .debs with this host's apt (same suite as the image), copies
   them in and installs them with dpkg before the snapshot.

After each contender the same independent reading of each host (LACP partner = the switch's port channel, both
ports in the active aggregator, both gateways answer, the VF count, the libvirt network active and autostarted, the
SHA-256 of \`/etc/network/interfaces\`, \`interfaces.d/*\` and the udev rule) must hold, and its fingerprint is compared
with the raw script's. SSH handshakes are sshd's accepted logins in each guest's journal during the run. The lab
lives in \`UNDERLAY_LAB_DIR\` / \`UNDERLAY_LAB_PORT_BASE\` (default \`.lab-bench\`, 26200); a lab already running
there with enough \`ifupdown\` servers is reused and put back to the \`bench-clean\` snapshot the run that booted it
took (refused without one), otherwise one is booted (≈ 2–6 min), snapshotted, and stopped afterwards.`;

/**
 * docs/benchmarks.md after a run: the intro, then the run's block. A run of the default scenarios replaces every
 * measured section; a run with `--only` replaces (or appends) only its own section, marked by the scenario names,
 * and keeps the others.
 */
export function benchmarksDoc(current: string, block: string, only?: string[]): string {
  if (!only?.length) return `${BENCHMARKS_INTRO}\n\n${block}`;
  const key = [...only].sort().join(',');
  const open = `<!-- bench --only ${key} -->`;
  const close = `<!-- /bench --only ${key} -->`;
  const marked = `${open}\n${block.trimEnd()}\n${close}\n`;
  const at = current.indexOf('\n## Measured');
  let rest = at >= 0 ? current.slice(at + 1) : '';
  const a = rest.indexOf(open);
  const b = rest.indexOf(close);
  if (a >= 0 && b > a) rest = `${rest.slice(0, a)}${marked}${rest.slice(b + close.length + 1)}`;
  else rest = `${rest.trimEnd()}\n\n${marked}`;
  return `${BENCHMARKS_INTRO}\n\n${rest.trimStart()}`;
}
