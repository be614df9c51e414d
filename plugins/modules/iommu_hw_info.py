#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: iommu_hw_info
short_description: Query the IOMMU behind named devices through IOMMUFD (IOMMU_GET_HW_INFO)
version_added: "0.1.0"
description:
  - Binds each named device's VFIO cdev (C(/dev/vfio/devices/vfioN)) to a private iommufd context
    (C(/dev/iommu)), issues C(IOMMU_GET_HW_INFO) and returns the hw_info type, the generic capability
    flags decoded (dirty tracking, PASID execute/privileged, ATS not supported), the PASID width, and the
    vendor data (Intel VT-d, AMD, ARM SMMUv3, Tegra241 CMDQV) both raw and decoded field by field.
  - "B(This module touches devices): binding a vfio-pci device resets it, and closing it resets it
    again. A device held open by any process (a running VM) is never opened: it is reported as in use."
  - In check mode nothing is opened; each device reports that it was skipped.
  - With the device bound, the C(VFIO_DEVICE_FEATURE) probes QEMU makes are read too - C(MIGRATION)
    (flags STOP_COPY, P2P, PRE_COPY) and C(DMA_LOGGING) (device dirty tracking) - into RV(devices.vfio_features).
  - Mediated devices have no IOMMU of their own; they are reported as such, never as a failure. An idle
    mdev with a VFIO cdev is bound to a private iommufd context for its VFIO features only.
author:
  - iommu.host maintainers (@iommu-host)
options:
  devices:
    description:
      - Devices to query, each a PCI address (C(0000:00:09.0) or C(00:09.0)), a VFIO cdev
        (C(/dev/vfio/devices/vfio0)), a sysfs device path, or an mdev UUID.
      - A PCI device must be bound to a VFIO driver (vfio-pci or a VFIO variant driver).
    type: list
    elements: str
    required: true
  hw_info_type:
    description:
      - Ask for a specific hw_info type (needs Linux 6.17); C(default) lets the driver choose.
    type: str
    choices: [default, intel_vtd, arm_smmuv3, tegra241_cmdqv, amd]
    default: default
  fail_on_error:
    description:
      - Fail the task when any device cannot be queried. With V(false) the failures are returned in
        RV(failures) and the task succeeds.
    type: bool
    default: true
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Devices are resolved and checked, but none is opened.
  diff_mode:
    description: Can show the changes a task would make.
    support: none
    details: The module changes nothing.
notes:
  - Needs root, or access to C(/dev/iommu) and the device's cdev.
  - Kernel support - C(IOMMU_GET_HW_INFO) and the VFIO cdev since Linux 6.6, dirty tracking flag since
    6.7, PASID fields since 6.15, input type since 6.17, ATS flag since 7.1. An older kernel leaves the
    newer fields zero; C(capabilities.reported_by_kernel) in each result says which fields this kernel reports.
seealso:
  - module: iommu.host.iommu_facts
"""

EXAMPLES = r"""
- name: Query the NIC assigned to a VM
  iommu.host.iommu_hw_info:
    devices:
      - "0000:3b:00.0"
  register: hw

- name: Require dirty tracking for live migration
  ansible.builtin.assert:
    that: hw.devices['0000:3b:00.0'].capabilities.dirty_tracking

- name: Read the Tegra241 CMDQV data (only returned when asked for)
  iommu.host.iommu_hw_info:
    devices: [/dev/vfio/devices/vfio0]
    hw_info_type: tegra241_cmdqv
"""

RETURN = r"""
devices:
  description: Results by PCI address (or mdev UUID).
  returned: always
  type: dict
  contains:
    source:
      description: C(iommufd); C(none) when skipped (check mode); C(sysfs) for a mediated device.
      type: str
      returned: always
    type:
      description: hw_info type name (C(intel_vtd), C(arm_smmuv3), C(tegra241_cmdqv), C(amd), C(selftest), C(none), C(unknown)).
      type: str
      returned: when queried
      sample: intel_vtd
    type_id:
      description: The numeric C(out_data_type).
      type: int
      returned: when queried
      sample: 1
    capabilities:
      description: C(out_capabilities) decoded - C(dirty_tracking), C(pasid_exec), C(pasid_priv),
        C(ats_not_supported), C(max_pasid_log2), C(raw), and C(reported_by_kernel).
      type: dict
      returned: when queried
    vendor:
      description: The vendor struct decoded by the vendor decoder (register sections, C(derived), C(raw)).
      type: dict
      returned: when queried
    raw:
      description: The raw vendor data (hex) and raw capability word.
      type: dict
      returned: when queried
    device_reset:
      description: True - the device was reset by the query.
      type: bool
      returned: when queried
    consistent_with_sysfs:
      description: Whether the registers equal the unit's sysfs registers (VT-d cap/ecap, AMD EFR).
      type: dict
      returned: when queried
    has_iommu:
      description: False for a mediated device.
      type: bool
      returned: for mediated devices
    vfio:
      description: How the device is bound to VFIO - C(bound), C(driver), C(variant), C(cdev),
        C(detected_by), C(source).
      type: dict
      returned: when queried, and for mediated devices
    vfio_features:
      description: The C(VFIO_DEVICE_FEATURE) probes - C(migration) (C(supported), C(flags) with C(stop_copy),
        C(p2p), C(pre_copy), C(raw); or C(supported=false) with C(errno) and C(error)) and C(dma_logging)
        (C(supported), plus C(errno) and C(error) when not). C(source) is C(vfio:VFIO_DEVICE_FEATURE), or
        C(none) with C(skipped) when the device was not opened.
      type: dict
      returned: when queried or skipped, and for mediated devices
failures:
  description: One entry per device that could not be queried - C(device), C(code), C(message), C(remedy),
    C(errno), C(step).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.iommu.host.plugins.module_utils.decode import api as decode
from ansible_collections.iommu.host.plugins.module_utils import iommu_facts


def failure_text(failures):
    return "; ".join(
        "%s: %s%s" % (f.get("device"), f.get("message"),
                      " Remedy: %s" % f["remedy"] if f.get("remedy") else "")
        for f in failures)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            devices=dict(type="list", elements="str", required=True),
            hw_info_type=dict(type="str", default="default",
                              choices=["default", "intel_vtd", "arm_smmuv3", "tegra241_cmdqv", "amd"]),
            fail_on_error=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    results, failures = iommu_facts.query_named(
        params["devices"],
        in_type=decode.requested_type(params["hw_info_type"]),
        check_mode=module.check_mode,
    )
    if failures and params["fail_on_error"]:
        module.fail_json(msg="IOMMU query failed for %d device(s): %s" % (len(failures), failure_text(failures)),
                         devices=results, failures=failures)
    module.exit_json(changed=False, devices=results, failures=failures)


if __name__ == "__main__":
    main()
