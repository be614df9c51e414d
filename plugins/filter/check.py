# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu.host.check: evaluate preflight requirements over IOMMU facts (docs: check.yml)."""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.policy import api as policy

__metaclass__ = type


def _vm_inputs(vm, profiles, devices, params):
    """profiles, devices, params and problems for a VM definition (iommu.host.vm_requirements output,
    or the libvirt XML / QEMU command line itself); explicit arguments win over the VM's."""
    if isinstance(vm, (str, list, tuple)):
        from ansible_collections.iommu.host.plugins.module_utils.vmdef.api import VMDefinitionError, requirements
        try:
            vm = requirements(vm)
        except VMDefinitionError as e:
            return profiles, devices, params, ["the VM definition cannot be read: %s" % e]
    vm = policy.plain(vm)
    if not isinstance(vm, dict) or not isinstance(vm.get("profiles"), list):
        return profiles, devices, params, ["vm must be the output of iommu.host.vm_requirements (a dict with "
                                           "profiles, params and devices), a libvirt domain XML or a QEMU "
                                           "command line"]
    chosen = profiles if profiles is not None else vm["profiles"]
    declared = set()
    for name in chosen if isinstance(chosen, list) else []:
        declared.update(policy.PROFILES.get(name if isinstance(name, str) else "", {}).get("params", ()))
    # the VM states every property it has; keep those the selected profiles judge
    merged = dict((k, v) for k, v in (vm.get("params") or {}).items() if k in declared)
    merged.update(policy.plain(params) or {})
    vm_devices = list(vm.get("devices") or [])
    problems = ["%s" % p.get("message", p) if isinstance(p, dict) else "%s" % p for p in vm.get("problems") or []]
    if devices is None and not vm_devices:
        problems.append("the VM definition assigns no host device")
    return (chosen,
            devices if devices is not None else (vm_devices or policy.ALL_VFIO), merged, problems)


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
        policy.add_findings(result, [policy.meta_finding(
            "vm.definition", result["host"], policy.WARN,
            "The gate cannot judge part of the VM definition: %s." % "; ".join(problems),
            {"vm": "iommu.host.vm_requirements"}, "Review those parts of the VM by hand, or express them as "
                                                   "profiles/params.", "iommu.host vm_requirements",
            "VM definition fully judged")])
    return result


class FilterModule(object):
    """IOMMU preflight filters."""

    def filters(self):
        return {"check": check}
