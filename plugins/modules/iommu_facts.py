#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: iommu_facts
short_description: Gather the IOMMU capabilities of a host as facts
version_added: "0.1.0"
description:
  - Returns C(ansible_facts.iommu) - kernel support for IOMMUFD and the VFIO cdev, the IOMMU-related
    kernel command line, ACPI/device-tree firmware tables, every IOMMU unit with its raw and decoded
    registers, every IOMMU group, every PCI device with its driver, group, unit and VFIO cdev,
    mediated devices, and the C(IOMMU_GET_HW_INFO) answer for devices bound to a VFIO driver.
  - For every PCI device and mdev, C(vfio) says whether it is bound to any VFIO driver - vfio-pci or a
    VFIO variant driver such as C(mlx5_vfio_pci) - as the kernel shows it (the device's C(vfio-dev/)
    entry, the driver module being a holder of C(vfio_pci_core)/C(vfio), or the group's C(/dev/vfio/N)
    node), not from a list of driver names.
  - Every device that is opened anyway also gets C(vfio_features) - the C(VFIO_DEVICE_FEATURE) probes QEMU
    makes - C(MIGRATION) (flags STOP_COPY, P2P, PRE_COPY) and C(DMA_LOGGING) (device dirty tracking).
    Idle mdevs with a VFIO cdev are bound to a private iommufd context only for these probes (an mdev
    has no IOMMU, hence no hw_info).
  - Each section names the source of its values (sysfs file, /proc file, kernel config or the iommufd ioctl).
  - "B(Which options touch devices): only the default O(sysfs_only=false). It binds every device that is
    bound to a VFIO driver, has a VFIO cdev and is held open by no process (or only those listed in
    O(devices)) to a private iommufd context to read C(IOMMU_GET_HW_INFO) and the C(VFIO_DEVICE_FEATURE)
    probes. Binding a vfio-pci device B(resets it), and closing it resets it again. A device or mdev that
    any process holds open (C(/dev/vfio/devices/vfioN) or its group node C(/dev/vfio/N)) is never opened."
  - With O(sysfs_only=true), or in check mode, no device is opened; the IOMMU registers come from sysfs
    (Intel VT-d C(cap)/C(ecap), AMD C(features)).
  - A host without an IOMMU gets facts that say so (C(present=false)), not an error. Mediated devices are
    reported as having no IOMMU of their own.
  - Works as a facts module of C(gather_facts) - set C(facts_modules = iommu.host.iommu_facts, setup)
    in C(ansible.cfg) (or C(ANSIBLE_FACTS_MODULES)); see docs/facts.md.
author:
  - iommu.host maintainers (@iommu-host)
options:
  sysfs_only:
    description:
      - Read sysfs and procfs only; open no device. The generic capability flags (dirty tracking,
        PASID, ATS) are then unknown, the vendor registers still come from sysfs where the kernel
        exposes them (not for ARM SMMUv3).
    type: bool
    default: false
  devices:
    description:
      - Limit the iommufd query to these PCI addresses (C(0000:00:09.0)) and mdev UUIDs. Other devices
        are still reported from sysfs. Default is every idle device bound to a VFIO driver, and every
        idle mdev with a VFIO cdev.
    type: list
    elements: str
  hw_info_type:
    description:
      - Ask the IOMMU driver for a specific hw_info type (needs Linux 6.17). C(default) lets the
        driver choose. C(tegra241_cmdqv) is only returned when asked for.
    type: str
    choices: [default, intel_vtd, arm_smmuv3, tegra241_cmdqv, amd]
    default: default
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: In check mode no device is opened, as with O(sysfs_only=true).
  diff_mode:
    description: Can show the changes a task would make.
    support: none
    details: The module changes nothing.
  facts:
    description: Action returns an C(ansible_facts) dictionary that will update existing host facts.
    support: full
notes:
  - Needs root (or read access to C(/dev/iommu) and C(/dev/vfio/devices/*)) for the iommufd query; the
    sysfs part works for any user, though some files (ACPI tables, other users' C(/proc/PID/fd)) need root.
  - Binding needs interrupt remapping (MSI isolation); without it the kernel refuses with EPERM and the
    device's C(hw_info.error) explains it. On Arm the GIC ITS isolates MSIs
    (C(kernel.interrupt_remapping.mechanism=gicv3_its)); an SMMU remaps no interrupts.
seealso:
  - module: iommu.host.iommu_hw_info
  - ref: iommu.host.decode_hw_info filter <ansible_collections.iommu.host.decode_hw_info_filter>
    description: Decode registers in a playbook.
"""

EXAMPLES = r"""
- name: Gather IOMMU facts (opens idle vfio-pci devices to read IOMMU_GET_HW_INFO)
  iommu.host.iommu_facts:

- name: Gather without touching any device
  iommu.host.iommu_facts:
    sysfs_only: true

- name: Show dirty-tracking support of the assigned NIC
  ansible.builtin.debug:
    msg: "{{ ansible_facts.iommu.devices['0000:00:09.0'].hw_info.capabilities.dirty_tracking }}"

- name: Fail early on hosts without an IOMMU
  ansible.builtin.assert:
    that: ansible_facts.iommu.present
    fail_msg: No IOMMU is active on {{ inventory_hostname }}
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to ansible_facts.
  returned: always
  type: complex
  contains:
    iommu:
      description: The IOMMU facts. The full schema, field by field, is in docs/facts.md.
      returned: always
      type: complex
      contains:
        schema_version:
          description: Version of this schema (1).
          type: int
          returned: always
        mode:
          description: C(iommufd) or C(sysfs_only).
          type: str
          returned: always
        present:
          description: Whether any IOMMU unit is active (the iommufd selftest unit does not count).
          type: bool
          returned: always
        vendors:
          description: Vendors of the active units (C(intel_vtd), C(amd), C(arm_smmuv3), C(virtio)).
          type: list
          elements: str
          returned: always
        kernel:
          description: Kernel release, relevant config options, iommufd / VFIO cdev / vfio-pci support,
            device nodes, interrupt remapping state and module parameters, each with its source.
          type: dict
          returned: always
        cmdline:
          description: IOMMU-related kernel command line arguments and what they mean.
          type: dict
          returned: always
        acs:
          description: Whether C(pcie_acs_override) is on the kernel command line (and its values), and
            whether extended config space was readable. Per device, C(upstream), C(acs), C(acs_path) and
            C(sriov) (see docs/facts.md).
          type: dict
          returned: always
        firmware:
          description: ACPI DMAR/IVRS/IORT tables and device-tree IOMMU nodes.
          type: dict
          returned: always
        units:
          description: IOMMU units by name (C(dmar0), C(ivhd0), ...) with raw and decoded registers,
            their devices, and the iommufd view when a device behind them was queried. An SMMUv3 has no
            registers in sysfs (C(registers={}), C(registers_note)); its registers come only from the
            iommufd view (C(iommufd.source)).
          type: dict
          returned: always
        groups:
          description: IOMMU groups by id with default domain type, devices and reserved regions.
          type: dict
          returned: always
        devices:
          description: PCI devices by address with ids, class, driver, IOMMU unit and group, group
            viability, VFIO cdev, processes using it, C(vfio) (bound to any VFIO driver, which one,
            whether a variant driver, the evidence), and C(hw_info) and C(vfio_features) for devices
            bound to a VFIO driver.
          type: dict
          returned: always
        mdevs:
          description: Mediated devices by UUID with C(vfio) and, when opened, C(vfio_features);
            C(has_iommu) is always false.
          type: dict
          returned: always
        queried:
          description: PCI devices that were opened (and therefore reset) to read their hw_info.
          type: list
          elements: str
          returned: always
        queried_mdevs:
          description: Mediated devices that were opened to probe their VFIO features.
          type: list
          elements: str
          returned: always
        summary:
          description: Counts and lists for a quick look.
          type: dict
          returned: always
        capabilities:
          description: A flat summary (booleans, numbers, short strings) for grouping hosts with
            C(group_by) or the C(constructed) inventory plugin - vendor, iommufd_usable, vfio_cdev,
            interrupt_remapping, scalable_mode, max_iova_bits, nesting, pasid_bits, dirty_tracking,
            dirty_tracking_devices, vfio_devices and more; see docs/facts.md.
          type: dict
          returned: always
        findings:
          description: Problems met while gathering (unreadable files, refused queries), each with
            code, message, device and remedy. Gathering never fails because of them.
          type: list
          elements: dict
          returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.iommu.host.plugins.module_utils.decode import api as decode
from ansible_collections.iommu.host.plugins.module_utils import iommu_facts


def main():
    module = AnsibleModule(
        argument_spec=dict(
            sysfs_only=dict(type="bool", default=False),
            devices=dict(type="list", elements="str"),
            hw_info_type=dict(type="str", default="default",
                              choices=["default", "intel_vtd", "arm_smmuv3", "tegra241_cmdqv", "amd"]),
        ),
        supports_check_mode=True,
    )
    params = module.params
    facts = iommu_facts.gather(
        sysfs_only=params["sysfs_only"] or module.check_mode,
        selected=set(a.lower() for a in params["devices"]) if params["devices"] else None,
        in_type=decode.requested_type(params["hw_info_type"]),
    )
    module.exit_json(changed=False, ansible_facts={"iommu": facts})


if __name__ == "__main__":
    main()
