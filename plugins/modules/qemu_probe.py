#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: qemu_probe
short_description: Ask the host's own QEMU whether a VM configuration with assigned devices starts and migrates
version_added: "0.2.0"
description:
  - Asks the host's QEMU binary the question the gate (the P(iommu.host.check#filter) filter and the
    preflight role) answers from facts - does a VM with this vIOMMU and these assigned devices start, and
    can it be live-migrated - by starting QEMU paused (C(-S)) with no guest, no disk and no display,
    letting it realize the vIOMMU and the assigned devices, asking for its migration blockers (QMP
    C(migrate) to C(exec:cat > /dev/null), which a blocker refuses before anything is sent) and quitting.
  - The VM configuration is the gate's own input - O(profiles), O(params) and O(devices) with the same
    meaning as in the check filter - or a VM definition (O(vm), a libvirt domain XML or a QEMU command line,
    read like the P(iommu.host.vm_requirements#filter) filter does). O(vms) probes several configurations
    in one call. The QEMU arguments are made from the gate's resolved parameters with the user's property
    spellings, so a property the host's QEMU release lacks is refused by QEMU itself.
  - "B(Which options touch devices): every run that is not in check mode. QEMU opens the assigned
    devices' VFIO nodes, binds them to its iommufd (or legacy container) and B(resets them), exactly as
    starting the VM would. The module therefore refuses (fails, and runs nothing) when any assigned
    device or mdev is held open by a process (C(/dev/vfio/devices/vfioN) or its group node C(/dev/vfio/N),
    read from C(/proc/PID/fd) like P(iommu.host.iommu_facts#module) does): never probe a device in use."
  - In check mode nothing is opened and QEMU is not started; the module reports the argument list it
    would run (RV(results[].argv)).
  - The host's devices are read from sysfs only (as P(iommu.host.iommu_facts#module) with
    O(iommu.host.iommu_facts#module:sysfs_only=true)) to resolve O(devices) and find holders.
author:
  - iommu.host maintainers (@iommu-host)
options:
  profiles:
    description:
      - Preflight profiles, as for the check filter (C(passthrough), C(live_migration), C(intel_viommu),
        C(amd_viommu), C(virtio_viommu), C(smmuv3_accel), C(pasid)); names, or dicts with C(name) and
        parameters.
        Their parameters decide the vIOMMU model and its properties.
    type: list
    elements: raw
    default: [passthrough]
  params:
    description:
      - Profile parameters, as for the check filter (C(caching_mode), C(aw_bits), C(scalable_mode),
        C(fsts), C(iommufd), C(enable_migration), C(granule), C(dma_remap) ...). Only the parameters
        given become QEMU properties; QEMU's defaults apply to the rest.
    type: dict
    default: {}
  devices:
    description:
      - Assigned devices - PCI addresses, C(vendor:device), mdev UUIDs or C(all_vfio) (every PCI device
        bound to a VFIO driver), resolved against the host's sysfs.
    type: list
    elements: str
    default: [all_vfio]
  vm:
    description:
      - A VM definition instead of O(profiles)/O(params)/O(devices) - a libvirt domain XML document or a
        QEMU command line (string or list of words). Its vIOMMU, properties, backend and assigned devices
        are probed.
    type: raw
  vms:
    description:
      - Several configurations to probe one after the other. Each item has O(vms[].name) and either O(vm)
        or O(profiles)/O(params)/O(devices), as above. When given, the top-level configuration options are
        ignored.
    type: list
    elements: dict
    suboptions:
      name:
        description: A label for the configuration in the results.
        type: str
      profiles:
        description: As O(profiles).
        type: list
        elements: raw
      params:
        description: As O(params).
        type: dict
      devices:
        description: As O(devices).
        type: list
        elements: str
      vm:
        description: As O(vm).
        type: raw
  binary:
    description:
      - The QEMU binary. Default C(qemu-system-x86_64) from E(PATH) (C(qemu-system-aarch64) for an
        C(arm-smmuv3) configuration or on an arm64 host).
      - A C(qemu-system-aarch64) runs the C(virt) machine with C(accel=kvm:tcg) and C(-cpu max) (KVM when the
        host has C(/dev/kvm), which C(arm-smmuv3,accel=on) requires), a C(qemu-system-x86_64) C(q35) under TCG.
    type: path
  timeout:
    description: Seconds each QEMU run may take before it is killed (then RV(results[].timed_out) is true).
    type: float
    default: 60
  migrate:
    description: Ask for the migration blockers (QMP C(migrate)) once the devices are realized.
    type: bool
    default: true
  prediction:
    description:
      - The gate's verdict for the same configuration (the result of the P(iommu.host.check#filter) filter).
        When given, RV(agreement) compares it with the (first) probe - a failing finding with
        C(qemu_effect=refuse) must match a QEMU that did not start, and, with the C(live_migration)
        profile, a failing C(block_migration) finding a migration QEMU blocked. The preflight role uses this.
    type: dict
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: In check mode no device is opened and QEMU is not started; the arguments are returned.
  diff_mode:
    description: Can show the changes a task would make.
    support: none
    details: The module changes nothing persistent (it reports C(changed=false)), though QEMU resets the devices.
notes:
  - Needs root (QEMU must open C(/dev/iommu), C(/dev/vfio/*) and lock guest memory).
  - A configuration whose devices are not on a VFIO driver, in a non-viable group or refused by the kernel is
    not an error of the module - it is QEMU's answer (RV(results[].started) false, RV(results[].messages)).
  - The preflight role runs this module after its static checks when C(preflight_qemu_probe=true) and
    reports any disagreement with the prediction as the finding C(probe.agreement).
seealso:
  - module: iommu.host.iommu_facts
  - ref: iommu.host.check filter <ansible_collections.iommu.host.check_filter>
    description: The prediction this module checks.
"""

EXAMPLES = r"""
- name: Does QEMU start an intel-iommu VM with the NIC assigned, and can it migrate?
  iommu.host.qemu_probe:
    profiles: [intel_viommu, live_migration]
    params: {caching_mode: true, aw_bits: 39}
    devices: ["0000:00:09.0"]
  register: probe

- name: Probe a libvirt domain as it is defined
  iommu.host.qemu_probe:
    vm: "{{ lookup('ansible.builtin.file', 'guest.xml') }}"

- name: Several configurations in one call, with another QEMU
  iommu.host.qemu_probe:
    binary: /opt/qemu/bin/qemu-system-x86_64
    vms:
      - {name: legacy, profiles: [passthrough], params: {iommufd: false}, devices: ["0000:00:09.0"]}
      - {name: virtio, profiles: [virtio_viommu], params: {granule: 4k}, devices: ["0000:00:09.0"]}

- name: Show what would run, opening nothing
  iommu.host.qemu_probe:
    profiles: [amd_viommu]
    params: {dma_remap: true}
  check_mode: true
"""

RETURN = r"""
binary:
  description: The QEMU binary used.
  returned: always
  type: str
  sample: /usr/bin/qemu-system-x86_64
results:
  description: One entry per configuration, in order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The configuration's label (O(vms[].name), or C(vm) / C(config)).
      type: str
    argv:
      description: QEMU's arguments after the binary.
      type: list
      elements: str
      sample: ["-machine", "q35,accel=tcg", "-nodefaults", "-display", "none", "-S", "-qmp", "stdio"]
    devices:
      description: The assigned PCI addresses and mdev UUIDs.
      type: list
      elements: str
    probed:
      description: Whether QEMU was run (false in check mode).
      type: bool
    qemu_version:
      description: QEMU's release, from its QMP greeting (else from C(--version)).
      type: str
      sample: 11.1.3
    started:
      description: QEMU realized every device and answered QMP - the VM would start.
      type: bool
    migration:
      description: C(blocked) (QEMU refused the migration; see RV(results[].blocker)), C(allowed), or null
        (not asked, or QEMU did not start).
      type: str
    blocker:
      description: QEMU's reason for blocking migration.
      type: str
      sample: "0000:00:09.0: VFIO migration is not supported in kernel"
    messages:
      description: QEMU's stderr lines without the program and option prefixes (errors and warnings).
      type: list
      elements: str
    errors:
      description: RV(results[].messages) that are not warnings - why QEMU refused the configuration.
      type: list
      elements: str
    warnings:
      description: QEMU's warnings.
      type: list
      elements: str
    rc:
      description: QEMU's exit status.
      type: int
    timed_out:
      description: QEMU was killed after O(timeout) seconds.
      type: bool
    seconds:
      description: Wall time of the run.
      type: float
    problems:
      description: What the VM definition or parameters left unjudged (from the vm_requirements reader).
      type: list
      elements: str
agreement:
  description: With O(prediction), the finding C(probe.agreement) in the gate's finding format - C(status)
    C(pass), C(fail) (the prediction and QEMU disagree; both sides' words are in C(message)) or
    C(not_applicable) (check mode).
  returned: when prediction is given
  type: dict
  sample: {"id": "probe.agreement", "status": "fail", "message": "The prediction and the host's QEMU disagree: ..."}
"""

import platform

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.iommu.host.plugins.module_utils import iommu_facts
from ansible_collections.iommu.host.plugins.module_utils import qemu_probe
from ansible_collections.iommu.host.plugins.module_utils.policy.params import PROFILES, resolve_profiles
from ansible_collections.iommu.host.plugins.module_utils.policy.select import select_devices
from ansible_collections.iommu.host.plugins.module_utils.vmdef.api import requirements
from ansible_collections.iommu.host.plugins.module_utils.vmdef.common import VMDefinitionError


def configurations(params):
    """[(name, entry)] from the module parameters (``vms`` or the top-level options)."""
    if params.get("vms"):
        return [(item.get("name") or "config %d" % (i + 1), item) for i, item in enumerate(params["vms"])]
    return [("vm" if params.get("vm") is not None else "config", params)]


def resolve(entry, facts):
    """(profiles, params, pci, mdevs, problems, error) of one configuration."""
    problems = []
    if entry.get("vm") is not None:
        try:
            req = requirements(entry["vm"])
        except VMDefinitionError as e:
            return None, None, [], [], [], "unusable VM definition: %s" % e
        profiles, devices = req["profiles"], req["devices"]
        declared = set()
        for prof in profiles:
            declared.update(PROFILES.get(prof, {}).get("params", ()))
        # the VM states every property it has; keep those the gate (and so build_argv) knows, as check(vm=) does
        params = dict((k, v) for k, v in (req.get("params") or {}).items() if k in declared)
        problems = ["%s" % (x.get("message", x) if isinstance(x, dict) else x) for x in req.get("problems") or []]
    else:
        profiles = entry.get("profiles") or ["passthrough"]
        params = entry.get("params") or {}
        devices = entry.get("devices") or ["all_vfio"]
    names, values, given, bad = resolve_profiles(profiles, params)
    if bad:
        return profiles, params, [], [], problems, "invalid profiles/params: %s" % "; ".join(bad)
    pci, mdevs, sel_problems, _matched = select_devices(facts, devices)
    if sel_problems:
        return profiles, values, pci, mdevs, problems, "devices: %s" % "; ".join(
            "%s: %s" % (spec, why) for spec, why in sel_problems)
    return profiles, values, pci, mdevs, problems, None


def holders_of(facts, pci, mdevs):
    """{device: [holders]} for the devices some process holds open (never probe those)."""
    busy = {}
    for addr in pci:
        users = (facts.get("devices") or {}).get(addr, {}).get("in_use_by") or []
        if users:
            busy[addr] = users
    for uuid in mdevs:
        users = (facts.get("mdevs") or {}).get(uuid, {}).get("in_use_by") or []
        if users:
            busy[uuid] = users
    return busy


def _fail(msg, **extra):
    out = {"failed": True, "msg": msg, "results": []}
    out.update(extra)
    return out


def run(p, check_mode=False, root="/"):
    """The module's work on its parameters ``p``: {changed, binary, results} or {failed, msg, ...}."""
    if p.get("timeout") is None or p["timeout"] <= 0:
        return _fail("timeout must be a positive number of seconds, not %s" % p.get("timeout"))
    # sysfs and /proc only: resolving the devices and finding their holders opens nothing
    facts = iommu_facts.gather(root=root, sysfs_only=True)
    configs = []
    for name, entry in configurations(p):
        profiles, values, pci, mdevs, problems, error = resolve(entry, facts)
        if error:
            return _fail("%s: %s" % (name, error))
        if not pci and not mdevs:
            return _fail("%s: no device to assign (the devices resolved to none: bind one to vfio-pci or name it)"
                         % name)
        configs.append((name, values, pci, mdevs, problems))
    busy = {}
    for _name, _values, pci, mdevs, _problems in configs:
        busy.update(holders_of(facts, pci, mdevs))
    if busy:
        return _fail("Refusing to probe devices that a process holds open (QEMU would open and reset them): %s"
                     % "; ".join("%s by %s" % (d, ", ".join(h)) for d, h in sorted(busy.items())), in_use=busy)
    binary = p.get("binary")
    arch = "aarch64" if (any(v.get("viommu") == "arm-smmuv3" for _n, v, _p, _m, _x in configs)
                         or platform.machine() in ("aarch64", "arm64")) else "x86_64"
    if not binary:
        binary = qemu_probe.find_binary(arch)
        if binary is None:
            return _fail("no qemu-system-%s in PATH; give binary" % arch)
    arch = qemu_probe.arch_of(binary, arch)
    results = []
    version = None
    for name, values, pci, mdevs, problems in configs:
        argv = qemu_probe.build_argv(values, pci, mdevs, arch=arch)
        res = {"name": name, "argv": argv, "devices": list(pci) + list(mdevs), "problems": problems,
               "probed": False, "started": None, "migration": None, "blocker": None, "messages": [],
               "errors": [], "warnings": [], "rc": None, "timed_out": False, "seconds": 0.0, "qemu_version": None}
        if not check_mode:
            out = qemu_probe.probe(binary, argv, migrate=p.get("migrate", True), timeout=p["timeout"])
            out.pop("command", None)
            res.update(out)
            res["probed"] = True
            if res["qemu_version"] is None:
                version = version or qemu_probe.release_of(binary)
                res["qemu_version"] = version
        results.append(res)
    out = {"changed": False, "binary": binary, "results": results}
    if p.get("prediction") is not None:
        profiles = []
        for x in configurations(p)[0][1].get("profiles") or []:
            if isinstance(x, dict):
                x = x.get("name") if "name" in x else (list(x)[0] if len(x) == 1 else None)
            profiles.append(x)
        out["agreement"] = qemu_probe.agreement(p["prediction"], results[0] if results else None,
                                                migration="live_migration" in profiles)
    return out


def main():
    module = AnsibleModule(
        argument_spec=dict(
            profiles=dict(type="list", elements="raw", default=["passthrough"]),
            params=dict(type="dict", default={}),
            devices=dict(type="list", elements="str", default=["all_vfio"]),
            vm=dict(type="raw"),
            vms=dict(type="list", elements="dict", options=dict(
                name=dict(type="str"),
                profiles=dict(type="list", elements="raw"),
                params=dict(type="dict"),
                devices=dict(type="list", elements="str"),
                vm=dict(type="raw"),
            )),
            binary=dict(type="path"),
            timeout=dict(type="float", default=60),
            migrate=dict(type="bool", default=True),
            prediction=dict(type="dict"),
        ),
        supports_check_mode=True,
    )
    result = run(module.params, module.check_mode)
    if result.get("failed"):
        result.pop("failed")
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
