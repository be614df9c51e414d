# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu.host.check: evaluate preflight requirements over IOMMU facts (docs: check.yml)."""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.fleet import api as fleet
from ansible_collections.iommu.host.plugins.module_utils.policy import api as policy

__metaclass__ = type


def _vm_inputs(vm, profiles, devices, params):
    """profiles, devices, params and problems for a VM definition (fleet.api.vm_inputs); explicit
    arguments win over the VM's."""
    vm_in = fleet.vm_inputs(vm, params=params, devices=devices)
    if vm_in.get("error"):
        return profiles, devices, params, [vm_in["error"]]
    chosen = profiles if profiles is not None else vm_in["profiles"]
    return chosen, vm_in["devices"], vm_in["params"], vm_in["problems"]


def check(data, profiles=None, devices=None, params=None, custom=None, host=None, vm=None):
    """Evaluate ``profiles`` for ``devices`` over the facts; see plugins/filter/check.yml.

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
