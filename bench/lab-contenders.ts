/**
 * The two contenders the lab benchmark runs next to underlay, generated from the same validated spec: a raw-SSH
 * script (the lower bound: the same commands and the same waits, one plain `ssh` session per host, no
 * observation beyond what the waits read, no backups, no state kept) and an Ansible playbook (ansible.builtin
 * modules only). Both reach the end state underlay reaches on a Debian host whose network is run by ifupdown with
 * the KVM set installed (the lab's `ifupdown` image): the same files, byte for byte — rendered by the same
 * functions as underlay's (src/drivers/linux/persist, src/drivers/linux/sriov, src/drivers/linux/libvirt) — and
 * the same runtime: the 802.3ad bond with LACP converged, the VLANs answering their gateways, the VFs, the libvirt
 * macvtap network active and autostarted.
 *
 * Pure: nothing here touches a host. What a spec needs that these do not cover (another network manager, an OVS
 * attach, vfio-pci, a VLAN not on the bond) is refused by name rather than generated wrong.
 */
import { stringify } from 'yaml';
import { bondConfig } from '../src/activities/bond';
import { linuxAttachWant } from '../src/activities/attach';
import { networkXml } from '../src/drivers/linux/libvirt';
import { DISABLED_MARK } from '../src/drivers/linux/persist/ifupdown-parse';
import { renderBondFiles, renderVlanFiles } from '../src/drivers/linux/persist';
import { sriovRulePath, sriovUdevRule } from '../src/drivers/linux/sriov';
import { join, sh, type Shell } from '../src/drivers/shell';
import { vlanIfName, type ServerSpec } from '../src/spec/server';

/** The waits, as underlay's steps bound them (src/activities/*: VERIFY constants), in seconds. */
export const WAITS = {
  cable: { timeout: 75, every: 3 },
  lacp: { timeout: 30, every: 1 },
  vlan: { timeout: 45, every: 2 },
  sriov: { timeout: 30, every: 1 },
  kvm: { timeout: 60, every: 2 },
  attach: { timeout: 20, every: 1 },
};

/** The Debian KVM set underlay's hypervisor step checks (and installs where missing: here it must be installed). */
export const KVM_PACKAGES = ['qemu-system-x86', 'libvirt-daemon-system', 'libvirt-clients'];

/** A placeholder for the PF's device name (read on the host) in the rendered udev rule. */
const DEVICE = '@UNDERLAY_PF_DEVICE@';

/** What both contenders need from the spec, checked once. */
export interface NetworkPlan {
  id: string;
  nics: Array<{ name: string; speedMbps?: number; lldp?: { switch: string; port: string } }>;
  bond: { name: string; members: string[]; lacp: boolean };
  bondFile: { path: string; content: string };
  vlans: Array<{ name: string; gateway?: string; address?: string; file: { path: string; content: string } }>;
  sriov: { pf: string; numVfs: number; rulePath: string; ruleBefore: string; ruleAfter: string };
  network: { name: string; xml: string; lower: string };
}

function refuse(field: string, expected: string, observed: unknown): never {
  throw new Error(`lab benchmark contenders: ${field}: expected ${expected}, observed ${JSON.stringify(observed)}`);
}

export function networkPlan(spec: ServerSpec): NetworkPlan {
  if (spec.hypervisor.kind !== 'kvm') refuse('hypervisor.kind', 'kvm', spec.hypervisor.kind);
  if (spec.hypervisor.packages) refuse('hypervisor.packages', 'the default KVM set', spec.hypervisor.packages);
  if (!['auto', 'ifupdown'].includes(spec.network.manager)) refuse('network.manager', 'ifupdown (or auto on an ifupdown host)', spec.network.manager);
  if (spec.network.management) refuse('network.management', 'management on its own NIC', 'a move onto the bond');
  const bond = spec.bond ?? refuse('bond', 'a bond section', undefined);
  if (bond.mode !== '802.3ad') refuse('bond.mode', '802.3ad', bond.mode);
  const sriov = spec.sriov ?? refuse('sriov', 'an sriov section', undefined);
  if (sriov.vfioPci) refuse('sriov.vfioPci', 'false (no vfio-pci binding)', true);
  const attach = spec.attach;
  if (attach?.kind !== 'macvtap') refuse('attach.kind', 'macvtap', attach?.kind);
  const { lower } = linuxAttachWant(spec);
  const vlanCfgs = spec.vlans.map((v) => {
    if (v.parent !== bond.name) refuse(`vlans[${v.id}].parent`, bond.name, v.parent);
    return { name: vlanIfName(v), parent: v.parent, id: v.id, ...(v.address ? { address: v.address } : {}) };
  });
  const [bondFile] = renderBondFiles('ifupdown', bondConfig(bond), spec.id);
  const vlanFiles = renderVlanFiles('ifupdown', vlanCfgs, spec.id, {});
  const rule = sriovUdevRule(spec.id, DEVICE, sriov.numVfs, false).split(DEVICE);
  if (rule.length !== 2) refuse('sriov', 'one device in the udev rule', rule.length - 1);
  return {
    id: spec.id,
    nics: spec.nics
      .filter((n) => n.cabled)
      .map((n) => ({ name: n.name, ...(n.speedMbps !== undefined ? { speedMbps: n.speedMbps } : {}), ...(n.lldp ? { lldp: n.lldp } : {}) })),
    bond: { name: bond.name, members: [...bond.members], lacp: true },
    bondFile: { path: bondFile!.path, content: bondFile!.content! },
    vlans: spec.vlans.map((v, i) => ({
      name: vlanIfName(v),
      ...(v.gateway ? { gateway: v.gateway } : {}),
      ...(v.address ? { address: v.address } : {}),
      file: { path: vlanFiles[i]!.path, content: vlanFiles[i]!.content! },
    })),
    sriov: { pf: sriov.pf, numVfs: sriov.numVfs, rulePath: sriovRulePath(sriov.pf), ruleBefore: rule[0]!, ruleAfter: rule[1]! },
    network: {
      name: attach.network,
      xml: networkXml({ name: attach.network, forwardMode: attach.mode, interfaces: [lower], bridge: null, virtualport: null }),
      lower,
    },
  };
}

// ---- shared shell fragments (the raw script runs them; the playbook runs the same as `shell` tasks) ------------

/**
 * awk that disables ifupdown definitions of the named interfaces in a file as underlay does
 * (src/drivers/linux/persist/ifupdown-parse.ts disableInterfaces): their `iface` stanzas and the `auto`/`allow-*`
 * lines naming only them get the marker. A line naming them next to others is refused (exit 3), not split.
 */
export function disableStanzasAwk(ifaces: readonly string[]): Shell {
  const program = `BEGIN { n = split(names, a, " "); for (i = 1; i <= n; i++) drop[a[i]] = 1 }
{ code = $0; sub(/#.*/, "", code); nf = split(code, w, /[ \\t]+/); first = (w[1] == "" ? 2 : 1)
  kw = w[first]
  if (kw ~ /^(iface|mapping|auto|allow-[a-z0-9-]+|source|source-directory|no-auto-down|no-scripts|rename)$/) dropped = 0
  if (kw == "iface") { dropped = (w[first + 1] in drop); print (dropped ? mark : "") $0; next }
  if (kw == "auto" || kw ~ /^allow-/) { k = 0; d = 0; for (i = first + 1; i <= nf; i++) if (w[i] != "") { k++; if (w[i] in drop) d++ }
    if (d && d < k) { print "mixed definition: " $0 > "/dev/stderr"; exit 3 }
    print (d ? mark : "") $0; next }
  if (dropped && $0 ~ /[^ \\t]/) print mark $0; else print }`;
  return sh`awk -v names=${ifaces.join(' ')} -v mark=${DISABLED_MARK} ${program}`;
}

/** Writes a file atomically with its mode, as underlay's writeScript does. */
function writeFile(path: string, content: string, mode = '0644'): Shell {
  const dir = path.slice(0, path.lastIndexOf('/')) || '/';
  return sh`mkdir -p ${dir} && printf '%s' ${content} > ${`${path}.tmp`} && chmod ${mode} ${`${path}.tmp`} && mv -f ${`${path}.tmp`} ${path}`;
}

/** A bounded wait: `cond` every `every` s until it holds or `timeout` s passed (then the script fails, naming it). */
function waitFor(what: string, cond: Shell, w: { timeout: number; every: number }): Shell {
  return sh`t0=$(date +%s); until ${cond}; do if [ $(( $(date +%s) - t0 )) -ge ${w.timeout} ]; then echo ${`timed out after ${w.timeout} s waiting for ${what}`} >&2; exit 1; fi; sleep ${w.every}; done`;
}

/** The cabling holds: carrier, speed and the LLDP neighbour of every cabled NIC (lldpctl keyvalue output). */
export function cableHolds(p: NetworkPlan): Shell {
  return join(
    '&&',
    p.nics.flatMap((n) => [
      sh`[ "$(cat /sys/class/net/${n.name}/carrier 2>/dev/null)" = 1 ]`,
      ...(n.speedMbps !== undefined ? [sh`[ "$(cat /sys/class/net/${n.name}/speed 2>/dev/null)" = ${n.speedMbps} ]`] : []),
      ...(n.lldp
        ? [
            sh`lldpctl -f keyvalue ${n.name} | grep -xi ${`lldp.${n.name}.chassis.name=${n.lldp.switch}`} >/dev/null`,
            sh`lldpctl -f keyvalue ${n.name} | grep -E ${`^lldp\\.${n.name}\\.port\\.(ifname|descr)=${n.lldp.port}$`} >/dev/null`,
          ]
        : []),
    ]),
  );
}

/**
 * LACP converged as underlay's bond step reads it: a partner, every member in the active aggregator with its actor
 * and partner port state in sync + collecting + distributing, as many ports as members, no churn.
 */
export function lacpHolds(p: NetworkPlan): Shell {
  const program = `/^802.3ad info/ { sect = "bond" } /^Slave Interface:/ { sect = "slave"; slave = $3; slaves++ }
/Aggregator ID:/ { if (sect == "bond" && !active) active = $3; else if (sect == "slave") agg[slave] = $3 }
/Number of ports:/ && sect == "bond" { ports = $4 }
/Partner Mac Address:/ && sect == "bond" { partner = $4 }
/^(Actor|Partner) Churn State:/ && sect == "slave" { if ($4 == "churned") churn = 1 }
/details actor lacp pdu:/ { who = "a" } /details partner lacp pdu:/ { who = "p" }
/port state:/ && sect == "slave" { st[slave who] = $3 }
END { if (partner == "" || partner == "00:00:00:00:00:00" || ports != want || churn) exit 1
  for (s in agg) { if (agg[s] != active) exit 1; if (int(st[s "a"]) % 64 < 56 || int(st[s "p"]) % 64 < 56) exit 1 }
  exit 0 }`;
  return sh`awk -v want=${p.bond.members.length} ${program} ${`/proc/net/bonding/${p.bond.name}`}`;
}

export function vlansHold(p: NetworkPlan): Shell {
  return join(
    '&&',
    p.vlans.flatMap((v) => [
      ...(v.address ? [sh`ip -o addr show dev ${v.name} | grep -w ${v.address} >/dev/null`] : []),
      ...(v.gateway ? [sh`ping -c 2 -i 0.3 -W 1 -I ${v.name} ${v.gateway} >/dev/null`] : []),
    ]),
  );
}

export function sriovHolds(p: NetworkPlan): Shell {
  return sh`[ "$(cat /sys/class/net/${p.sriov.pf}/device/sriov_numvfs)" = ${p.sriov.numVfs} ]`;
}

const virsh = (args: Shell) => sh`virsh -c qemu:///system ${args}`;

export function kvmHolds(): Shell {
  return sh`test -c /dev/kvm && { systemctl is-active --quiet libvirtd || systemctl is-active --quiet libvirtd.socket; } && ${virsh(sh`version`)} | grep 'Running hypervisor: QEMU' >/dev/null`;
}

export function attachHolds(p: NetworkPlan): Shell {
  return sh`${virsh(sh`net-info ${p.network.name}`)} | grep -E '^Active: +yes' >/dev/null && ${virsh(sh`net-info ${p.network.name}`)} | grep -E '^Autostart: +yes' >/dev/null`;
}

/** The udev rule with the PF's device read on the host, written atomically. */
function sriovRule(p: NetworkPlan): Shell {
  const tmp = `${p.sriov.rulePath}.tmp`;
  return sh`dev=$(basename "$(readlink -f /sys/class/net/${p.sriov.pf}/device)") && { printf '%s' ${p.sriov.ruleBefore}; printf '%s' "$dev"; printf '%s' ${p.sriov.ruleAfter}; } > ${tmp} && chmod 0644 ${tmp} && mv -f ${tmp} ${p.sriov.rulePath}`;
}

/** The KVM set is installed and libvirtd answers (started as underlay's hypervisor apply would). */
function kvmScript(): Shell {
  return join('&&', [
    sh`grep -Eq '(vmx|svm)' /proc/cpuinfo`,
    sh`for p in ${KVM_PACKAGES}; do [ "$(dpkg-query -W -f='\${db:Status-Abbrev}' "$p" 2>/dev/null)" = 'ii ' ] || { echo "$p is not installed" >&2; exit 1; }; done`,
    sh`{ systemctl is-active --quiet libvirtd || systemctl is-active --quiet libvirtd.socket || { (modprobe kvm_intel 2>/dev/null || modprobe kvm_amd 2>/dev/null || true) && systemctl enable --now libvirtd; }; }`,
  ]);
}

// ---- the raw-SSH script -----------------------------------------------------------------------------------------

/**
 * The whole onboarding of one host as one bash script, run over one plain `ssh` session (`bash -s` on stdin).
 * Sections in the runbook's order; each applies what underlay's step applies on such a host and then waits as
 * that step's verify waits. Prints `step <name> <ms>` per section.
 */
export function rawSshScript(spec: ServerSpec): string {
  const p = networkPlan(spec);
  const members = p.bond.members;
  const section = (name: string, body: Shell[]) => [
    `# --- ${name}`,
    `s=$(date +%s%3N)`,
    ...body.map((b) => b.text),
    `echo "step ${name} $(( $(date +%s%3N) - s ))"`,
  ];
  const lines = [
    '#!/bin/bash',
    `# Onboarding of ${p.id} over plain SSH, generated by bench/lab-contenders.ts from the same spec as underlay's.`,
    'set -euo pipefail',
    ...section('cable', [
      join(
        '&&',
        p.nics.map((n) => sh`ip link set dev ${n.name} up`),
      ),
      waitFor('the cabling (carrier, speed, LLDP)', cableHolds(p), WAITS.cable),
    ]),
    ...section('bond', [
      // ifdown needs the stanza that brought a member up: before that stanza is disabled.
      sh`for m in ${members}; do if ifquery --state "$m" >/dev/null 2>&1; then ifdown "$m"; fi; done`,
      sh`f=/etc/network/interfaces; ${disableStanzasAwk(members)} "$f" > "$f.tmp" && chmod 0644 "$f.tmp" && mv -f "$f.tmp" "$f"`,
      writeFile(p.bondFile.path, p.bondFile.content),
      sh`ifup ${p.bond.name}`,
      waitFor(`LACP on ${p.bond.name}`, lacpHolds(p), WAITS.lacp),
    ]),
    ...section('vlan', [
      ...p.vlans.map((v) => writeFile(v.file.path, v.file.content)),
      ...p.vlans.map((v) => sh`ifup ${v.name}`),
      waitFor('the VLAN addresses and gateways', vlansHold(p), WAITS.vlan),
    ]),
    ...section('sriov', [
      sh`[ "$(cat /sys/class/net/${p.sriov.pf}/device/sriov_numvfs)" = ${p.sriov.numVfs} ] || { printf '%s\n' 0 > /sys/class/net/${p.sriov.pf}/device/sriov_numvfs && printf '%s\n' ${p.sriov.numVfs} > /sys/class/net/${p.sriov.pf}/device/sriov_numvfs; }`,
      sriovRule(p),
      sh`udevadm control --reload`,
      waitFor('the VF count', sriovHolds(p), WAITS.sriov),
    ]),
    ...section('hypervisor', [kvmScript(), waitFor('KVM and libvirtd', kvmHolds(), WAITS.kvm)]),
    ...section('attach', [
      sh`x=$(mktemp) && printf '%s' ${p.network.xml} > "$x" && ${virsh(sh`net-define "$x"`)} >/dev/null && rm -f "$x"`,
      sh`${virsh(sh`net-info ${p.network.name}`)} | grep -E '^Active: +yes' >/dev/null || ${virsh(sh`net-start ${p.network.name}`)} >/dev/null`,
      sh`${virsh(sh`net-autostart ${p.network.name}`)} >/dev/null`,
      waitFor(`libvirt network ${p.network.name}`, attachHolds(p), WAITS.attach),
    ]),
  ];
  return `${lines.join('\n')}\n`;
}

// ---- the Ansible playbook ---------------------------------------------------------------------------------------

type Task = Record<string, unknown>;

/** A retried check: `until` the command exits 0, `retries` × `delay` ≈ the step's wait. */
function untilTask(name: string, cmd: string, w: { timeout: number; every: number }): Task {
  return {
    name,
    'ansible.builtin.shell': { cmd, executable: '/bin/bash' },
    register: 'r',
    until: 'r.rc == 0',
    retries: Math.ceil(w.timeout / w.every),
    delay: w.every,
    changed_when: false,
  };
}

/**
 * What differs between hosts, as one host variable `u` per host (the inventory carries it): the files, the checks
 * and the commands rendered from that host's spec. The play itself is the same for every host.
 */
export function ansibleHostVars(spec: ServerSpec): Record<string, unknown> {
  const p = networkPlan(spec);
  return {
    nics: p.nics.map((n) => n.name),
    members: p.bond.members,
    bond: p.bond.name,
    bond_file: p.bondFile,
    vlans: p.vlans.map((v) => v.name),
    vlan_files: p.vlans.map((v) => v.file),
    pf: p.sriov.pf,
    num_vfs: p.sriov.numVfs,
    sriov_rule: { path: p.sriov.rulePath, before: p.sriov.ruleBefore, after: p.sriov.ruleAfter },
    network: p.network.name,
    network_xml: p.network.xml,
    cmd: {
      disable_members: sh`f=/etc/network/interfaces; ${disableStanzasAwk(p.bond.members)} "$f" > "$f.tmp" && chmod 0644 "$f.tmp" && mv -f "$f.tmp" "$f"`.text,
      kvm: kvmScript().text,
      start_network: sh`${virsh(sh`net-info ${p.network.name}`)} | grep -E '^Active: +yes' >/dev/null || ${virsh(sh`net-start ${p.network.name}`)}`.text,
    },
    check: {
      cable: cableHolds(p).text,
      lacp: lacpHolds(p).text,
      vlan: vlansHold(p).text,
      sriov: sriovHolds(p).text,
      kvm: kvmHolds().text,
      attach: attachHolds(p).text,
    },
  };
}

/**
 * The same onboarding as one Ansible play over all hosts (Ansible's default linear strategy: each task on every
 * host in parallel, up to `forks`), ansible.builtin modules only: `copy` for the files, `command`/`shell` for
 * ifupdown, sysfs and virsh (no libvirt module is builtin), retried `shell` checks (`until`) for the waits, and
 * the host's own values from its `u` variable (ansibleHostVars). No facts gathered (nothing here uses them).
 */
export function playbookYaml(): string {
  const xmlPath = '/root/.underlay-bench-network.xml';
  const tasks: Task[] = [
    {
      name: 'cable: bring the NICs up',
      'ansible.builtin.command': { argv: ['ip', 'link', 'set', 'dev', '{{ item }}', 'up'] },
      loop: '{{ u.nics }}',
      changed_when: false,
    },
    untilTask('cable: carrier, speed and LLDP neighbours', '{{ u.check.cable }}', WAITS.cable),
    {
      name: 'bond: take the members down through ifupdown (while their stanzas still say how)',
      'ansible.builtin.shell': { cmd: 'if ifquery --state {{ item }} >/dev/null 2>&1; then ifdown {{ item }}; fi', executable: '/bin/bash' },
      loop: '{{ u.members }}',
    },
    { name: 'bond: disable the members’ own stanzas', 'ansible.builtin.shell': { cmd: '{{ u.cmd.disable_members }}', executable: '/bin/bash' } },
    { name: 'bond: its ifupdown stanza', 'ansible.builtin.copy': { dest: '{{ u.bond_file.path }}', content: '{{ u.bond_file.content }}', mode: '0644' } },
    { name: 'bond: ifup', 'ansible.builtin.command': { argv: ['ifup', '{{ u.bond }}'] } },
    untilTask('bond: LACP converged', '{{ u.check.lacp }}', WAITS.lacp),
    { name: 'vlan: stanzas', 'ansible.builtin.copy': { dest: '{{ item.path }}', content: '{{ item.content }}', mode: '0644' }, loop: '{{ u.vlan_files }}' },
    { name: 'vlan: ifup', 'ansible.builtin.command': { argv: ['ifup', '{{ item }}'] }, loop: '{{ u.vlans }}' },
    untilTask('vlan: addresses and gateways', '{{ u.check.vlan }}', WAITS.vlan),
    {
      name: 'sriov: read the PF (device, VF count)',
      'ansible.builtin.shell': { cmd: 'basename "$(readlink -f /sys/class/net/{{ u.pf }}/device)"; cat /sys/class/net/{{ u.pf }}/device/sriov_numvfs' },
      register: 'pf',
      changed_when: false,
    },
    {
      name: 'sriov: set the VF count (through 0: the kernel refuses N to M)',
      'ansible.builtin.shell': {
        cmd: "printf '%s\\n' 0 > /sys/class/net/{{ u.pf }}/device/sriov_numvfs && printf '%s\\n' {{ u.num_vfs }} > /sys/class/net/{{ u.pf }}/device/sriov_numvfs",
      },
      when: '(pf.stdout_lines[1] | int) != (u.num_vfs | int)',
    },
    {
      name: 'sriov: the udev rule that recreates them at boot',
      'ansible.builtin.copy': {
        dest: '{{ u.sriov_rule.path }}',
        content: '{{ u.sriov_rule.before }}{{ pf.stdout_lines[0] }}{{ u.sriov_rule.after }}',
        mode: '0644',
      },
      register: 'rule',
    },
    { name: 'sriov: udev reload', 'ansible.builtin.command': { argv: ['udevadm', 'control', '--reload'] }, when: 'rule.changed' },
    untilTask('sriov: VF count', '{{ u.check.sriov }}', WAITS.sriov),
    {
      name: 'hypervisor: the KVM set installed, libvirtd running',
      'ansible.builtin.shell': { cmd: '{{ u.cmd.kvm }}', executable: '/bin/bash' },
      changed_when: false,
    },
    untilTask('hypervisor: KVM answers', '{{ u.check.kvm }}', WAITS.kvm),
    { name: 'attach: the network XML', 'ansible.builtin.copy': { dest: xmlPath, content: '{{ u.network_xml }}', mode: '0600' } },
    { name: 'attach: define the network', 'ansible.builtin.command': { argv: ['virsh', '-c', 'qemu:///system', 'net-define', xmlPath] } },
    { name: 'attach: remove the XML', 'ansible.builtin.file': { path: xmlPath, state: 'absent' } },
    { name: 'attach: start the network', 'ansible.builtin.shell': { cmd: '{{ u.cmd.start_network }}', executable: '/bin/bash' } },
    { name: 'attach: autostart the network', 'ansible.builtin.command': { argv: ['virsh', '-c', 'qemu:///system', 'net-autostart', '{{ u.network }}'] } },
    untilTask('attach: network active and autostarted', '{{ u.check.attach }}', WAITS.attach),
  ];
  return stringify([{ name: 'network onboarding (underlay lab benchmark)', hosts: 'all', gather_facts: false, tasks }], { lineWidth: 0 });
}

export interface AnsibleHost {
  inventoryName: string;
  spec: ServerSpec;
  privateKeyFile: string;
  knownHostsFile: string;
}

/** The inventory (YAML): each host at its spec's address and port, the lab key, the pinned known_hosts, python3, `u`. */
export function inventoryYaml(hosts: readonly AnsibleHost[]): string {
  return stringify(
    {
      all: {
        hosts: Object.fromEntries(
          hosts.map((h) => [
            h.inventoryName,
            {
              ansible_host: h.spec.management.address,
              ansible_port: h.spec.management.port,
              ansible_user: h.spec.management.user,
              ansible_ssh_private_key_file: h.privateKeyFile,
              // Host keys pinned: the lab's known_hosts only, checked strictly (Ansible's host_key_checking stays on).
              ansible_ssh_common_args: `-o UserKnownHostsFile=${h.knownHostsFile} -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes`,
              ansible_python_interpreter: '/usr/bin/python3',
              u: ansibleHostVars(h.spec),
            },
          ]),
        ),
      },
    },
    { lineWidth: 0 },
  );
}
