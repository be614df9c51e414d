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
  - "B(Early binding) (O(early=true)): the device belongs to C(vfio-pci) from early boot and is never
    bound to its native driver. The method depends on how the running kernel ships vfio-pci
    (C(/lib/modules/<release>/modules.builtin)). When vfio-pci is a loadable module, O(modprobe_file)
    gets C(options vfio-pci ids=VVVV:DDDD,...) and C(softdep <native> pre: vfio-pci) for each native
    driver module (found from the bound driver, or the device's modalias in C(modules.alias) /
    C(modules.builtin.modinfo), or C(modprobe -R)); when the native driver or vfio-pci is in the
    initramfs (C(lsinitramfs) / C(lsinitrd)), the initramfs is regenerated (C(update-initramfs -u -k all),
    C(dracut -f --regenerate-all)) - only when the file changed. When vfio-pci is built in, modprobe.d
    options do not reach it: the kernel argument C(vfio-pci.ids=...) is set through the
    M(iommu.host.kernel_args) machinery (O(bootloader), O(bootloader_update)), and the softdeps are still
    written. RV(early.method) and RV(early.reason) say which method and why; RV(reboot_required) is true
    when something changed for the next boot."
  - "Early binding is refused for a device whose native driver is built in and would bind first: with
    vfio-pci as a module (no module loads before built-in drivers probe), or with both built in when the
    native driver comes before vfio-pci in C(modules.builtin) (link order, which is the order of their
    initcalls). C(ids=) binds by ID: another device with the same vendor:device that was not selected is
    a failure unless O(early_allow_shared_ids=true). O(state=absent) removes the released devices from
    early binding (the file goes with the last one, and so does the kernel argument)."
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
  early:
    description:
      - With O(state=present), also bind the devices (the selected ones and the group members that go to
        C(vfio-pci)) from early boot - see B(Early binding) above. Needs O(persistent=true) and
        O(driver=vfio-pci).
      - C(false) leaves the early-binding setup as it is (devices bound early before stay so).
        O(state=absent) always removes the released devices from it.
    type: bool
    default: false
  early_allow_shared_ids:
    description:
      - Accept that C(ids=) / C(vfio-pci.ids=) also gives vfio-pci, at boot, the devices that have the same
        vendor:device ID as an early-bound device but were not selected (they are listed in a warning).
    type: bool
    default: false
  modprobe_file:
    description:
      - The modprobe.d file the module owns for early binding. It records the early-bound devices and the
        method in comments. A file at this path that the module did not write is refused.
    type: path
    default: /etc/modprobe.d/iommu-host-vfio.conf
  bootloader:
    description:
      - Early binding with a built-in vfio-pci - the boot setup that gets C(vfio-pci.ids=), as
        O(iommu.host.kernel_args#module:bootloader).
    type: str
    choices: [auto, grubby, grub, systemd-boot]
    default: auto
  bootloader_update:
    description:
      - Early binding with a built-in vfio-pci - regenerate the boot configuration after editing it, as
        O(iommu.host.kernel_args#module:update).
    type: bool
    default: true
  update_initramfs:
    description:
      - Regenerate the initramfs when the early-binding file changed and the initramfs holds the native
        driver or vfio-pci. C(false) only warns that it must be done.
    type: bool
    default: true
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Check mode computes the same plan as a real run (same C(changed), same per-device actions).
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: Shows the persistence files (and the early-binding file and boot configuration) before and after,
      and each device's driver before and after.
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

- name: Keep the RTL8139 on vfio-pci from early boot (8139too never probes it)
  iommu.host.vfio_pci:
    devices: ['10ec:8139']
    early: true
  register: early

- name: Reboot when early binding changed the next boot
  ansible.builtin.reboot:
  when: early.reboot_required

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
reboot_required:
  description: Whether early binding changed something for the next boot (the modprobe.d file, the
    initramfs, or a kernel argument the running kernel does not have yet).
  returned: always
  type: bool
early:
  description: The early-binding setup after the run (in check mode, the prediction).
  returned: always
  type: dict
  contains:
    method:
      description: C(modprobe) (vfio-pci is a module), C(kernel-arg) (vfio-pci is built in), or null when
        no device is bound early.
      type: str
      sample: kernel-arg
    reason:
      description: Why that method (with the evidence, e.g. the C(modules.builtin) line).
      type: str
    vfio_pci:
      description: C(module) or C(builtin) for the running kernel.
      type: str
    release:
      description: The running kernel's release.
      type: str
    ids:
      description: The C(vendor:device) IDs given to vfio-pci.
      type: list
      elements: str
      sample: ["10ec:8139"]
    remove_ids:
      description: With O(state=absent), the IDs that left early binding; they were written to vfio-pci's
        C(remove_id) before the release (the running vfio-pci holds them as dynamic IDs from C(ids=) and would
        take the released devices back).
      type: list
      elements: str
    devices:
      description: The early-bound devices with C(address), C(ids), C(native_drivers), C(native_builtin)
        and C(source) (where the native driver came from).
      type: list
      elements: dict
    softdeps:
      description: "The native driver modules that got C(softdep <module> pre: vfio-pci)."
      type: list
      elements: str
    file:
      description: The modprobe.d file with C(path), C(action) and C(changed).
      type: dict
    kernel_arg:
      description: With a built-in vfio-pci (or when removing), the kernel argument edit - C(args), C(state),
        C(changed), C(bootloader), C(pending), C(files), C(commands), C(reboot_required).
      type: dict
    initramfs:
      description: C(tool), C(image), C(contains) (modules found in it), C(regenerate), C(reason), C(command).
      type: dict
    warnings:
      description: Warnings (also shown by Ansible).
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
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.iommu.host.plugins.module_utils import iommu_early
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


def _modalias_resolver(module):
    """modprobe -R <modalias>: the modules modprobe would load (used when modules.alias is missing)."""
    def resolve(modalias):
        modprobe = module.get_bin_path("modprobe")
        if not modprobe:
            return []
        rc, out, _err = module.run_command([modprobe, "-R", modalias])
        return out.split() if rc == 0 else []
    return resolve


def _initramfs_lister(module):
    """lsinitramfs/lsinitrd <image>: the image's file list, None when it cannot be listed."""
    def listing(lister, image):
        rc, out, _err = module.run_command([lister, image])
        return out if rc == 0 else None
    return listing


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
            early=dict(type="bool", default=False),
            early_allow_shared_ids=dict(type="bool", default=False),
            modprobe_file=dict(type="path", default=iommu_early.DEFAULT_MODPROBE_FILE),
            bootloader=dict(type="str", default="auto", choices=["auto", "grubby", "grub", "systemd-boot"]),
            bootloader_update=dict(type="bool", default=True),
            update_initramfs=dict(type="bool", default=True),
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
    if p["early"] and p["state"] == "present" and not p["persistent"]:
        module.fail_json(msg="iommu.host.vfio_pci: early: true needs persistent: true (early binding is a "
                             "boot-time setting; the udev rule keeps the binding when the early one cannot apply)",
                         devices=[])
    try:
        early_plan = iommu_early.plan(
            reader, "/", os.uname()[2], plan, p["early"], allow_shared_ids=p["early_allow_shared_ids"],
            modprobe_file=p["modprobe_file"], resolver=_modalias_resolver(module),
            cmdline=reader.read("/proc/cmdline"),
            original=dict((a, e.get("original_driver")) for a, e in
                          iommu_vfio.read_managed(reader, p["udev_rule_file"]).items()))
    except iommu_early.EarlyError as e:
        module.fail_json(msg="iommu.host.vfio_pci: early binding: %s" % e, failures=e.failures, devices=[])

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

    if not module.check_mode and plan["changed"]:
        def load_module(name):
            modprobe = module.get_bin_path("modprobe", required=True)
            rc, out, err = module.run_command([modprobe, name])
            if rc != 0:
                module.fail_json(msg="iommu.host.vfio_pci: modprobe %s failed: %s" % (name, (err or out).strip()),
                                 **result)

        try:
            # IDs that leave early binding: the running vfio-pci would take the released devices back
            iommu_early.remove_dynamic_ids("/", early_plan["remove_ids"])
        except iommu_early.EarlyError as e:
            module.fail_json(msg="iommu.host.vfio_pci: early binding: %s" % e, failures=e.failures, **result)
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

    try:
        early, reboot, diffs = iommu_early.apply(
            module, early_plan, root="/", bootloader=p["bootloader"], bootloader_update=p["bootloader_update"],
            update_initramfs=p["update_initramfs"], list_initramfs=_initramfs_lister(module))
    except iommu_early.EarlyError as e:
        module.fail_json(msg="iommu.host.vfio_pci: early binding: %s" % e, failures=e.failures, **result)
    for w in early["warnings"]:
        module.warn(w)
    result["early"] = early
    result["reboot_required"] = reboot
    result["changed"] = result["changed"] or early["changed"]
    if early["file"]["changed"]:
        result["files"].append(early["file"])
        result["files_written"].append(early["file"]["path"])
    if module._diff:
        result["diff"].extend(diffs)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
