# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PASID and ATS checks (profile pasid): what each assigned device gets from the host IOMMU.

device.pasid (PASID width, execute/privileged permissions) and device.ats (scope device), from
the kernel's per-device IOMMU_GET_HW_INFO capabilities, else derived from the unit's registers.
Rules mirror QEMU backends/iommufd.c hiod_iommufd_get_pasid_info() and hw/vfio/pci.c
vfio_pci_synthesize_pasid_cap(); kernel iommufd_get_hw_info() (max_pasid_log2,
IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED).
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.policy.facts import (
    _derived_note, _dev_path, _get, _hw_ok, _int, _intel_scalable_mode, vendor_view, _vfield)
from ansible_collections.iommu.host.plugins.module_utils.policy.params import _version_text
from ansible_collections.iommu.host.plugins.module_utils.policy.registry import FAIL, NA, PASS, WARN, _check, _r

__metaclass__ = type


def guest_pasid_capability(ctx, params):
    """Why the guest sees no PASID capability on the assigned device, or None when QEMU gives it one.

    vfio-pci exposes no PASID capability of the physical function; QEMU synthesizes one
    (hw/vfio/pci.c vfio_pci_synthesize_pasid_cap, 11.0+) only when the vIOMMU reports
    VIOMMU_FLAG_PASID_SUPPORTED, which only arm-smmuv3,accel=on with ssidsize > 0 does.
    """
    if not ctx.since(11, 0):
        return ("QEMU %s exposes no PASID capability of an assigned device to the guest (vfio-pci synthesizes one "
                "only from 11.0)" % _version_text(ctx.qemu))
    if params.get("viommu") != "arm-smmuv3" or not params.get("accel", True) or not params.get("ssidsize"):
        return ("QEMU %s synthesizes a PASID capability for the guest only behind arm-smmuv3,accel=on with "
                "ssidsize > 0 (intel-iommu does not report PASID support to vfio-pci)" % _version_text(ctx.qemu))
    return None


@_check("device.pasid", "device", "PASID width available to the device",
        "params.{pasid_bits,pasid_exec,pasid_priv}; devices.<a>.hw_info.capabilities.{max_pasid_log2,pasid_exec,"
        "pasid_priv,reported_by_kernel.pasid}, else units.<u>.decoded.derived.pasid_width",
        "QEMU backends/iommufd.c hiod_iommufd_get_pasid_info() (no PASID when max_pasid_log2 == 0) and "
        "hw/vfio/pci.c vfio_pci_synthesize_pasid_cap() (master); kernel iommufd_get_hw_info(): "
        "out_max_pasid_log2 = ilog2(min(device PASID width, IOMMU max_pasids)) (Linux >= 6.15)",
        mdev="mediated device: QEMU creates no HostIOMMUDevice for an mdev, so it gets no PASID capability "
             "(hw/vfio/pci.c vfio_pci_synthesize_pasid_cap)")
def _device_pasid(ctx, addr, dev, params):
    want = params.get("pasid_bits") or 1
    ev = {"params.pasid_bits": want}
    hw = dev.get("hw_info")
    if _hw_ok(hw) and isinstance(hw.get("capabilities"), dict):
        caps = hw["capabilities"]
        log2 = _int(caps.get("max_pasid_log2"))
        reported = _get(caps, "reported_by_kernel", "pasid")
        ev.update({_dev_path(addr, "hw_info", "capabilities", "max_pasid_log2"): log2,
                   _dev_path(addr, "hw_info", "capabilities", "reported_by_kernel", "pasid"): reported})
        source = "iommufd: IOMMU_GET_HW_INFO of %s" % addr
        if not log2:
            if reported is False:
                return _r(FAIL, "The kernel (%s) does not report PASID (Linux >= 6.15 does), so QEMU gives the "
                                "device no PASID capability." % _get(ctx.kernel, "release"), ev, source,
                          "Use Linux >= 6.15.", effect="requirement")
            return _r(FAIL, "The device gets no PASID (max_pasid_log2 0: no enabled PCI PASID capability, or its IOMMU "
                            "has no PASID support); QEMU synthesizes no PASID capability for it.", ev, source,
                      "Assign a device with a PASID capability on an IOMMU with PASID support (Intel: scalable "
                      "mode; AMD: EFR.GTSup/PASmax; Arm: IDR1.SSIDSIZE).", effect="requirement")
        if log2 < want:
            return _r(FAIL, "The device gets %d-bit PASIDs, fewer than the %d required." % (log2, want), ev, source,
                      "Assign a device (and IOMMU) with at least %d PASID bits, or lower pasid_bits." % want, effect="requirement")
        missing = []
        for name in ("pasid_exec", "pasid_priv"):
            ev[_dev_path(addr, "hw_info", "capabilities", name)] = caps.get(name)
            if params.get(name) and caps.get(name) is not True:
                missing.append(name.replace("pasid_", "").replace("exec", "execute permission").replace(
                    "priv", "privileged mode"))
        if missing:
            return _r(FAIL, "The device's PASID capability lacks %s (IOMMU_HW_CAP_PCI_PASID_EXEC/PRIV, from its PASID "
                            "control register)." % " and ".join(missing), ev, source,
                      "Assign a device whose PASID capability enables %s." % " and ".join(missing), effect="requirement")
        guest = guest_pasid_capability(ctx, params)
        if guest:
            return _r(WARN, "The host gives the device %d-bit PASIDs (max_pasid_log2 %d, at least %d required), but %s."
                      % (log2, log2, want, guest), ev, source,
                      "For guest PASID use, run QEMU 11.0+ with -device arm-smmuv3,accel=on,ssidsize=N (Arm hosts).")
        return _r(PASS, "The device gets %d-bit PASIDs (max_pasid_log2 %d, at least %d required); QEMU synthesizes a "
                        "PASID capability for the guest." % (log2, log2, want), ev, source)
    view = vendor_view(ctx, addr)
    width = _int(_get(view, "decoded", "derived", "pasid_width")) if view else None
    if view:
        ev["%s.derived.pasid_width" % view["path"]] = width
    basis = _derived_note(view) if view else None
    if view is None or width is None:
        return _r(WARN if view else FAIL, "Unknown: no hw_info for the device and its IOMMU's PASID width cannot be "
                                          "derived%s." % (" (%s)" % view["kind"] if view else ""), ev,
                  view["source"] if view else "facts",
                  "Gather facts without sysfs_only so the kernel reports max_pasid_log2 for the device.", basis=basis)
    if view["kind"] == "intel_vtd":
        sm, sm_ev = _intel_scalable_mode(ctx)
        ev.update(sm_ev)
        if sm is False:
            width = 0
    if width < want:
        what = ("has no PASID support" if not width
                else "supports %d-bit PASIDs, fewer than the %d required" % (width, want))
        return _r(FAIL, "The device's IOMMU (%s) %s (derived from its registers)." % (view["unit"], what), ev,
                  view["source"], "Use an IOMMU with PASID support (Intel: scalable mode), or lower pasid_bits.",
                  basis=basis, effect="requirement")
    return _r(WARN, "The device's IOMMU (%s) supports %d-bit PASIDs (derived from its registers); the device's own "
                    "PASID capability is unknown without hw_info." % (view["unit"], width), ev, view["source"],
              "Gather facts without sysfs_only so the kernel reports max_pasid_log2 for the device.", basis=basis)


@_check("device.ats", "device", "ATS usable by the device",
        "params.require_ats; devices.<a>.hw_info.capabilities.{ats_not_supported,reported_by_kernel.ats_not_supported}, "
        "else units.<u>.decoded (Intel ECAP.DT, Arm IDR0.ATS)",
        "kernel iommufd_get_hw_info(): IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED unless the driver affirms "
        "IOMMU_CAP_PCI_ATS_SUPPORTED (Linux >= 7.1; absence on older kernels \"implies ATS may be enabled\")",
        mdev="mediated device: ATS is a property of its parent PCI function")
def _device_ats(ctx, addr, dev, params):
    ev = {"params.require_ats": params.get("require_ats")}
    if not params.get("require_ats", True):
        return _r(NA, "ATS is not required (require_ats=false).", ev, "preflight parameters")
    hw = dev.get("hw_info")
    if _hw_ok(hw) and isinstance(hw.get("capabilities"), dict):
        caps = hw["capabilities"]
        not_supp = caps.get("ats_not_supported")
        reported = _get(caps, "reported_by_kernel", "ats_not_supported")
        ev.update({_dev_path(addr, "hw_info", "capabilities", "ats_not_supported"): not_supp,
                   _dev_path(addr, "hw_info", "capabilities", "reported_by_kernel", "ats_not_supported"): reported})
        source = "iommufd: IOMMU_GET_HW_INFO of %s" % addr
        if not_supp is True:
            return _r(FAIL, "ATS cannot be used on %s: the kernel reports IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED (the "
                            "device has no ATS capability, or its IOMMU or root port does not allow ATS)." % addr,
                      ev, source, "Assign a device with an ATS capability behind an IOMMU with device-TLB support "
                                  "(Intel ECAP.DT, AMD IOTLB, Arm IDR0.ATS + IORT).", effect="requirement")
        if not_supp is False and reported is True:
            return _r(PASS, "ATS is usable on %s (the kernel does not report ATS_NOT_SUPPORTED)." % addr, ev, source)
        return _r(WARN, "This kernel does not report per-device ATS (Linux < 7.1): the flag's absence \"implies ATS may "
                        "be enabled\" but proves nothing.", ev, source,
                  "Check the device's ATS capability with lspci -vv (Address Translation Service) and the IOMMU's "
                  "device-TLB support.")
    view = vendor_view(ctx, addr)
    basis = _derived_note(view) if view else None
    if view is None:
        return _r(FAIL, "Cannot verify: the device has no IOMMU unit and no hw_info.",
                  {_dev_path(addr, "iommu_unit"): dev.get("iommu_unit")}, "facts",
                  "Enable the IOMMU and gather the facts again.", effect="requirement")
    bit, p = None, None
    if view["kind"] == "intel_vtd":
        bit, p = _vfield(view, "ecap", "dev_iotlb_support")
    elif view["kind"] == "arm_smmuv3":
        bit, p = _vfield(view, "idr0", "ats")
    if p:
        ev[p] = bit
    if bit is False or bit == 0:
        return _r(FAIL, "The device's IOMMU (%s) has no device-TLB/ATS support (derived from its registers)."
                  % view["unit"], ev, view["source"], "Use an IOMMU with ATS support.", basis=basis, effect="requirement")
    return _r(WARN, "Unknown whether ATS is usable on %s: %s; only the kernel's per-device answer (hw_info, Linux "
                    ">= 7.1) covers the device and root port." % (
                        addr, "its IOMMU allows ATS (derived)" if bit else "no per-vendor rule for %s" % view["kind"]),
              ev, view["source"], "Gather facts without sysfs_only on Linux >= 7.1.", basis=basis)
