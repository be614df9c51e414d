# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Live-migration checks: IOMMU dirty tracking per device and the VM's vIOMMU.

migration.dirty_tracking (scope device; ``dirty_tracking_support`` also applies the kernel's
per-vendor rule to the registers when the kernel did not report the capability) and
migration.viommu (scope vm). Rules mirror QEMU hw/vfio/migration.c vfio_migration_realize(),
hw/vfio/iommufd.c iommufd_cdev_autodomains_get() (dirty-tracking HWPT), hw/arm/smmuv3.c and
hw/i386/amd_iommu.c (unmigratable vIOMMUs); kernel intel_iommu_capable / amd_iommu_hd_support /
arm_smmu_dbm_capable.
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.policy.facts import (
    _derived_note, _dev_path, _get, _hw_ok, _intel_scalable_mode, vendor_view, _vfield)
from ansible_collections.iommu.host.plugins.module_utils.policy.params import QEMU_MASTER, _version_text
from ansible_collections.iommu.host.plugins.module_utils.policy.registry import FAIL, NA, PASS, WARN, _check, _r

__metaclass__ = type


def dirty_tracking_support(ctx, addr):
    """(supported True/False/None, how, evidence, source, basis) for the IOMMU of a device.

    The generic capability IOMMU_HW_CAP_DIRTY_TRACKING from hw_info when available; otherwise
    derived from the unit's registers with the kernel's per-vendor rule (labelled derived).
    """
    dev = ctx.dev(addr)
    hw = dev.get("hw_info")
    if _hw_ok(hw) and isinstance(hw.get("capabilities"), dict):
        caps = hw["capabilities"]
        value = caps.get("dirty_tracking")
        reported = _get(caps, "reported_by_kernel", "dirty_tracking")
        ev = {_dev_path(addr, "hw_info", "capabilities", "dirty_tracking"): value,
              _dev_path(addr, "hw_info", "capabilities", "reported_by_kernel", "dirty_tracking"): reported}
        if value is True:
            return True, "reported by the kernel (IOMMU_HW_CAP_DIRTY_TRACKING)", ev, "iommufd: IOMMU_GET_HW_INFO", None
        if value is False and reported is False:
            return False, ("the kernel (%s) predates IOMMU dirty tracking (Linux 6.7)"
                           % _get(ctx.kernel, "release")), ev, "iommufd: IOMMU_GET_HW_INFO", None
        if value is False:
            return False, "IOMMU_HW_CAP_DIRTY_TRACKING is clear in the kernel's answer", ev, \
                "iommufd: IOMMU_GET_HW_INFO", None
    view = vendor_view(ctx, addr)
    if view is None:
        return None, "the device has no IOMMU unit and no hw_info", {_dev_path(addr, "iommu_unit"): dev.get("iommu_unit")}, \
            "facts", None
    kind = view["kind"]
    ev = {}
    basis = _derived_note(view) if view["basis"] == "sysfs" else "derived per vendor from the hw_info registers"
    if kind == "intel_vtd":
        bits = {}
        for name in ("smts", "slads", "smpwc", "slts"):
            bits[name], p = _vfield(view, "ecap", name)
            ev[p] = bits[name]
        if any(v is None for v in bits.values()):
            return None, "the unit's ECAP register is unknown", ev, view["source"], basis
        sm, sm_ev = _intel_scalable_mode(ctx)
        ev.update(sm_ev)
        hw_ok = bits["smts"] and bits["slads"] and bits["smpwc"] and bits["slts"]
        rule = "kernel ssads_supported(): scalable mode && ECAP.SMTS && ECAP.SLADS && ECAP.SMPWC, second stage (ECAP.SLTS)"
        if not hw_ok:
            missing = [n.upper() for n in ("smts", "slads", "smpwc", "slts") if not bits[n]]
            return False, "%s; ECAP lacks %s" % (rule, ", ".join(missing)), ev, view["source"], basis
        if sm is False:
            return False, "%s; the kernel runs the IOMMU in legacy mode (scalable mode off)" % rule, ev, \
                view["source"], basis
        if sm is None:
            return None, ("%s; the registers allow it but whether the kernel enables scalable mode is "
                          "unknown (no intel_iommu=sm_on and no readable kernel config)" % rule), ev, \
                view["source"], basis
        return True, rule, ev, view["source"], basis
    if kind == "amd":
        hd, p = _vfield(view, "efr", "hdsup")
        ev[p] = hd
        hats, p2 = _vfield(view, "efr", "hats")
        ev[p2] = hats
        if hd is None:
            return None, "the unit's EFR register is unknown", ev, view["source"], basis
        rule = "kernel amd_iommu_hd_support(): EFR.HDSup(52) and host translation enabled (EFR.HATS != 3)"
        if hd and hats == 3:
            return False, rule + "; EFR.HATS == 3 disables host translation", ev, view["source"], basis
        return bool(hd), rule, ev, view["source"], basis
    if kind == "arm_smmuv3":
        httu, p = _vfield(view, "idr0", "httu")
        ev[p] = httu
        if httu is not None and httu < 2:
            return False, "IDR0.HTTU < 2 (no hardware dirty-state update, arm_smmu_dbm_capable)", ev, \
                view["source"], basis
        return None, ("the SMMUv3 rule also needs firmware coherency and the IORT HTTU override, which the "
                      "registers do not show; only IOMMU_GET_HW_INFO answers it"), ev, view["source"], basis
    return None, "no per-vendor rule for IOMMU type %s" % kind, ev, view["source"], basis


@_check("migration.dirty_tracking", "device", "IOMMU dirty tracking for live migration",
        "devices.<a>.hw_info.capabilities.dirty_tracking, else units.<u>.decoded (Intel ECAP.SMTS/SLADS/SMPWC/SLTS "
        "+ scalable mode, AMD EFR.HDSup/HATS, SMMUv3 IDR0.HTTU)",
        "QEMU hw/vfio/iommufd.c iommufd_cdev_autodomains_get() (IOMMU_HW_CAP_DIRTY_TRACKING -> "
        "IOMMU_HWPT_ALLOC_DIRTY_TRACKING, QEMU >= 9.1); hw/vfio/migration.c vfio_migration_realize() "
        "\"%s: VFIO device doesn't support device and IOMMU dirty tracking\"; kernel "
        "intel_iommu_capable/amd_iommu_hd_support/arm_smmu_dbm_capable",
        mdev=("mediated device: QEMU gives mdevs no IOMMU dirty tracking (no HWPT, hw/vfio/iommufd.c:477); "
              "their migration depends on the vendor driver's own dirty tracking"))
def _migration_dirty_tracking(ctx, addr, dev, params):
    if not params.get("iommufd", True):
        return _r(FAIL, "IOMMU dirty tracking needs the iommufd backend: on the legacy VFIO container QEMU only "
                        "uses the device's own DMA logging (iommu_dirty_tracking is set on the iommufd path only).",
                  {"params.iommufd": False}, "preflight parameters",
                  "Deploy the VM with -object iommufd and vfio-pci,iommufd= (iommufd=true).")
    supported, how, ev, source, basis = dirty_tracking_support(ctx, addr)
    derived = " (derived from %s registers via sysfs, not reported by the kernel for this device)" % (
        vendor_view(ctx, addr) or {}).get("unit") if basis and "sysfs" in basis else ""
    if supported is True:
        return _r(PASS, "The IOMMU of %s supports dirty tracking: %s%s; QEMU requests a dirty-tracking HWPT."
                  % (addr, how, derived), ev, source, basis=basis)
    qemu = ("QEMU requests no dirty-tracking HWPT; unless the device itself supports DMA logging (a VFIO "
            "migration driver with device dirty tracking), migration is blocked: \"%s: VFIO device doesn't "
            "support device and IOMMU dirty tracking\"" % addr)
    others = [a for a in ctx.pci if a != addr and dirty_tracking_support(ctx, a)[0] is True]
    if others:
        qemu += ("; sharing a container with %s, QEMU also warns \"IOMMU instance for device %s doesn't "
                 "support dirty tracking\"" % (", ".join(others), addr))
    remedy = ("Use a host whose IOMMU has dirty tracking (Intel: scalable mode with ECAP.SLADS, "
              "intel_iommu=sm_on; AMD: EFR.HDSup; Arm: SMMUv3 with HTTU and coherent access) and a kernel >= 6.7, "
              "or a device whose VFIO variant driver supports DMA logging.")
    if supported is False:
        return _r(FAIL, "The IOMMU of %s does not support dirty tracking: %s%s. %s." % (addr, how, derived, qemu),
                  ev, source, remedy, basis=basis)
    return _r(WARN, "Unknown whether the IOMMU of %s supports dirty tracking: %s%s." % (addr, how, derived),
              ev, source, "Gather facts without sysfs_only so the kernel reports IOMMU_HW_CAP_DIRTY_TRACKING "
                          "for the device.", basis=basis)


@_check("migration.viommu", "vm", "Migration with the VM's vIOMMU",
        "params.viommu, params.qemu_version, params.x_device_dirty_page_tracking, params.pci_id",
        "QEMU hw/vfio/migration.c vfio_migration_realize(): \"%s: Migration is currently not supported with "
        "vIOMMU enabled\" (unconditional up to v10.2.0, relaxed by 0e3c1e2b2b in master); hw/arm/smmuv3.c "
        "\"Migration not supported with SMMUv3 accelerator mode enabled\"; hw/i386/amd_iommu.c "
        "vmstate_amdvi_sysbus .unmigratable unless pci-id (v10.1)")
def _migration_viommu(ctx, params):
    viommu = params.get("viommu") or "none"
    ev = {"params.viommu": viommu, "params.qemu_version": params.get("qemu_version")}
    src = "preflight parameters"
    addr = ctx.first_device()
    if viommu == "none":
        return _r(NA, "The VM has no vIOMMU.", ev, src)
    if viommu == "arm-smmuv3":
        return _r(FAIL, "QEMU blocks migration of a VM with arm-smmuv3,accel=on: \"Migration not supported with "
                        "SMMUv3 accelerator mode enabled\".", ev, src,
                  "Do not use live migration with arm-smmuv3,accel=on; migrate with cold restarts instead.")
    if viommu == "amd-iommu":
        ev["params.pci_id"] = params.get("pci_id")
        if ctx.qemu >= (10, 1, 0) and params.get("pci_id"):
            return _r(PASS, "amd-iommu is created with pci-id=%s (AMDVI-PCI), which QEMU >= 10.1 migrates." %
                      params.get("pci_id"), ev, src)
        return _r(FAIL, "amd-iommu is unmigratable (vmstate_amdvi_sysbus .unmigratable = 1) unless it is "
                        "created with pci-id= pointing at an AMDVI-PCI device (QEMU >= 10.1).", ev, src,
                  "Create -device AMDVI-PCI,id=iommupci0 -device amd-iommu,pci-id=iommupci0 on QEMU >= 10.1.")
    # intel-iommu
    ev["params.x_device_dirty_page_tracking"] = params.get("x_device_dirty_page_tracking")
    if ctx.qemu < QEMU_MASTER:
        return _r(FAIL, "QEMU %s blocks migration of every VFIO device behind a vIOMMU: \"%s: Migration is "
                        "currently not supported with vIOMMU enabled\"." % (_version_text(ctx.qemu), addr), ev, src,
                  "Use QEMU master (11.0) with IOMMU dirty tracking, or a VM without vIOMMU.")
    if params.get("x_device_dirty_page_tracking", True):
        return _r(WARN, "With a vIOMMU, QEMU master migrates only with IOMMU dirty tracking; if the device also "
                        "supports device dirty tracking (DMA logging), QEMU blocks migration: \"%s: Migration is "
                        "currently not supported with vIOMMU enabled\"." % addr, ev, src,
                  "Set x-device-dirty-page-tracking=off on the vfio-pci device (x_device_dirty_page_tracking: false).")
    return _r(PASS, "QEMU master migrates a VFIO device behind a vIOMMU with IOMMU dirty tracking "
                    "(x-device-dirty-page-tracking=off); see migration.dirty_tracking.", ev, src)
