# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu.host.vm_requirements: a libvirt domain XML or QEMU command line -> the gate's requirements
(docs: DOCUMENTATION below, docs/vm-definitions.md)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: vm_requirements
author: iommu.host contributors
version_added: "0.2.0"
short_description: Read a libvirt domain XML or a QEMU command line into the gate's requirements
description:
  - Reads a VM definition - a libvirt domain XML document, or a QEMU command line (a string as
    C(virsh domxml-to-native qemu-argv) prints it, with environment assignments, the binary and C(\)
    continuations, or a list of argv words) - and returns what the gate C(iommu.host.check) needs to
    judge that VM on a host - the vIOMMU model and every property QEMU receives, the assigned devices,
    the iommufd backend, the memory layout, and the C(profiles) and C(params) of C(iommu.host.check).
  - libvirt's C(<iommu>) element is translated as libvirt's QEMU driver translates it
    (C(src/qemu/qemu_command.c)) - C(model='amd') gets its C(AMDVI-PCI) companion and C(pci-id),
    C(model='smmuv3') without C(pciBus) is the machine-level C(-machine virt,iommu=smmuv3), with
    C(pciBus) a C(-device arm-smmuv3). C(<qemu:commandline>) arguments and C(<qemu:override>) device
    properties are applied too. The mapping tables are in C(docs/vm-definitions.md).
  - QEMU options are read with QEMU's grammar - QemuOpts C(key=value,...) with C(,,) escapes, implied
    keys and short-form booleans, and JSON C(-device '{"driver":...}') / C(-object '{"qom-type":...}');
    C(-global) (also through a QOM parent such as C(x86-iommu)) and C(-set) are applied.
  - Anything the gate cannot judge is listed in C(problems) - a vIOMMU property the gate has no
    parameter for, a device passed by file descriptor, C(-readconfig), several vIOMMUs - never
    silently dropped.
  - Pure data transformation on the controller. A malformed, unsafe (a DOCTYPE or ENTITY declaration)
    or oversized (more than 4 MiB) input fails the task with a clear message.
positional: _input
options:
  _input:
    description:
      - A libvirt domain XML document (a string starting with C(<)), or a QEMU command line - a string
        (shell quoting and C(\) continuations as a shell reads them) or a list of argv words.
    type: raw
    required: true
  source:
    description:
      - C(auto) - an input starting with C(<) is libvirt XML, anything else a QEMU command line.
      - C(libvirt) or C(qemu) - force one reader.
    type: str
    default: auto
    choices: [auto, libvirt, qemu]
seealso:
  - plugin: iommu.host.check
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Read a domain defined in libvirt
  ansible.builtin.command: virsh dumpxml --inactive db-primary
  register: domxml
  changed_when: false

- name: Gate that VM on this host
  ansible.builtin.set_fact:
    vm: "{{ domxml.stdout | iommu.host.vm_requirements }}"

- name: Evaluate the VM's profiles and parameters with the gate
  ansible.builtin.debug:
    msg: >-
      {{ ansible_facts.iommu | iommu.host.check(profiles=vm.profiles, params=vm.params,
                                                devices=vm.devices, host=inventory_hostname) }}

- name: What the gate cannot judge in that definition
  ansible.builtin.debug:
    var: vm.problems

- name: A QEMU command line kept with the VM
  ansible.builtin.set_fact:
    vm: "{{ lookup('ansible.builtin.file', 'vms/nfv-01.args') | iommu.host.vm_requirements }}"

- name: An argv list
  ansible.builtin.set_fact:
    vm: >-
      {{ ['qemu-system-x86_64', '-M', 'q35', '-device', 'intel-iommu,caching-mode=on',
          '-device', 'vfio-pci,host=0000:3b:00.0'] | iommu.host.vm_requirements }}
"""

RETURN = r"""
---
_value:
  description: The requirements of the VM.
  type: dict
  contains:
    source:
      description: C(libvirt) or C(qemu).
      type: str
    name:
      description: The VM name (libvirt C(<name>), QEMU C(-name guest=)), or null.
      type: str
    arch:
      description: Guest architecture (libvirt C(<type arch=>), or from the binary C(qemu-system-<arch>)), or null.
      type: str
    machine:
      description: Machine type (C(pc-q35-9.2), C(q35), C(virt)), or null.
      type: str
    viommu:
      description:
        - C(model) - the QEMU device name of the vIOMMU (C(intel-iommu), C(amd-iommu), C(arm-smmuv3),
          C(virtio-iommu)) or null.
        - C(properties) - every property QEMU receives for it, under QEMU's names (C(caching-mode),
          C(aw-bits)), values normalised (on/off/yes/no/true/false to booleans, numbers to integers);
          C(id), C(bus), C(addr) and C(primary-bus) keep their text.
      type: dict
    devices:
      description: Assigned host devices - PCI addresses (C(0000:3b:00.0)) and mdev UUIDs - as C(iommu.host.check) takes them.
      type: list
      elements: str
    iommufd:
      description: Whether the VM's assigned devices use the iommufd backend (otherwise the legacy VFIO container).
      type: bool
    memory:
      description:
        - C(size) (bytes as QEMU receives them), C(max_size), C(slots), C(locked), C(hard_limit), C(shared),
          C(source) (C(anonymous), C(file), C(memfd), C(hugetlbfs)), C(hugepages) (a list of
          C({size, nodeset}); size null = the host's default huge page size), C(host_nodes), C(policy)
          and C(numa) (guest cells - C(id), C(cpus), C(size), C(host_nodes), C(policy), C(hugepage_size)).
      type: dict
    profiles:
      description: Profiles for C(iommu.host.check) - C(passthrough), plus the vIOMMU's profile (C(intel_viommu),
        C(amd_viommu), C(smmuv3_accel) for C(arm-smmuv3,accel=on), C(virtio_viommu)). C(live_migration) is
        never added - a definition does not say whether the VM will migrate.
      type: list
      elements: str
    params:
      description:
        - Parameters for C(iommu.host.check) - C(iommufd), C(viommu) (the model or C(none)), every vIOMMU
          property the gate knows (QEMU's name with C(-) written C(_)), the vfio-pci properties
          C(enable_migration) and C(x_device_dirty_page_tracking) when set, and C(aw_bits) 39 when an
          intel-iommu on a machine type up to 9.1 does not set it (QEMU's default there).
      type: dict
    problems:
      description: What the gate cannot judge or what was ignored, one sentence each.
      type: list
      elements: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.iommu.host.plugins.module_utils.vmdef.api import (
    SOURCES,
    VMDefinitionError,
    plain,
    requirements,
)


def vm_requirements(data, source="auto"):
    """Requirements of one VM definition; see DOCUMENTATION above."""
    try:
        source = plain(source)
    except VMDefinitionError as e:
        raise AnsibleFilterError("iommu.host.vm_requirements: %s" % e)
    if source not in SOURCES:
        raise AnsibleFilterError("iommu.host.vm_requirements: source must be one of %s, not %r" % (
            ", ".join(SOURCES), source))
    try:
        return requirements(data, source=source)
    except VMDefinitionError as e:
        raise AnsibleFilterError("iommu.host.vm_requirements: %s" % e)
    except Exception as e:  # pylint: disable=broad-except  # last line of defence: never a traceback
        raise AnsibleFilterError("iommu.host.vm_requirements: internal error reading the definition "
                                 "(%s: %s); please report it with the input" % (type(e).__name__, e))


class FilterModule(object):
    """VM definition filters."""

    def filters(self):
        return {"vm_requirements": vm_requirements}
