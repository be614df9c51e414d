# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Device checks: can QEMU open and bind each assigned PCI function (scope device).

device.vfio_driver (bound to vfio-pci or a VFIO variant driver), device.not_in_use (no process holds its VFIO node),
device.group_viable (every other endpoint of its IOMMU group on vfio-pci/pci-stub),
device.hw_info (IOMMU_GET_HW_INFO obtained). Rules mirror QEMU hw/vfio/iommufd.c
(iommufd_cdev_getfd, the iommufd bind, hiod_iommufd_vfio_realize) and Linux drivers/vfio/group.c.
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.policy.facts import _dev_path, _dict, _get, _list, _text
from ansible_collections.iommu.host.plugins.module_utils.policy.registry import FAIL, NA, PASS, WARN, _check, _r

__metaclass__ = type


_MDEV_DRIVER = ("mediated device: it is not a PCI function on vfio-pci; QEMU detects it as an mdev "
                "(hw/vfio/pci.c vfio_pci_realize, vfio_device_is_mdev)")
_MDEV_HW_INFO = ("mediated device: QEMU makes no IOMMU_GET_HW_INFO call and allocates no HWPT for mdevs "
                 "(hw/vfio/iommufd.c iommufd_cdev_attach_container: \"mdevs aren't physical devices\")")
_MDEV_GROUP = "mediated device: its IOMMU group is a software group owned by its parent's driver"


def _bind_remedy(addr, driver):
    unbind = "echo {a} > /sys/bus/pci/devices/{a}/driver/unbind; " if driver else ""
    return ("Bind it to vfio-pci: 'driverctl set-override {a} vfio-pci', or "
            "'echo vfio-pci > /sys/bus/pci/devices/{a}/driver_override; " + unbind +
            "echo {a} > /sys/bus/pci/drivers_probe' (module iommu.host.vfio_pci does this and keeps it "
            "across reboots).").format(a=addr)


def vfio_driver(dev):
    """(bound, driver, variant) of a device: bound to any VFIO driver (vfio-pci or a variant driver).

    The facts' ``vfio`` section says it from the kernel (the device's vfio-dev/ entry, the driver being
    a vfio_pci_core user); facts without it (schema 1 of iommu.host 0.1) fall back to driver == vfio-pci.
    """
    vfio = dev.get("vfio")
    driver = dev.get("driver")
    if isinstance(vfio, dict) and isinstance(vfio.get("bound"), bool):
        return vfio["bound"], vfio.get("driver") or driver, bool(vfio.get("variant"))
    return driver == "vfio-pci", driver, False


@_check("device.vfio_driver", "device", "Device bound to a VFIO driver (vfio-pci or a variant)",
        "devices.<a>.{vfio.bound,vfio.driver,vfio.variant,driver,driver_override}, kernel.vfio_pci.supported",
        "QEMU hw/vfio/iommufd.c iommufd_cdev_getfd(): \"couldn't open directory %s\" when the device has "
        "no vfio-dev/ (not bound to a VFIO driver), QEMU >= 9.0; any vfio_pci_core driver serves QEMU's vfio-pci",
        mdev=_MDEV_DRIVER, verified=((10, 0), (11, 1)))
def _device_vfio_driver(ctx, addr, dev, params):
    bound, driver, variant = vfio_driver(dev)
    ev = {_dev_path(addr, "driver"): dev.get("driver"), _dev_path(addr, "driver_override"): dev.get("driver_override"),
          _dev_path(addr, "vfio"): dev.get("vfio")}
    source = "sysfs /sys/bus/pci/devices/%s (driver, vfio-dev/)" % addr
    cdev = " (cdev %s)" % dev["vfio_cdev"] if isinstance(dev.get("vfio_cdev"), str) else ""
    if bound:
        return _r(PASS, "Bound to %s%s%s." % (driver, ", a VFIO variant driver" if variant else "", cdev), ev, source)
    if "driver" not in dev:
        return _r(FAIL, "Cannot verify: the facts have no driver for this device.", ev, "facts",
                  "Gather the facts again with iommu.host.iommu_facts.")
    extra = ""
    if dev.get("driver_override"):
        extra = "; driver_override is already %s, but the device has not been re-probed" % dev["driver_override"]
    if _get(ctx.kernel, "vfio_pci", "supported") is False:
        ev["kernel.vfio_pci.supported"] = False
        extra += "; the kernel has no vfio-pci driver (CONFIG_VFIO_PCI)"
    qemu = "couldn't open directory /sys/bus/pci/devices/%s/vfio-dev" % addr if params.get("iommufd", True) else ""
    return _r(FAIL, "Bound to %s, not a VFIO driver%s.%s" % (
        driver or "no driver", extra, " QEMU stops with \"vfio %s: %s\"." % (addr, qemu) if qemu else ""),
        ev, source, _bind_remedy(addr, driver))


@_check("device.not_in_use", "device", "Device not in use",
        "devices.<a>.in_use_by (processes holding /dev/vfio/devices/vfioN or /dev/vfio/<group>)",
        "Linux drivers/vfio: a second open of the group gives EBUSY, a second cdev bind EINVAL; QEMU "
        "hw/vfio/iommufd.c:158 \"error bind device fd=%d to iommufd=%d\"",
        mdev="mediated device: the facts do not track processes holding mdevs", verified=((10, 0), (11, 1)))
def _device_not_in_use(ctx, addr, dev, params):
    users = dev.get("in_use_by")
    ev = {_dev_path(addr, "in_use_by"): users}
    source = "/proc/<pid>/fd links to /dev/vfio and /dev/iommu"
    if not isinstance(users, list):
        return _r(FAIL, "Cannot verify: the facts do not say whether a process holds the device "
                        "(in_use_by missing).", ev, "facts", "Gather the facts again with iommu.host.iommu_facts.")
    bound = dev.get("in_use_bound_by")
    if isinstance(bound, list):
        ev[_dev_path(addr, "in_use_bound_by")] = bound
    if users and isinstance(bound, list) and not bound:
        # oracle (QEMU 10.0, 11.1): a process that only open(2)s the cdev does not stop QEMU's bind
        return _r(WARN, "Held open by %s, which has not bound it to an iommufd (no /dev/iommu, no group node): QEMU "
                        "can still bind it and start, but that process shares the device (and its resets)." % (
                            ", ".join(str(u) for u in users)), ev, source,
                  "Make sure the process holding the device is not a VM or driver using it.")
    if users:
        # QEMU's words (oracle 10.0/11.1): the iommufd bind of a bound cdev gives EINVAL; the legacy
        # container's group open gives EBUSY
        qemu = ("vfio %s: error bind device fd=N to iommufd=M: Invalid argument" % addr if params.get("iommufd", True)
                else "vfio %s: Could not open '/dev/vfio/%s': Device or resource busy" % (addr, dev.get("iommu_group")))
        holders = bound if isinstance(bound, list) and bound else users
        return _r(FAIL, "In use by %s: a VM or process holds its VFIO device node; QEMU cannot bind it "
                        "(\"%s\")." % (", ".join(str(u) for u in holders), qemu),
                  ev, source, "Stop the VM or process using it (or assign another device), then run the "
                              "preflight again.")
    return _r(PASS, "No process holds its VFIO device or group node.", ev, source)


@_check("device.group_viable", "device", "IOMMU group viable",
        "devices.<a>.{iommu_group,group_members,group_blockers,group_viable}",
        "Linux drivers/vfio/group.c, Documentation/driver-api/vfio.rst: every other endpoint of the group "
        "bound to vfio-pci or pci-stub (or no driver), bridges excepted; iommufd bind gives EPERM otherwise",
        mdev=_MDEV_GROUP, verified=((10, 0), (11, 1)))
def _device_group_viable(ctx, addr, dev, params):
    gid = dev.get("iommu_group")
    ev = {_dev_path(addr, "iommu_group"): gid, _dev_path(addr, "group_members"): dev.get("group_members"),
          _dev_path(addr, "group_blockers"): dev.get("group_blockers"),
          _dev_path(addr, "group_viable"): dev.get("group_viable")}
    source = "sysfs /sys/kernel/iommu_groups/%s/devices" % gid
    if gid is None:
        return _r(FAIL, "The device has no IOMMU group: no IOMMU translates it.", ev,
                  "sysfs /sys/bus/pci/devices/%s/iommu_group" % addr,
                  "Enable the IOMMU (see host.iommu_enabled); without a group VFIO cannot assign it.")
    viable = dev.get("group_viable")
    if viable is True:
        members = [m for m in _list(dev.get("group_members")) if isinstance(m, str)]
        return _r(PASS, "IOMMU group %s is viable (%s)." % (
            gid, "other members: %s" % ", ".join(members) if members else "no other member"), ev, source)
    if viable is False:
        blockers = [str(b) for b in _list(dev.get("group_blockers"))]
        qemu = ("vfio %s: error bind device fd=N to iommufd=M: Operation not permitted" % addr
                if params.get("iommufd", True) else "vfio %s: group %s is not viable" % (addr, gid))
        return _r(FAIL, "IOMMU group %s is not viable: %s %s bound to host drivers, and a group has a "
                        "single DMA owner; QEMU stops with \"%s\"." % (
                            gid, ", ".join(blockers) or "other members", "is" if len(blockers) == 1 else "are",
                            qemu), ev, source,
                  "Bind every endpoint of group %s to vfio-pci (or pci-stub) as well, or move the device to "
                  "a slot with its own group (ACS-capable root port)." % gid)
    return _r(FAIL, "Cannot verify: the facts do not say whether group %s is viable." % gid, ev, "facts",
              "Gather the facts again with iommu.host.iommu_facts.")


@_check("device.hw_info", "device", "IOMMU_GET_HW_INFO obtained",
        "devices.<a>.hw_info.{source,type,type_id,capabilities,error,skipped,consistent_with_sysfs}",
        "QEMU hw/vfio/iommufd.c hiod_iommufd_vfio_realize() / iommufd_cdev_autodomains_get(): "
        "iommufd_backend_get_device_info() -> \"Failed to get hardware info\" (QEMU >= 9.1)",
        mdev=_MDEV_HW_INFO)
def _device_hw_info(ctx, addr, dev, params):
    if not params.get("iommufd", True):
        return _r(NA, "The VM uses the legacy VFIO container (iommufd=false): QEMU does not query hw_info.",
                  {"params.iommufd": False}, "preflight parameters")
    hw = dev.get("hw_info")
    ev = {_dev_path(addr, "hw_info", "source"): _get(hw, "source")}
    if not isinstance(hw, dict):
        ev[_dev_path(addr, "driver")] = dev.get("driver")
        ev[_dev_path(addr, "vfio_cdev")] = dev.get("vfio_cdev")
        if not vfio_driver(dev)[0]:
            why = "the device is not bound to vfio-pci (or a VFIO variant driver)"
            remedy = "Bind it to vfio-pci (see device.vfio_driver), then gather the facts again."
        elif not dev.get("vfio_cdev"):
            why = "the device has no VFIO cdev (see host.vfio_cdev)"
            remedy = "Use a kernel with CONFIG_VFIO_DEVICE_CDEV=y."
        else:
            why = "the facts hold no hw_info for it (gathered before it was bound, or for other devices only)"
            remedy = "Gather the facts again with iommu.host.iommu_facts (not sysfs_only)."
        return _r(FAIL, "Not obtained: %s." % why, ev, "facts", remedy)
    if isinstance(hw.get("error"), dict) or hw.get("error"):
        err = _dict(hw.get("error"))
        for key in ("code", "errno", "step"):
            ev[_dev_path(addr, "hw_info", "error", key)] = err.get(key)
        return _r(FAIL, "IOMMU_GET_HW_INFO failed at %s: %s QEMU, which makes the same calls, would fail "
                        "the same way." % (err.get("step") or "query", err.get("message") or _text(hw.get("error"))),
                  ev, "iommufd: VFIO_DEVICE_BIND_IOMMUFD + IOMMU_GET_HW_INFO",
                  err.get("remedy") or "See the error code in docs/facts.md.")
    if hw.get("source") == "none" or "skipped" in hw:
        ev[_dev_path(addr, "hw_info", "skipped")] = hw.get("skipped")
        return _r(WARN, "Not queried: %s. QEMU makes this query when the VM starts; the checks that need it "
                        "fall back to the sysfs registers of the device's IOMMU unit (labelled derived)."
                  % (hw.get("skipped") or "no iommufd query"), ev, "facts",
                  "Gather facts without sysfs_only when the device is idle (opening it resets the device).")
    if hw.get("source") != "iommufd":
        return _r(FAIL, "Cannot verify: hw_info has an unknown source %s." % _text(hw.get("source")), ev, "facts",
                  "Gather the facts again with iommu.host.iommu_facts.")
    caps = _dict(hw.get("capabilities"))
    ev.update({_dev_path(addr, "hw_info", "type"): hw.get("type"),
               _dev_path(addr, "hw_info", "type_id"): hw.get("type_id"),
               _dev_path(addr, "hw_info", "capabilities", "raw"): caps.get("raw"),
               _dev_path(addr, "hw_info", "capabilities", "max_pasid_log2"): caps.get("max_pasid_log2")})
    flags = [n for n in ("dirty_tracking", "pasid_exec", "pasid_priv", "ats_not_supported") if caps.get(n) is True]
    text = "IOMMU_GET_HW_INFO: type %s (%s), capabilities %s%s, max_pasid_log2 %s." % (
        hw.get("type"), hw.get("type_id"), caps.get("raw"), " (%s)" % ", ".join(flags) if flags else "",
        caps.get("max_pasid_log2"))
    consistent = hw.get("consistent_with_sysfs")
    if isinstance(consistent, dict) and consistent.get("equal") is False:
        ev[_dev_path(addr, "hw_info", "consistent_with_sysfs")] = consistent
        return _r(WARN, text + " The registers differ from the unit's sysfs values (%s)." % ", ".join(
            str(m) for m in _list(consistent.get("mismatches"))), ev, "iommufd: IOMMU_GET_HW_INFO",
            "Report this: the kernel returned other registers through iommufd than through sysfs.")
    return _r(PASS, text, ev, "iommufd: IOMMU_GET_HW_INFO")


@_check("device.vfio_ats", "device", "vfio-pci ats property (QEMU 11.1+)",
        "params.{vfio_ats,iommufd,qemu_version}; devices.<a>.hw_info.capabilities.{ats_not_supported,"
        "reported_by_kernel.ats_not_supported}",
        "QEMU 11.1.3 hw/vfio/pci.c vfio_add_ext_cap() (inlined in vfio_pci_add_capabilities): ats=on and the "
        "iommufd HostIOMMUDevice says the kernel reports IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED (backends/iommufd.c: "
        "!(caps.hw_caps & 0x8)) -> realize fails \"vfio-pci: ATS requested but not supported by kernel\" (line "
        "2617); the legacy container's HostIOMMUDevice has no such answer (ATS left visible); a device without an "
        "ATS extended capability only warns (ats=on) or needs no mask (auto); off always masks ATS; only for a "
        "device on a PCIe bus with extended config space. QEMU 10.0-11.0: no ats property",
        mdev="mediated device: QEMU creates no host IOMMU device for an mdev, so nothing reports ATS unusable and "
             "ats= is never refused for it (QEMU 10.0-11.0's missing property is judged on the PCI devices)",
        verified=((10, 0), (11, 1)))
def _vfio_ats(ctx, addr, dev, params):
    from ansible_collections.iommu.host.plugins.module_utils.policy import releases
    value = params.get("vfio_ats") or "auto"
    given = "vfio_ats" in (params.get("_given") or ())
    ev = {"params.vfio_ats": value, "params.iommufd": params.get("iommufd", True)}
    if not releases.has_property("vfio_ats", ctx.qemu):
        if given:
            return _r(FAIL, "QEMU %s has no vfio-pci ats property (new in 11.1): \"%s\"." % (
                releases.text(ctx.qemu), releases.missing_property("vfio_ats", ctx.qemu)), ev,
                "preflight parameters", "Drop ats= from vfio-pci, or use QEMU 11.1 or later.")
        return _r(NA, "QEMU %s has no vfio-pci ats property: the guest sees the device's ATS capability as the host "
                      "has it." % releases.text(ctx.qemu), ev, "preflight parameters")
    if value == "off":
        return _r(PASS, "ats=off: QEMU always masks the device's ATS capability from the guest.", ev,
                  "preflight parameters")
    if not params.get("iommufd", True):
        return _r(PASS, "Legacy VFIO container: its host IOMMU device does not report ATS, so QEMU neither refuses "
                        "ats=%s nor masks ATS (a device without an ATS capability only gets the warning \"%s\" with "
                        "ats=on)." % (value, ctx.words("vfio.ats_no_cap")), ev, "preflight parameters")
    hw = dev.get("hw_info")
    caps = hw.get("capabilities") if isinstance(hw, dict) else None
    not_supp = _get(caps, "ats_not_supported")
    reported = _get(caps, "reported_by_kernel", "ats_not_supported")
    ev.update({_dev_path(addr, "hw_info", "capabilities", "ats_not_supported"): not_supp,
               _dev_path(addr, "hw_info", "capabilities", "reported_by_kernel", "ats_not_supported"): reported})
    source = "iommufd: IOMMU_GET_HW_INFO of %s" % addr
    if not isinstance(caps, dict) or not isinstance(not_supp, bool):
        status = FAIL if value == "on" else WARN
        return _r(status, "Cannot verify: no hw_info capabilities for %s; with ats=%s QEMU %s when the kernel reports "
                          "IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED." % (
                              addr, value, "refuses the device (\"%s\")" % ctx.words("vfio.ats_kernel")
                              if value == "on" else "masks the device's ATS capability"), ev, "facts",
                  "Bind the device to vfio-pci and gather the facts without sysfs_only while it is idle.")
    if not_supp:
        if value == "on":
            return _r(FAIL, "QEMU refuses the device: \"vfio %s: %s\" (the kernel reports "
                            "IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED for it: no ATS capability, or its IOMMU or root port "
                            "does not allow ATS)." % (addr, ctx.words("vfio.ats_kernel")), ev, source,
                      "Use vfio-pci ats=auto (masks ATS) or ats=off, or assign a device whose ATS the kernel allows.")
        return _r(PASS, "ats=auto: the kernel reports ATS unusable for %s, so QEMU masks the device's ATS capability "
                        "(warning \"%s\" when the device has one)." % (addr, ctx.words("vfio.ats_masked")), ev, source)
    if reported is not True:
        # the flag's absence on a kernel that does not report it (Linux < 7.1) says nothing; QEMU reads the same
        # zero bit and lets ATS through, so it does not refuse
        return _r(WARN, "This kernel does not report per-device ATS (Linux < 7.1): QEMU sees no "
                        "ATS_NOT_SUPPORTED and leaves the device's ATS capability visible to the guest (ats=%s), "
                        "whether or not the platform allows ATS." % value, ev, source,
                  "Set vfio-pci ats=off unless the platform's ATS is known to work.")
    return _r(PASS, "The kernel does not report ATS_NOT_SUPPORTED for %s: QEMU exposes the device's ATS capability "
                    "(ats=%s; with ats=on and no ATS capability it warns \"%s\")." % (
                        addr, value, ctx.words("vfio.ats_no_cap")), ev, source)
