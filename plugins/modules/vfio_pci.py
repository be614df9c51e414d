#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: vfio_pci
short_description: Bind PCI devices to vfio-pci or a VFIO variant driver, or release them to their default driver
version_added: "0.1.0"
description:
  - Binds the selected PCI devices to C(vfio-pci) with the kernel's C(driver_override) interface
    (write C(vfio-pci) to C(driver_override), unbind from the current driver, C(drivers_probe)), then
    checks that C(vfio-pci) took each device. C(new_id) is never used, so no other device with the same
    ID is affected. The C(vfio-pci) module is loaded (C(modprobe vfio-pci)) when its driver is absent.
  - With O(driver) the selected devices go to a named VFIO variant driver instead (for example
    C(mlx5_vfio_pci), C(virtio_vfio_pci), C(pds_vfio_pci), C(hisi_acc_vfio_pci), C(nvgrace_gpu_vfio_pci) -
    the drivers that implement VFIO live migration), the same way - its name in C(driver_override), as
    C(driverctl set-override) does. A driver that is not loaded is loaded with C(modprobe <driver>) first
    (RV(modules_loaded) says so). A driver that the kernel shows is not a VFIO driver - its module is loaded
    but is no holder of C(vfio_pci_core) or C(vfio) - is refused before any device is touched; a built-in
    driver cannot be told apart, and the bind is then verified.
  - With O(state=absent) the devices are released - C(driver_override) is cleared, the device is
    unbound from C(vfio-pci) and re-probed, so its default driver takes it back; the result says which.
  - Devices are selected by PCI address, C(vendor:device) ID (every match) or IOMMU group number.
  - "IOMMU groups: VFIO can only use a group when every endpoint in it is on a VFIO driver (or has no
    driver). O(group_policy=bind_all) binds every endpoint of the selected devices' groups (group members
    that were not selected go to C(vfio-pci), whatever O(driver) is, and stay on a VFIO driver they are
    already on); O(group_policy=refuse) fails naming the group members that were not selected."
  - "B(Safety): a device is refused - unless O(force=true) - when it, or any member of its group that
    would be taken, backs a mounted filesystem or active swap (block devices, including virtio-blk,
    NVMe and SCSI controllers, and 9p/virtiofs mounts over a virtio PCI device), has a network
    interface that is up with an address or a route, or drives a framebuffer console. The failure
    names the device, the interface, mount or framebuffer, why, and the remedy."
  - "B(Which options touch devices): binding (O(state=present)) unbinds the device from its driver,
    so the host loses it (an interface disappears, for example). Releasing re-probes it with its
    default driver. This module never opens a VFIO device; opening one (a VM start, or
    M(iommu.host.iommu_facts) without C(sysfs_only)) resets it."
  - "B(Persistence) (O(persistent=true)): a udev rule file O(udev_rule_file) sets C(driver_override)
    to the device's VFIO driver for each bound address when the device is added at boot (and re-probes a
    device that a built-in or initramfs driver claimed first), and O(modules_load_file) loads that driver's
    module (C(vfio-pci), and each variant driver named) at boot.
    The module owns both files; O(state=absent) removes the released addresses and deletes the files
    with the last one. The rule keeps each device's original driver in a comment, so a later release
    can predict it."
author:
  - iommu.host maintainers (@iommu-host)
options:
  devices:
    description:
      - PCI addresses (C(0000:00:09.0) or C(00:09.0)), C(vendor:device) IDs (C(8086:10d3), all matching
        devices) or IOMMU group numbers (C(7) or C(group:7)).
    type: list
    elements: str
    required: true
  driver:
    description:
      - The VFIO driver the selected devices are bound to with O(state=present) - C(vfio-pci) or a VFIO
        variant driver, named as in C(/sys/bus/pci/drivers).
      - Ignored with O(state=absent), which releases a device from whatever VFIO driver it is on.
    type: str
    default: vfio-pci
  state:
    description:
      - C(present) binds the devices to O(driver) (C(vfio-pci) by default); C(absent) releases them back to
        their default driver.
    type: str
    choices: [present, absent]
    default: present
  group_policy:
    description:
      - C(bind_all) also binds (and with O(state=absent) releases) the other endpoints of each selected
        device's IOMMU group. Bridges in the group are left alone.
      - C(refuse) fails, naming the members, when a selected device's group holds endpoints that were not
        selected and are bound to another driver.
    type: str
    choices: [bind_all, refuse]
    default: bind_all
  persistent:
    description:
      - Keep the binding across reboots with the files O(udev_rule_file) and O(modules_load_file).
      - With C(false) and O(state=present) the files are left as they are.
    type: bool
    default: true
  force:
    description:
      - Bind even when a device backs a mounted filesystem or swap, carries a network link that is up
        with an address or route, or drives the console. The host loses that storage, link or console.
    type: bool
    default: false
  udev_rule_file:
    description:
      - The udev rule file the module owns.
    type: path
    default: /etc/udev/rules.d/80-iommu-host-vfio.rules
  modules_load_file:
    description:
      - The modules-load.d file the module owns (loads C(vfio-pci) and the variant drivers at boot).
    type: path
    default: /etc/modules-load.d/iommu-host-vfio.conf
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Check mode computes the same plan as a real run (same C(changed), same per-device actions).
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: Shows the persistence files before and after, and each device's driver before and after.
notes:
  - Needs root. Requires Python 3.9 or later on the target.
  - The boot-time part needs udev (systemd-udevd or eudev). On a host without udev the files are still
    written but nothing applies them at boot.
  - A device bound to C(vfio-pci) by other means (C(vfio-pci.ids=), C(new_id)) gets C(driver_override) set,
    which counts as a change.
seealso:
  - module: iommu.host.iommu_facts
  - module: iommu.host.kernel_args
"""

EXAMPLES = r"""
- name: Bind both e1000e NICs (every 8086:10d3) to vfio-pci, persistently
  iommu.host.vfio_pci:
    devices: ['8086:10d3']

- name: Bind one device; fail if its IOMMU group holds anything else
  iommu.host.vfio_pci:
    devices: [0000:02:01.0]
    group_policy: refuse

- name: Bind IOMMU group 7 for this boot only
  iommu.host.vfio_pci:
    devices: ['7']
    persistent: false

- name: Bind a ConnectX VF to its migration-capable VFIO variant driver (like driverctl set-override)
  iommu.host.vfio_pci:
    devices: [0000:3b:00.2]
    driver: mlx5_vfio_pci

- name: Give the NIC back to its driver and drop it from the boot-time rule
  iommu.host.vfio_pci:
    devices: [0000:00:09.0]
    state: absent
"""

RETURN = r"""
devices:
  description: One entry per device the module acted on or checked, selected devices first.
  returned: always
  type: list
  elements: dict
  contains:
    address:
      description: PCI address.
      type: str
      sample: "0000:00:09.0"
    ids:
      description: C(vendor:device).
      type: str
      sample: "8086:10d3"
    iommu_group:
      description: IOMMU group number.
      type: str
      sample: "6"
    selected:
      description: Whether the device was selected, or added as a member of a selected device's group.
      type: bool
    group_member_of:
      description: The selected devices whose group brought this device in.
      type: list
      elements: str
    group_members:
      description: Every endpoint of the device's IOMMU group.
      type: list
      elements: str
    driver_before:
      description: Driver before the run (null when none).
      type: str
      sample: e1000e
    driver_after:
      description: Driver after the run (in check mode, the prediction; on release the original driver
        when the module recorded it, else null).
      type: str
      sample: vfio-pci
    original_driver:
      description: On release, the driver the device had before the module bound it, when recorded.
      type: str
      returned: state is absent
    restored_to:
      description: On release, the driver that took the device back.
      type: str
      returned: state is absent and not check mode
    actions:
      description: What was (in check mode, would be) done, in order. Empty when nothing changes.
      type: list
      elements: str
      sample: ["set driver_override to vfio-pci", "unbind from e1000e", "probe (vfio-pci takes the device)"]
    changed:
      description: Whether this device changed.
      type: bool
group_members_bound:
  description: Devices bound only because they share an IOMMU group with a selected device.
  returned: always
  type: list
  elements: str
files:
  description: The persistence files with the action taken (C(create), C(update), C(remove), C(unchanged)).
  returned: always
  type: list
  elements: dict
  sample: [{"path": "/etc/udev/rules.d/80-iommu-host-vfio.rules", "action": "create", "changed": true}]
files_written:
  description: Paths of the persistence files created, updated or removed.
  returned: always
  type: list
  elements: str
module_loaded:
  description: Whether C(modprobe) was (in check mode, would be) run for a driver that was not loaded.
  returned: always
  type: bool
modules_loaded:
  description: The drivers C(modprobe) was (in check mode, would be) run for.
  returned: always
  type: list
  elements: str
  sample: [mlx5_vfio_pci]
driver_check:
  description: With O(state=present), what the kernel tells about O(driver) - C(driver), C(loaded),
    C(module), C(vfio) (true, false, or null when it cannot be told), C(evidence) or C(reason).
  returned: state is present
  type: dict
persistent_devices:
  description: Addresses in the udev rule after the run.
  returned: always
  type: list
  elements: str
failures:
  description: On failure, every refusal or error, each with device, code, message and remedy
    (and C(interface), C(reason) or C(members) when they apply).
  returned: failure
  type: list
  elements: dict
"""

import json

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.iommu.host.plugins.module_utils import iommu_sysfs
from ansible_collections.iommu.host.plugins.module_utils import iommu_vfio


def _ipv4_lookup(module):
    ip = module.get_bin_path("ip")
    if not ip:
        return None

    def lookup(names):
        rc, out, _err = module.run_command([ip, "-j", "-4", "addr", "show"])
        if rc != 0:
            return None
        try:
            data = json.loads(out or "[]")
        except ValueError:
            return None
        found = {}
        for link in data:
            for info in link.get("addr_info", []):
                if info.get("family") == "inet" and info.get("local"):
                    found.setdefault(link.get("ifname"), []).append(
                        "%s/%s" % (info["local"], info.get("prefixlen", 32)))
        return found
    return lookup


def _diff(plan):
    diffs = []
    for f in plan["files"]:
        if f["changed"]:
            diffs.append({"before_header": f["path"], "after_header": f["path"],
                          "before": f["before"] or "", "after": f["after"] or ""})
    before = "".join("%s: %s\n" % (d["address"], d["driver_before"] or "(no driver)")
                     for d in plan["devices"] if d["changed"])
    after = "".join("%s: %s\n" % (d["address"], d.get("driver_after") or "(default driver)")
                    for d in plan["devices"] if d["changed"])
    if before or after:
        diffs.append({"before_header": "PCI drivers", "after_header": "PCI drivers",
                      "before": before, "after": after})
    return diffs


def main():
    module = AnsibleModule(
        argument_spec=dict(
            devices=dict(type="list", elements="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            driver=dict(type="str", default=iommu_vfio.VFIO_DRIVER),
            group_policy=dict(type="str", default="bind_all", choices=["bind_all", "refuse"]),
            persistent=dict(type="bool", default=True),
            force=dict(type="bool", default=False),
            udev_rule_file=dict(type="path", default=iommu_vfio.DEFAULT_RULES_FILE),
            modules_load_file=dict(type="path", default=iommu_vfio.DEFAULT_MODULES_FILE),
        ),
        supports_check_mode=True,
    )
    p = module.params
    reader = iommu_sysfs.SysfsReader("/")
    scanner = iommu_vfio.UsageScanner(reader, ipv4_addresses=_ipv4_lookup(module))
    try:
        plan = iommu_vfio.build_plan(
            reader, p["devices"], state=p["state"], group_policy=p["group_policy"],
            persistent=p["persistent"], force=p["force"], rules_file=p["udev_rule_file"],
            modules_file=p["modules_load_file"], scanner=scanner, driver=p["driver"])
    except iommu_vfio.VfioError as e:
        module.fail_json(msg="iommu.host.vfio_pci: %s" % e, failures=e.failures, devices=[])

    result = dict(
        changed=plan["changed"],
        devices=plan["devices"],
        group_members_bound=[d["address"] for d in plan["devices"] if not d["selected"]],
        files=[dict(path=f["path"], action=f["action"], changed=f["changed"]) for f in plan["files"]],
        files_written=[f["path"] for f in plan["files"] if f["changed"]],
        module_loaded=plan["load_module"],
        modules_loaded=plan["modules_to_load"],
        persistent_devices=plan["managed_after"],
    )
    if plan["driver_check"] is not None:
        result["driver_check"] = plan["driver_check"]
    if module._diff:
        result["diff"] = _diff(plan)
    if module.check_mode or not plan["changed"]:
        module.exit_json(**result)

    def load_module(name):
        modprobe = module.get_bin_path("modprobe", required=True)
        rc, out, err = module.run_command([modprobe, name])
        if rc != 0:
            module.fail_json(msg="iommu.host.vfio_pci: modprobe %s failed: %s" % (name, (err or out).strip()),
                             **result)

    try:
        result["devices"] = iommu_vfio.execute(plan, reader, iommu_vfio.SysfsWriter("/"), load_module)
    except iommu_vfio.VfioError as e:
        result["devices"] = getattr(e, "results", result["devices"])
        module.fail_json(msg="iommu.host.vfio_pci: %s" % e, failures=e.failures, **result)
    except (OSError, IOError) as e:
        module.fail_json(msg="iommu.host.vfio_pci: %s" % e, **result)
    if any(f["changed"] for f in plan["files"] if f["path"] == p["udev_rule_file"]):
        udevadm = module.get_bin_path("udevadm")
        if udevadm:
            module.run_command([udevadm, "control", "--reload"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
