#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: sriov_vfs
short_description: Set the number of SR-IOV virtual functions of a PCI physical function, persistently
version_added: "0.3.0"
description:
  - Creates or removes the SR-IOV virtual functions (VFs) of a physical function (PF) through the kernel's
    sysfs interface - C(sriov_numvfs), C(sriov_drivers_autoprobe), validated against C(sriov_totalvfs)
    (Documentation/ABI/testing/sysfs-bus-pci). The VFs can then be bound with M(iommu.host.vfio_pci).
  - The kernel changes a non-zero number of VFs only through 0 (it refuses C(2) -> C(4) with EBUSY), so a
    change from one non-zero count to another writes C(0) first; that removes every VF of the PF.
  - "B(Refusals): every VF that a change would remove is checked first. A VF bound to a VFIO driver whose
    VFIO device or group node a process holds open (a running VM) is always refused - removing it would
    block until that process lets go. A VF with a network interface that is up, or that backs a mounted
    filesystem or swap, is refused unless O(force=true). The failure names each VF and what holds it."
  - "B(Which options touch devices): O(num_vfs) (and O(state=absent)) creates or removes VF PCI devices -
    removing VFs takes them from their drivers and from any guest; O(drivers_autoprobe) decides whether new
    VFs are taken by their native driver (C(igbvf), C(iavf), C(mlx5_core), ...) at once. The PF itself is
    not unbound. This module opens no VFIO device."
  - "B(Persistence) (O(persistent=true)): a udev rule file O(udev_rule_file) with, per PF, a rule on the
    PF's C(bind) event, and on its C(add) event when a driver is already bound (C(ACTION==\"add|bind\"),
    C(SUBSYSTEM==\"pci\"), C(DRIVER==\"?*\"), the PF's address, vendor and device), that writes
    C(sriov_drivers_autoprobe) and then C(sriov_numvfs). It runs whenever the PF's driver binds - when the
    driver module is loaded late, after a rebind - and at boot's coldplug (C(udevadm trigger) replays
    C(add) for a PF whose built-in driver bound before udevd started), which a oneshot boot unit does not
    all cover. The module owns the file; O(state=absent) removes the PF's entry, and the file with the last one."
  - Check mode computes the same plan as a real run and predicts the VF addresses from the PF's First VF
    Offset and VF Stride.
author:
  - iommu.host maintainers (@iommu-host)
options:
  pf:
    description:
      - The physical function - a PCI address (C(0000:03:00.0) or C(03:00.0)) or the name of its network
        interface (C(enp3s0)).
    type: str
    required: true
  num_vfs:
    description:
      - The number of VFs wanted, from 0 to the PF's C(sriov_totalvfs).
      - Omitted with O(state=present), the current number is kept (and persisted).
    type: int
  drivers_autoprobe:
    description:
      - C(sriov_drivers_autoprobe) - whether new VFs are probed by their native driver when they are
        created. Set C(false) for VFs meant for vfio-pci (they then come up with no driver).
      - Omitted, the PF's current setting is left as it is.
    type: bool
  state:
    description:
      - C(present) sets O(num_vfs) (and O(drivers_autoprobe)); C(absent) removes every VF and the PF's entry
        in O(udev_rule_file).
    type: str
    choices: [present, absent]
    default: present
  persistent:
    description:
      - Keep the setting across reboots and driver reloads with the udev rule in O(udev_rule_file).
      - With C(false) the file is left as it is.
    type: bool
    default: true
  force:
    description:
      - Remove VFs whose network interface is up, or that back storage. VFs held open through VFIO are
        refused even so.
    type: bool
    default: false
  udev_rule_file:
    description:
      - The udev rule file the module owns.
    type: path
    default: /etc/udev/rules.d/70-iommu-host-sriov.rules
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Check mode computes the same plan as a real run (same actions, same VF addresses).
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: Shows the udev rule file and the PF's SR-IOV settings before and after.
notes:
  - Needs root. Requires Python 3.9 or later on the target and a kernel with C(CONFIG_PCI_IOV).
  - The PF must be bound to its driver; the kernel creates VFs through it.
  - Persistence needs udev with C(bind) events (systemd 247+, kernel 4.14+).
seealso:
  - module: iommu.host.vfio_pci
  - module: iommu.host.iommu_facts
"""

EXAMPLES = r"""
- name: Four VFs on the NIC enp3s0, left without a driver for vfio-pci, kept across reboots
  iommu.host.sriov_vfs:
    pf: enp3s0
    num_vfs: 4
    drivers_autoprobe: false
  register: sriov

- name: Bind the first VF to vfio-pci
  iommu.host.vfio_pci:
    devices: ["{{ sriov.vfs[0] }}"]

- name: Remove the VFs of a PF and its boot-time rule
  iommu.host.sriov_vfs:
    pf: "0000:03:00.0"
    state: absent
"""

RETURN = r"""
pf:
  description: The PF's PCI address.
  returned: always
  type: str
  sample: "0000:03:00.0"
ids:
  description: The PF's C(vendor:device).
  returned: always
  type: str
  sample: "8086:10c9"
driver:
  description: The PF's driver.
  returned: always
  type: str
  sample: igb
totalvfs:
  description: C(sriov_totalvfs).
  returned: always
  type: int
  sample: 7
num_vfs_before:
  description: C(sriov_numvfs) before the run.
  returned: always
  type: int
num_vfs:
  description: C(sriov_numvfs) after the run (in check mode, the prediction).
  returned: always
  type: int
drivers_autoprobe:
  description: C(sriov_drivers_autoprobe) after the run (in check mode, the prediction).
  returned: always
  type: bool
vfs:
  description: The VFs' PCI addresses after the run (in check mode, predicted from the First VF Offset
    and VF Stride; null if they cannot be).
  returned: always
  type: list
  elements: str
  sample: ["0000:03:10.0", "0000:03:10.2"]
vfs_removed:
  description: The VFs the run removed (or would remove).
  returned: always
  type: list
  elements: str
actions:
  description: What was (in check mode, would be) written, in order.
  returned: always
  type: list
  elements: str
  sample: ["set sriov_drivers_autoprobe to 0", "write 2 to sriov_numvfs"]
file:
  description: The udev rule file, with C(path), C(action) (C(create), C(update), C(remove), C(unchanged))
    and C(changed).
  returned: always
  type: dict
persistent_pfs:
  description: The PFs in the udev rule file after the run.
  returned: always
  type: list
  elements: str
in_use_overridden:
  description: With O(force=true), the VFs removed although in use, with what held them.
  returned: always
  type: dict
failures:
  description: On failure, each refusal or error with C(device), C(code), C(message), C(remedy) (and
    C(holders), C(errno), C(errno_name), C(attribute) when they apply).
  returned: failure
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.iommu.host.plugins.module_utils import iommu_sriov
from ansible_collections.iommu.host.plugins.module_utils import iommu_sysfs
from ansible_collections.iommu.host.plugins.module_utils import iommu_vfio


def _result(plan):
    return dict(
        changed=plan["changed"], pf=plan["pf"], ids=plan["ids"], driver=plan["driver"],
        totalvfs=plan["totalvfs"], num_vfs_before=plan["num_vfs_before"], num_vfs=plan["num_vfs_after"],
        drivers_autoprobe=plan["drivers_autoprobe_after"], vfs=plan["vfs_after"],
        vfs_removed=plan["vfs_removed"], actions=[a["text"] for a in plan["actions"]],
        file=dict(path=plan["file"]["path"], action=plan["file"]["action"], changed=plan["file"]["changed"]),
        persistent_pfs=plan["persistent_pfs"], in_use_overridden=plan["in_use_overridden"])


def _diff(plan):
    diffs = []
    f = plan["file"]
    if f["changed"]:
        diffs.append({"before_header": f["path"], "after_header": f["path"],
                      "before": f["before"] or "", "after": f["after"] or ""})
    if plan["actions"]:
        diffs.append({"before_header": "%s SR-IOV" % plan["pf"], "after_header": "%s SR-IOV" % plan["pf"],
                      "before": "sriov_numvfs: %d\nsriov_drivers_autoprobe: %s\n"
                                % (plan["num_vfs_before"], plan["drivers_autoprobe_before"]),
                      "after": "sriov_numvfs: %d\nsriov_drivers_autoprobe: %s\n"
                               % (plan["num_vfs_after"], plan["drivers_autoprobe_after"])})
    return diffs


def main():
    module = AnsibleModule(
        argument_spec=dict(
            pf=dict(type="str", required=True),
            num_vfs=dict(type="int"),
            drivers_autoprobe=dict(type="bool"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            persistent=dict(type="bool", default=True),
            force=dict(type="bool", default=False),
            udev_rule_file=dict(type="path", default=iommu_sriov.DEFAULT_RULES_FILE),
        ),
        supports_check_mode=True,
    )
    p = module.params
    reader = iommu_sysfs.SysfsReader("/")
    scanner = iommu_vfio.UsageScanner(reader)
    try:
        plan = iommu_sriov.build_plan(
            reader, p["pf"], num_vfs=p["num_vfs"], drivers_autoprobe=p["drivers_autoprobe"], state=p["state"],
            persistent=p["persistent"], force=p["force"], rules_file=p["udev_rule_file"], scanner=scanner)
    except iommu_sriov.SriovError as e:
        module.fail_json(msg="iommu.host.sriov_vfs: %s" % e, failures=e.failures)
    result = _result(plan)
    if module._diff:
        result["diff"] = _diff(plan)
    if module.check_mode or not plan["changed"]:
        module.exit_json(**result)
    try:
        after = iommu_sriov.execute(plan, reader, iommu_sriov.SysfsWriter("/"))
    except iommu_sriov.SriovError as e:
        module.fail_json(msg="iommu.host.sriov_vfs: %s" % e, failures=e.failures, **result)
    except (OSError, IOError) as e:
        module.fail_json(msg="iommu.host.sriov_vfs: %s" % e, **result)
    result["vfs"] = after.get("vfs")
    result["num_vfs"] = after.get("numvfs")
    result["drivers_autoprobe"] = after.get("drivers_autoprobe")
    if plan["file"]["changed"]:
        udevadm = module.get_bin_path("udevadm")
        if udevadm:
            module.run_command([udevadm, "control", "--reload"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
