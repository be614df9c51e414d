# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu.host.check: evaluate preflight requirements over IOMMU facts (docs: DOCUMENTATION below)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: check
author: iommu.host contributors
version_added: "0.1.0"
short_description: Decide whether a host can run a VM with assigned devices, from its IOMMU facts
description:
  - Evaluates named requirement profiles (and user-defined checks) over the IOMMU facts of one host
    (C(ansible_facts.iommu), from M(iommu.host.iommu_facts)) and returns one finding per host-level
    requirement and per assigned device, each with a status (C(pass), C(warn), C(fail),
    C(not_applicable)), a message, the evidence (fact values and their source), a remedy and the
    QEMU or kernel rule it mirrors.
  - The rules are those QEMU applies when a VM with assigned devices starts (QEMU master ece408818d,
    10.2.50, and the releases before it), and the kernel rules behind them. Messages quote QEMU's own
    wording, so the refusal an operator would meet at VM start is recognisable. Every check, its id
    and its source rule are listed in C(docs/preflight.md).
  - Pure data transformation on the controller; it reads nothing from any host and works on cached
    facts. It never fails the task because of odd or partial facts or a bad configuration - those
    become C(fail) findings.
  - The role C(iommu.host.preflight) gathers the facts, applies this filter, prints the summary and
    fails the host in enforcing mode.
positional: _input
options:
  _input:
    description:
      - C(ansible_facts) holding C(iommu), or the C(iommu) facts dict itself.
    type: dict
    required: true
  profiles:
    description:
      - Profiles to evaluate. Every profile includes C(passthrough)'s checks.
      - C(passthrough) - basic device assignment - host IOMMU in firmware, enabled and not disabled on the
        command line, default domain type, IOMMUFD, VFIO cdev, interrupt remapping; per device a VFIO
        driver (vfio-pci or a variant), not in use, viable group, hw_info obtained.
      - C(live_migration) - what QEMU's vfio_migration_realize() decides per device - VFIO migration
        support, device or IOMMU dirty tracking, P2P with several devices - and the vIOMMU rules.
      - C(intel_viommu) - QEMU C(intel-iommu) - property names, caching-mode, aw-bits against the host,
        fsts (x-flts) nesting,
        first-stage 1 GiB pages, PASID.
      - C(smmuv3_accel) - QEMU C(arm-smmuv3,accel=on) - the ten host IDR comparisons (stream table,
        endianness, AArch64 tables, SIDSIZE, SSIDSIZE, RIL, OAS, 4K/16K/64K granules), nesting, ATS.
      - C(amd_viommu) - QEMU C(amd-iommu) - dma-remap (QEMU checks no host capability).
      - C(virtio_viommu) - QEMU C(virtio-iommu-pci) - its page-size mask (granule) against the host's.
      - C(pasid) - PASID width (and execute/privileged mode) and ATS per device.
      - "An entry may also be a dict C({name: intel_viommu, aw_bits: 39})."
    type: list
    elements: raw
    default: [passthrough]
  devices:
    description:
      - The devices the VM will use - C(all_vfio) (every PCI device bound to a VFIO driver, vfio-pci or a
        VFIO variant driver), PCI addresses
        (C(0000:01:00.0) or C(01:00.0)), C(vendor:device) IDs (C(8086:10d3), C(8086:*)) or mdev UUIDs.
        A string may list several, separated by commas or spaces.
      - When no device is selected, the result has a C(fail) finding C(selection.devices) (nothing to gate).
      - Mediated devices are reported C(not_applicable), with the reason, by every device check except the
        live-migration ones (C(migration.device), C(migration.dirty_tracking)), which evaluate them.
    type: raw
    default: all_vfio
  params:
    description:
      - Profile parameters, named as QEMU names its device properties with C(-) written C(_) (the C(-)
        spelling is accepted too) - a flat dict, or one dict per profile name. Defaults are QEMU's.
      - C(iommufd) (true) - the VM uses C(-object iommufd) + C(vfio-pci,iommufd=); false = legacy container.
      - C(qemu_version) (C('11.1')) - the QEMU release the VM runs on, C('10.0') to C('11.1') or a point
        release; its refusals, property names and wording apply. A newer release or C(master) gets 11.1's
        rules, an older one 10.0's, each with a C(warn) finding C(config.qemu_version).
      - live_migration - C(viommu) (C(auto) = from the selected profiles; C(none), C(intel-iommu),
        C(arm-smmuv3), C(amd-iommu), C(virtio-iommu)), C(enable_migration) (C(auto), C(on), C(off)),
        C(x_device_dirty_page_tracking) (true), C(pci_id) ('').
      - intel_viommu - C(aw_bits) (48), C(caching_mode) (false), C(scalable_mode) (false), C(fsts) (false)
        (QEMU 11.1 names; C(x_scalable_mode) and C(x_flts) are the 10.0-11.0 spellings), C(fs1gp) (true),
        C(x_pasid_mode) (false, up to 11.0), C(pasid_bits) (11.1 C(pasid-bits)), C(svm) (false),
        C(device_iotlb) (false), C(dma_translation) (true), C(snoop_control) (false).
      - smmuv3_accel - C(accel) (true), C(stage) ('1'), C(ril) (true), C(ats) (false), C(oas) (44),
        C(ssidsize) (0).
      - amd_viommu - C(dma_remap) (false), C(pci_id) ('').
      - virtio_viommu - C(granule) (C(host); C(4k), C(8k), C(16k), C(64k)).
      - pasid - C(pasid_bits) (1), C(pasid_exec) (false), C(pasid_priv) (false), C(require_ats) (true).
      - An unknown parameter, or one no selected profile uses, gives a C(fail) finding C(config.profiles).
    type: dict
    default: {}
  custom:
    description:
      - User-defined checks, each a dict with C(name), C(expression), C(expected), C(operator), C(scope),
        C(severity), C(message) and C(remedy).
      - C(expression) is JMESPath, run on the C(iommu) facts (C(scope=host), the default) or on each
        selected device's facts with C(address) added (C(scope=device)).
      - C(operator) is one of C(eq) (the default when C(expected) is given), C(ne), C(lt), C(le), C(gt),
        C(ge), C(in), C(not_in), C(contains), C(truthy) (the default otherwise), C(falsy).
      - C(severity) is C(fail) (default) or C(warn). The finding id is C(custom.<name>).
      - Needs the Python library C(jmespath) on the controller; without it the finding says so.
    type: list
    elements: dict
    default: []
  host:
    description:
      - Host name to put in the findings and the summary, usually C(inventory_hostname).
    type: str
    default: localhost
  vm:
    description:
      - A VM definition - the output of P(iommu.host.vm_requirements#filter), a libvirt domain XML document
        or a QEMU command line (a string or a list of argv words).
      - Its profiles, parameters and assigned devices are gated. O(profiles) and O(devices), when given,
        replace the VM's; O(params) are applied over the VM's own.
      - Parts of the definition the gate cannot judge, or a definition that cannot be read, give a C(warn)
        finding C(vm.definition).
      - When the definition gives the VM's memory (size or hugepage backing), the profile C(memory) is added
        with the parameter C(guest_memory), so hugepages, guest RAM and NUMA locality are gated too (docs/memory.md);
        not when O(profiles) is given without C(memory).
    type: raw
    version_added: "0.2.0"
seealso:
  - module: iommu.host.iommu_facts
  - module: iommu.host.iommu_hw_info
"""

EXAMPLES = r"""
- name: Gate basic device assignment of every vfio-pci device
  ansible.builtin.set_fact:
    gate: "{{ ansible_facts | iommu.host.check(profiles=['passthrough'], host=inventory_hostname) }}"

- name: Intel vIOMMU with nesting for one NIC, on cached facts
  ansible.builtin.debug:
    msg: >-
      {{ (hostvars[item].ansible_facts.iommu
          | iommu.host.check(profiles=['intel_viommu', 'live_migration'], devices=['0000:3b:00.0'],
                             params={'caching_mode': true, 'x_scalable_mode': true, 'x_flts': true},
                             host=item)).summary }}
  loop: "{{ groups['hypervisors'] }}"

- name: A site rule - the host must boot with iommu=pt
  ansible.builtin.set_fact:
    gate: >-
      {{ ansible_facts.iommu | iommu.host.check(
           devices='8086:10d3',
           custom=[{'name': 'passthrough_mode', 'expression': 'cmdline.effects.passthrough',
                    'expected': true, 'remedy': 'Add iommu=pt to the kernel command line.'}]) }}

- name: Fail when any requirement failed, listing all of them
  ansible.builtin.fail:
    msg: "{{ gate.failed | join('\n') }}"
  when: gate.status == 'fail'
"""

RETURN = r"""
---
_value:
  description: The verdict for the host.
  type: dict
  contains:
    host:
      description: The host name given in O(host).
      type: str
    status:
      description: C(fail) if any finding failed, else C(warn) if any warned, else C(pass).
      type: str
    counts:
      description: Number of findings per status (C(pass), C(warn), C(fail), C(not_applicable)).
      type: dict
    profiles:
      description: The profiles evaluated.
      type: list
      elements: str
    params:
      description: Every parameter with the value used (given or QEMU's default).
      type: dict
    params_given:
      description: The parameters that were given.
      type: dict
    selected:
      description: The selected devices, C(pci) addresses and C(mdev) UUIDs.
      type: dict
    facts_mode:
      description: C(iommufd) or C(sysfs_only), as the facts were gathered.
      type: str
    findings:
      description:
        - One finding per requirement (and per device for device checks), failures first.
        - Each has C(id) (stable, for example C(host.iommufd), C(device.group_viable),
          C(viommu.intel.aw_bits), C(custom.<name>)), C(host), C(device) (PCI address, mdev UUID or null),
          C(status), C(qemu_effect) (what QEMU does about a C(fail) or C(warn) - C(refuse), the VM does not
          start; C(block_migration), it starts but cannot be live-migrated; C(warning); C(requirement),
          QEMU starts but a requirement asked for (e.g. a PASID width) is not met; or null),
          C(message), C(evidence) (fact paths as JMESPath expressions into the iommu facts
          mapped to the values used, plus C(source) and, for values derived from registers, C(basis)),
          C(remedy) (for C(fail) and C(warn)), C(rule) (the QEMU or kernel source it mirrors),
          C(title) and C(profiles).
      type: list
      elements: dict
    summary:
      description: Readable lines - a header, then one line per finding, failures first.
      type: list
      elements: str
    failed:
      description: One line per failed requirement (what the role's enforcing mode prints).
      type: list
      elements: str
    engine_version:
      description: Version of the requirement engine (1).
      type: int
"""

from ansible_collections.iommu.host.plugins.module_utils.fleet import api as fleet
from ansible_collections.iommu.host.plugins.module_utils.policy import api as policy


def _vm_inputs(vm, profiles, devices, params):
    """profiles, devices, params and problems for a VM definition (fleet.api.vm_inputs); explicit
    arguments win over the VM's."""
    vm_in = fleet.vm_inputs(vm, params=params, devices=devices)
    if vm_in.get("error"):
        return profiles, devices, params, [vm_in["error"]]
    chosen = profiles if profiles is not None else vm_in["profiles"]
    vm_params = vm_in["params"]
    explicit = isinstance(params, dict) and "guest_memory" in params
    if profiles is not None and "memory" not in _names(profiles) and not explicit:
        # explicit profiles without the memory profile: the VM's memory is not asked about
        vm_params = dict((k, v) for k, v in vm_params.items() if k != "guest_memory")
    return chosen, vm_in["devices"], vm_params, vm_in["problems"]


def _names(profiles):
    """Profile names of a profiles argument (names or {name: ...} dicts)."""
    items = profiles if isinstance(profiles, (list, tuple)) else [profiles]
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(item.strip())
        elif isinstance(item, dict):
            out.extend([item["name"]] if isinstance(item.get("name"), str) else [str(k) for k in item])
    return out


def check(data, profiles=None, devices=None, params=None, custom=None, host=None, vm=None):
    """Evaluate ``profiles`` for ``devices`` over the facts; see DOCUMENTATION above.

    ``data`` is ansible_facts (holding ``iommu``) or the ``iommu`` facts themselves. ``vm`` is a VM
    definition (iommu.host.vm_requirements output, a libvirt domain XML or a QEMU command line):
    its profiles, parameters and devices are gated unless given explicitly. Bad facts or a bad
    configuration never raise: they become ``fail`` findings in the result.
    """
    problems = []
    if vm is not None:
        profiles, devices, params, problems = _vm_inputs(vm, profiles, devices, params)
    result = policy.evaluate(
        data,
        profiles=profiles if profiles is not None else ["passthrough"],
        devices=devices if devices is not None else policy.ALL_VFIO,
        host=host,
        custom=custom,
        params=params,
    )
    if problems:
        finding = policy.meta_finding(
            "vm.definition", result["host"], policy.WARN,
            "The gate cannot judge part of the VM definition: %s." % "; ".join(problems),
            {"vm": "iommu.host.vm_requirements"},
            "Review those parts of the VM by hand, or express them as profiles/params.",
            "iommu.host vm_requirements", "VM definition fully judged")
        policy.add_findings(result, [finding])
    return result


class FilterModule(object):
    """IOMMU preflight filters."""

    def filters(self):
        return {"check": check}
