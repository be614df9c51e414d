# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu.host.placement: VMs x hosts placement matrix from cached IOMMU facts (docs: DOCUMENTATION below)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: placement
author: iommu.host contributors
version_added: "0.2.0"
short_description: On which hosts can each VM start - a VMs x hosts matrix from cached IOMMU facts
description:
  - For every VM definition and every host, runs the preflight gate (the same rules as
    P(iommu.host.check#filter)) with the VM's profiles, parameters and assigned devices over the host's
    cached IOMMU facts, and returns the verdict (C(pass), C(warn), C(fail)) with the first failing
    requirement (else the first warning) - its id, message, remedy and what QEMU does about it.
  - Pure data transformation on the controller, from the fact cache; it touches no host. Odd or
    missing facts never fail the task - a host without facts gets a C(fail) cell C(facts.iommu).
  - A VM's assigned devices are host PCI addresses. A host that lacks them gets a C(fail) cell
    C(selection.devices); give O(devices=all_vfio) to gate every device bound to VFIO on each host instead.
  - Hosts with identical facts, and VMs with identical gate inputs, share one evaluation.
positional: _input, vms
options:
  _input:
    description:
      - The hosts - C(hostvars) (or any dict host name -> that host's variables, C(ansible_facts) or C(iommu) facts).
    type: dict
    required: true
  vms:
    description:
      - The VM definitions - a list of P(iommu.host.vm_requirements#filter) outputs, libvirt domain XML
        documents or QEMU command lines, or a dict VM name -> definition.
    type: raw
    required: true
  params:
    description:
      - Profile parameters applied to every VM, over each VM's own (see P(iommu.host.check#filter)).
    type: dict
  devices:
    description:
      - Devices to gate for every VM instead of each VM's own, e.g. C(all_vfio).
    type: raw
  hosts:
    description:
      - Host names to place on (default every host of O(_input)), e.g. C(groups['hypervisors']).
    type: list
    elements: str
seealso:
  - plugin: iommu.host.check
    plugin_type: filter
  - plugin: iommu.host.migration_pool
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Place two libvirt domains on every hypervisor, from the fact cache
  ansible.builtin.set_fact:
    matrix: >-
      {{ hostvars | iommu.host.placement([lookup('file', 'web.xml'), lookup('file', 'db.xml')],
                                         hosts=groups['hypervisors']) }}
  run_once: true

- name: Hosts where each VM can start
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.pass + item.warn }}"
  loop: "{{ matrix.vms }}"

- name: Why a VM cannot start on a host
  ansible.builtin.debug:
    msg: "{{ matrix.matrix['web']['hv07'].first.message }} Fix: {{ matrix.matrix['web']['hv07'].first.remedy }}"
"""

RETURN = r"""
---
_value:
  description: The placement matrix.
  type: dict
  contains:
    hosts:
      description: The hosts, in order.
      type: list
      elements: str
    hosts_without_facts:
      description: Hosts that have no C(iommu) facts (every cell of theirs is C(fail)).
      type: list
      elements: str
    vms:
      description:
        - Per VM - C(name) (the domain name, else C(vm<n>); duplicates get C(#2)...), C(viommu) (the
          vIOMMU model), C(problems) (parts the gate cannot judge), C(error) (the definition could not be
          read), and the hosts per verdict C(pass), C(warn), C(fail).
      type: list
      elements: dict
    matrix:
      description:
        - VM name -> host -> cell. A cell has C(status), C(failed) and C(warnings) (counts) and C(first),
          the first failing requirement, else the first warning, else null -
          C({id, status, device, message, remedy, qemu_effect}).
      type: dict
    cells:
      description: The same cells as a flat list, each with C(vm) and C(host) (for tables and reports).
      type: list
      elements: dict
    evaluations:
      description: How many gate evaluations were run (distinct facts x distinct VM inputs).
      type: int
"""

from ansible_collections.iommu.host.plugins.module_utils.fleet import api as fleet


def placement(data, vms, params=None, devices=None, hosts=None):
    """The verdict of every VM on every host; see DOCUMENTATION above. Never raises on odd facts."""
    return fleet.placement(data, vms, params=params, devices=devices, hosts=hosts)


class FilterModule(object):
    """Fleet placement filters."""

    def filters(self):
        return {"placement": placement}
