# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu.host.migration_pool: the strongest vIOMMU configuration a group of hosts accepts
(docs: DOCUMENTATION below)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: migration_pool
author: iommu.host contributors
version_added: "0.2.0"
short_description: The strongest vIOMMU configuration every host of a migration pool accepts
description:
  - For a group of hosts among which VMs migrate, finds per vIOMMU model the strongest value of each
    property that every host accepts, and for each property the host(s) that limit it, with the gate's
    message and remedy for the stronger value they refuse.
  - The values are found by asking the preflight gate itself (P(iommu.host.check#filter)) on each host's
    cached facts, trying each property's values from the strongest down - C(host) - device assignment,
    iommufd, interrupt remapping, IOMMU dirty tracking of the VFIO devices; C(intel-iommu) - C(aw_bits)
    (48, 39), C(fsts) (stage-1 nesting), C(pasid_bits) (20..0, QEMU 11.1); C(arm-smmuv3) - C(accel=on)
    (every host IDR comparison), C(oas) (48, 44), C(ssidsize) (20..0), C(ril); C(amd-iommu) - C(dma_remap);
    C(virtio-iommu) - the granules every host accepts.
  - A value counts as accepted by a host when the property's checks pass without a warning. A value the gate
    cannot confirm (a C(warn), e.g. facts gathered with C(sysfs_only) lack the device's hw_info) limits the pool,
    and the limiting host's entry says so (C(status=warn)); C(possible) is the strongest value no host is known
    to refuse (warnings ignored).
  - Hosts without facts, or without any device bound to VFIO, are not judged; they are listed in C(excluded).
  - With O(vms), each VM definition is gated on every pool host; a VM the pool cannot run everywhere is
    named with the hosts that would refuse it.
  - Pure data transformation on the controller, from the fact cache; never fails the task on odd facts.
positional: _input
options:
  _input:
    description:
      - The hosts - C(hostvars) (or any dict host name -> that host's variables, C(ansible_facts) or C(iommu) facts).
    type: dict
    required: true
  hosts:
    description:
      - The pool's host names (default every host of O(_input)), e.g. C(groups['pool_a']).
    type: list
    elements: str
  models:
    description:
      - vIOMMU models to compute - C(intel-iommu), C(arm-smmuv3), C(amd-iommu), C(virtio-iommu) (default all).
        The C(host) section is always computed.
    type: list
    elements: str
  vms:
    description:
      - VM definitions to check against the pool, as for P(iommu.host.placement#filter).
    type: raw
  params:
    description:
      - Profile parameters applied to every VM of O(vms), over each VM's own.
    type: dict
seealso:
  - plugin: iommu.host.placement
    plugin_type: filter
"""

EXAMPLES = r"""
- name: What vIOMMU can VMs of pool A use, and which host holds the pool back
  ansible.builtin.debug:
    msg: >-
      aw-bits {{ pool.models['intel-iommu'].properties.aw_bits.value }},
      limited by {{ pool.models['intel-iommu'].properties.aw_bits.limited_by | map(attribute='host') }}
  vars:
    pool: "{{ hostvars | iommu.host.migration_pool(hosts=groups['pool_a'], models=['intel-iommu']) }}"
  run_once: true

- name: VMs that cannot migrate everywhere in the pool
  ansible.builtin.debug:
    msg: "{{ item.name }} refused by {{ item.refused_by | map(attribute='host') | list }}"
  loop: >-
    {{ (hostvars | iommu.host.migration_pool(hosts=groups['pool_a'], vms=domain_xmls)).vms
       | selectattr('status', 'eq', 'exceeds') }}
  run_once: true
"""

RETURN = r"""
---
_value:
  description: The pool.
  type: dict
  contains:
    hosts:
      description: The hosts asked for.
      type: list
      elements: str
    members:
      description: The hosts judged (with facts and with devices bound to VFIO).
      type: list
      elements: str
    excluded:
      description: Hosts not judged, each C({host, reason}).
      type: list
      elements: dict
    models:
      description:
        - Per model (and C(host)) - C(properties), name -> C({value, possible, parameter, candidates, per_host,
          limited_by}) where C(value) is the pool's strongest accepted value (a list of granules
          for C(virtio-iommu)), C(possible) the strongest no host is known to refuse, C(per_host) each host's own
          strongest value and C(limited_by) the hosts holding the pool back, each C({host, value, possible, id,
          status, device, message, remedy}) with the finding that refused (C(fail)) or could not confirm (C(warn))
          the stronger value; and C(params), the gate parameters
          (P(iommu.host.check#filter) O(iommu.host.check#filter:params)) of the pool's strongest configuration,
          null when the model is not usable.
      type: dict
    unknown_models:
      description: Names in O(models) that are not vIOMMU models.
      type: list
      elements: str
    vms:
      description:
        - Per VM of O(vms) - C(name), C(viommu), C(status) (C(within), C(exceeds) or C(error)), C(refused_by)
          (each C({host, id, device, message, remedy, qemu_effect})) and C(error).
      type: list
      elements: dict
    evaluations:
      description: How many gate evaluations were run.
      type: int
"""

from ansible_collections.iommu.host.plugins.module_utils.fleet import api as fleet


def migration_pool(data, hosts=None, models=None, vms=None, params=None):
    """Per vIOMMU model, the strongest properties every host accepts; see DOCUMENTATION above."""
    return fleet.migration_pool(data, hosts=hosts, models=models, vms=vms, params=params)


class FilterModule(object):
    """Fleet migration-pool filters."""

    def filters(self):
        return {"migration_pool": migration_pool}
