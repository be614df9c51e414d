# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Live-migration checks: what QEMU's vfio_migration_realize() decides for each assigned device.

migration.device (the device's VFIO migration uAPI: VFIO_DEVICE_FEATURE MIGRATION with STOP_COPY),
migration.dirty_tracking (device DMA logging or IOMMU dirty tracking; ``dirty_tracking_support``
also applies the kernel's per-vendor rule to the registers when the kernel did not report the
capability), migration.p2p (several migratable devices) and migration.viommu (scope vm).
QEMU adds at most one blocker per device (the first that applies, in that order); with
vfio-pci enable-migration=on a blocker is a refusal when the VM starts instead. Rules mirror QEMU hw/vfio/migration.c vfio_migration_realize(),
hw/vfio/iommufd.c iommufd_cdev_autodomains_get() (dirty-tracking HWPT), hw/arm/smmuv3.c and
hw/i386/amd_iommu.c (unmigratable vIOMMUs); kernel intel_iommu_capable / amd_iommu_hd_support /
arm_smmu_dbm_capable.
"""

from __future__ import absolute_import, division, print_function

import errno
import os

from ansible_collections.iommu.host.plugins.module_utils.policy.facts import (
    _derived_note, _dev_path, _dict, _get, _hw_ok, _int, _intel_scalable_mode, path, vendor_view, _vfield)
from ansible_collections.iommu.host.plugins.module_utils.policy.params import _version_text
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


_SRC_FEATURE = "vfio: VFIO_DEVICE_FEATURE (MIGRATION, DMA_LOGGING) of the opened device"


def _dev_fact_path(ctx, dev_id, *keys):
    return path("mdevs", dev_id, *keys) if ctx.is_mdev(dev_id) else _dev_path(dev_id, *keys)


def migration_support(ctx, dev_id):
    """(state, detail, evidence) of the device's VFIO migration uAPI as QEMU's vfio_migration_init() sees it.

    state: 'stop_copy' (migratable), 'no_stop_copy', 'not_in_kernel' (ENOTTY: the driver has no
    migration support, e.g. plain vfio-pci), 'error' (another errno), or None (not probed).
    detail: the flags dict, or (errno, strerror text).
    """
    dev = ctx.dev(dev_id)
    feats = dev.get("vfio_features")
    mig = _get(feats, "migration")
    ev = {_dev_fact_path(ctx, dev_id, "vfio_features", "migration"): mig,
          _dev_fact_path(ctx, dev_id, "vfio", "driver"): _get(dev, "vfio", "driver") or dev.get("driver")}
    if not isinstance(mig, dict):
        ev[_dev_fact_path(ctx, dev_id, "vfio_features", "skipped")] = _get(feats, "skipped")
        return None, None, ev
    if mig.get("supported") is True or isinstance(mig.get("flags"), dict):
        # the GET succeeded: the flags decide (iommu_uapi.probe_migration reports supported=false
        # with the flags when STOP_COPY is missing)
        flags = _dict(mig.get("flags"))
        if flags.get("stop_copy"):
            return "stop_copy", flags, ev
        return "no_stop_copy", flags, ev
    errno_ = _errno(mig.get("errno"))
    if errno_ is None:
        errno_ = _errno(_get(mig, "error", "errno"))
    if errno_ == errno.ENOTTY or errno_ is None and mig.get("supported") is False:
        return "not_in_kernel", (errno.ENOTTY, os.strerror(errno.ENOTTY)), ev
    # QEMU prints strerror(errno); the facts' error message (iommu.host's explanation) goes in the evidence
    return "error", (errno_, os.strerror(errno_) if errno_ else "unknown error"), ev


def _errno(value):
    """An errno number from an int or a name such as 'EINVAL' (facts keep either); None otherwise."""
    number = _int(value)
    if number is None and isinstance(value, str) and value.strip().upper().startswith("E"):
        number = getattr(errno, value.strip().upper(), None)
    return number if isinstance(number, int) and number > 0 else None


def device_dirty_tracking(ctx, dev_id):
    """(True/False/None, evidence): the device's own dirty tracking (DMA logging) as QEMU probes it."""
    feats = ctx.dev(dev_id).get("vfio_features")
    value = _get(feats, "dma_logging", "supported")
    return (value if isinstance(value, bool) else None), {
        _dev_fact_path(ctx, dev_id, "vfio_features", "dma_logging", "supported"): value}


def _blocker(ctx, params, message, ev, remedy, name=None):
    """QEMU's vfio_block_migration(): a migration blocker, or a refusal at VM start with enable-migration=on
    (then vfio_pci_realize prefixes "vfio <device>: ", oracle QEMU 10.0/11.1)."""
    if params.get("enable_migration") == "on":
        if name:
            message = "vfio %s: %s" % (name, message)
        return _r(FAIL, "With enable-migration=on QEMU refuses the device when the VM starts: \"%s\"." % message,
                  ev, "preflight parameters and facts", remedy, effect="refuse")
    return _r(FAIL, "QEMU blocks migration: \"%s\"." % message, ev, "preflight parameters and facts", remedy,
              effect="block_migration")


@_check("migration.device", "device", "Device can migrate (VFIO migration uAPI)",
        "devices.<a>.vfio_features.migration (mdevs.<u>.vfio_features.migration), devices.<a>.vfio.driver; "
        "params.enable_migration",
        "QEMU hw/vfio/migration.c vfio_migration_realize() / vfio_migration_init(): VFIO_DEVICE_FEATURE "
        "MIGRATION must answer with VFIO_MIGRATION_STOP_COPY; ENOTTY -> \"%s: VFIO migration is not supported in "
        "kernel\" (11.1: \"%s: VFIO migration init failed: migration is not supported in kernel\"); "
        "enable-migration=off -> \"%s: Migration is disabled for VFIO device\"; vfio_block_migration(): a refusal "
        "at VM start with enable-migration=on", mdev=True, verified=((10, 0), (11, 1)))
def _migration_device(ctx, dev_id, dev, params):
    name = dev_id
    remedy = ("Assign a device whose VFIO variant driver implements migration (mlx5_vfio_pci, "
              "virtio_vfio_pci, pds_vfio_pci, hisi_acc_vfio_pci, qat_vfio_pci, nvgrace_gpu_vfio_pci, ...; "
              "iommu.host.vfio_pci driver:) or an mdev whose vendor driver supports migration.")
    if params.get("enable_migration") == "off":
        return _r(FAIL, "QEMU blocks migration: \"%s: Migration is disabled for VFIO device\" (enable-migration=off)."
                  % name, {"params.enable_migration": "off"}, "preflight parameters",
                  "Remove enable-migration=off from the vfio-pci device.", effect="block_migration")
    state, detail, ev = migration_support(ctx, dev_id)
    ev["params.enable_migration"] = params.get("enable_migration")
    if state == "stop_copy":
        kinds = [k.upper() for k in ("stop_copy", "pre_copy", "p2p") if detail.get(k)]
        return _r(PASS, "%s implements VFIO migration (%s) through %s." % (
            name, ", ".join(kinds), _get(ctx.dev(dev_id), "vfio", "driver") or ctx.dev(dev_id).get("driver")
            or "its driver"), ev, _SRC_FEATURE)
    if state is None:
        return _r(WARN, "Unknown whether %s can migrate: its VFIO migration feature was not read (%s)." % (
            name, _get(ctx.dev(dev_id), "vfio_features", "skipped") or "the device was not opened"), ev, "facts",
            "Gather the facts without sysfs_only (the device must be idle and on a VFIO driver) so that "
            "VFIO_DEVICE_FEATURE MIGRATION is read.")
    if state == "not_in_kernel":
        message = ctx.words("migration.not_in_kernel") % name
        if ctx.since(11, 1):
            # 11.1 reports it with error_setg_errno(): strerror(ENOTTY) follows (oracle, QEMU 11.1.3)
            message += ": Inappropriate ioctl for device"
        why = "its driver (%s) does not implement the VFIO migration uAPI (VFIO_DEVICE_FEATURE MIGRATION: ENOTTY)" % (
            _get(ctx.dev(dev_id), "vfio", "driver") or ctx.dev(dev_id).get("driver") or "unknown")
    elif state == "no_stop_copy":
        message = ctx.words("migration.no_stop_copy") % name
        why = "its migration feature lacks VFIO_MIGRATION_STOP_COPY"
    else:
        errno_, text = detail
        if ctx.since(11, 1):
            message = ctx.words("migration.init_failed") % (name, text)
        else:
            message = ctx.words("migration.init_failed") % (name, errno_ or 0, text)
        why = "reading its migration feature failed (%s)" % (
            _get(ctx.dev(dev_id), "vfio_features", "migration", "error", "message") or text)
    res = _blocker(ctx, params, message, ev, remedy, name=name)
    res["message"] = "%s cannot migrate: %s. %s" % (name, why, res["message"])
    return res


@_check("migration.dirty_tracking", "device", "Dirty tracking for live migration (device or IOMMU)",
        "devices.<a>.vfio_features.dma_logging, devices.<a>.hw_info.capabilities.dirty_tracking, else "
        "units.<u>.decoded (Intel ECAP.SMTS/SLADS/SMPWC/SLTS + scalable mode, AMD EFR.HDSup/HATS, SMMUv3 "
        "IDR0.HTTU); params.{iommufd,x_device_dirty_page_tracking,enable_migration}",
        "QEMU hw/vfio/migration.c vfio_migration_realize(): device dirty tracking (VFIO_DEVICE_FEATURE PROBE "
        "DMA_LOGGING_START, vfio_device_dirty_pages_disabled) or IOMMU dirty tracking (hw/vfio/iommufd.c "
        "iommufd_cdev_autodomains_get(): IOMMU_HW_CAP_DIRTY_TRACKING -> IOMMU_HWPT_ALLOC_DIRTY_TRACKING, iommufd "
        "only, never for mdevs), else \"%s: VFIO device doesn't support device and IOMMU dirty tracking\" "
        "(a blocker with enable-migration=auto, a warning with on); kernel intel_iommu_capable / "
        "amd_iommu_hd_support / arm_smmu_dbm_capable", mdev=True, verified=((10, 0), (11, 1)))
def _migration_dirty_tracking(ctx, addr, dev, params):
    if params.get("enable_migration") == "off":
        return _r(NA, "enable-migration=off: QEMU does not prepare %s for migration (see migration.device)." % addr,
                  {"params.enable_migration": "off"}, "preflight parameters")
    mdev = ctx.is_mdev(addr)
    state, _detail, mig_ev = migration_support(ctx, addr)
    if state in ("not_in_kernel", "no_stop_copy", "error"):
        # vfio_migration_realize() returns at the device's own blocker, before the dirty-tracking test
        return _r(NA, "%s cannot migrate (see migration.device): QEMU stops at that blocker before it looks at "
                      "dirty tracking." % addr, mig_ev, _SRC_FEATURE)
    device_dt, ev = device_dirty_tracking(ctx, addr)
    ev["params.x_device_dirty_page_tracking"] = params.get("x_device_dirty_page_tracking")
    if device_dt and params.get("x_device_dirty_page_tracking", True):
        return _r(PASS, "%s tracks its own DMA writes (VFIO_DEVICE_FEATURE DMA_LOGGING): QEMU uses device dirty "
                        "tracking." % addr, ev, _SRC_FEATURE)
    if device_dt or not params.get("x_device_dirty_page_tracking", True):
        device_note = "x-device-dirty-page-tracking=off"
    elif device_dt is False:
        device_note = "the device has no DMA logging"
    else:
        device_note = "whether the device has DMA logging is unknown"
    message = "%s: VFIO device doesn't support device and IOMMU dirty tracking" % addr
    if mdev:
        iommu_dt, how, source, basis = False, ("an mdev gets no IOMMU dirty tracking from QEMU (no HWPT, "
                                               "hw/vfio/iommufd.c)"), "facts", None
    elif not params.get("iommufd", True):
        iommu_dt, how, source, basis = False, ("IOMMU dirty tracking needs the iommufd backend (QEMU sets "
                                               "iommu_dirty_tracking on the iommufd path only)"), \
            "preflight parameters", None
        ev["params.iommufd"] = False
    else:
        iommu_dt, how, dt_ev, source, basis = dirty_tracking_support(ctx, addr)
        ev.update(dt_ev)
        if basis and "sysfs" in str(basis):
            how += " (derived from %s registers via sysfs, not reported by the kernel for this device)" % (
                vendor_view(ctx, addr) or {}).get("unit")
        others = [a for a in ctx.pci if a != addr and dirty_tracking_support(ctx, a)[0] is True]
        if iommu_dt is False and others:
            # hw/vfio/iommufd.c iommufd_cdev_autodomains_get(): the container already tracks dirty pages
            how += ("; sharing the iommufd container with %s, QEMU also warns \"IOMMU instance for device %s "
                    "doesn't support dirty tracking\" when it attaches after them" % (", ".join(others), addr))
    if iommu_dt is True:
        return _r(PASS, "The IOMMU of %s supports dirty tracking: %s; QEMU requests a dirty-tracking HWPT (%s)."
                  % (addr, how, device_note), ev, source, basis=basis)
    remedy = ("Use a host whose IOMMU has dirty tracking (Intel: scalable mode with ECAP.SLADS, "
              "intel_iommu=sm_on; AMD: EFR.HDSup; Arm: SMMUv3 with HTTU and coherent access), a kernel >= 6.7 and "
              "the iommufd backend, or a device whose VFIO variant driver supports DMA logging.")
    if iommu_dt is None or (device_dt is None and params.get("x_device_dirty_page_tracking", True)):
        return _r(WARN, "Unknown whether %s has dirty tracking: %s; %s. Without either QEMU %s \"%s\"." % (
            addr, how, device_note, "warns" if params.get("enable_migration") == "on" else "blocks migration:",
            message), ev, source, "Gather the facts without sysfs_only so the kernel reports "
                                  "IOMMU_HW_CAP_DIRTY_TRACKING and the device's DMA logging.", basis=basis)
    if params.get("enable_migration") == "on":
        return _r(WARN, "Neither device nor IOMMU dirty tracking for %s (%s; %s): with enable-migration=on QEMU "
                        "warns \"%s\" and treats all guest memory as dirty (slow migration)." % (
                            addr, device_note, how, message), ev, source, remedy, basis=basis,
                  effect="warning")
    return _r(FAIL, "Neither device nor IOMMU dirty tracking for %s (%s; %s): QEMU blocks migration: \"%s\"." % (
        addr, device_note, how, message), ev, source, remedy, basis=basis, effect="block_migration")


@_check("migration.p2p", "vm", "Several migratable devices support P2P migration",
        "devices.<a>.vfio_features.migration.flags.p2p for the selected devices",
        "QEMU hw/vfio/migration.c vfio_block_multiple_devices_migration(): \"Multiple VFIO devices migration is "
        "supported only if all of them support P2P migration\" (a blocker; an error with enable-migration=on)",
        verified=((10, 0), (11, 1)))
def _migration_p2p(ctx, params):
    if params.get("enable_migration") == "off":
        return _r(NA, "enable-migration=off: no device is migratable (see migration.device).",
                  {"params.enable_migration": "off"}, "preflight parameters")
    devices = list(ctx.pci) + list(ctx.mdevs)
    migratable, no_p2p, ev = [], [], {}
    for dev_id in devices:
        state, detail, dev_ev = migration_support(ctx, dev_id)
        if state == "stop_copy":
            migratable.append(dev_id)
            ev[_dev_fact_path(ctx, dev_id, "vfio_features", "migration", "flags", "p2p")] = detail.get("p2p")
            if not detail.get("p2p"):
                no_p2p.append(dev_id)
    if len(migratable) < 2:
        return _r(NA, "Fewer than two assigned devices can migrate (%s): QEMU applies no P2P rule." % (
            ", ".join(migratable) or "none"), ev, _SRC_FEATURE)
    if no_p2p:
        return _blocker(ctx, params, "Multiple VFIO devices migration is supported only if all of them support P2P "
                                     "migration", ev,
                        "Assign only one migratable device, or devices whose drivers support VFIO_MIGRATION_P2P "
                        "(not: %s)." % ", ".join(no_p2p))
    return _r(PASS, "Every migratable device supports P2P migration (%s)." % ", ".join(migratable), ev, _SRC_FEATURE)


@_check("migration.viommu", "vm", "Migration with the VM's vIOMMU",
        "params.viommu, params.qemu_version, params.x_device_dirty_page_tracking, params.pci_id; "
        "devices.<a>.vfio_features.dma_logging",
        "QEMU hw/vfio/migration.c vfio_migration_realize(): \"%s: Migration is currently not supported with "
        "vIOMMU enabled\" (any VFIO device behind a vIOMMU up to v10.2; from 11.0 (0e3c1e2b2b) only while device "
        "dirty tracking is in use); hw/arm/smmuv3.c \"Migration not supported with SMMUv3 accelerator mode "
        "enabled\" (11.0+); hw/i386/amd_iommu.c vmstate_amdvi_sysbus .unmigratable unless pci-id (10.1+): "
        "migration/savevm.c \"State blocked by non-migratable device '%s'\"", verified=((10, 0), (11, 1)))
def _migration_viommu(ctx, params):
    viommu = params.get("viommu") or "none"
    ev = {"params.viommu": viommu, "params.qemu_version": params.get("qemu_version")}
    src = "preflight parameters"
    devices = list(ctx.pci) + list(ctx.mdevs)
    if viommu == "none":
        return _r(NA, "The VM has no vIOMMU.", ev, src)
    if params.get("enable_migration") == "off":
        return _r(NA, "enable-migration=off: every device already blocks migration (see migration.device).", ev, src)
    problems, remedies, effect = [], [], "block_migration"
    if viommu == "arm-smmuv3" and params.get("accel", True) and ctx.since(11, 0):
        ev["params.accel"] = params.get("accel", True)
        problems.append("\"Migration not supported with SMMUv3 accelerator mode enabled\"")
        remedies.append("Do not live-migrate VMs with arm-smmuv3,accel=on.")
    if viommu == "amd-iommu":
        ev["params.pci_id"] = params.get("pci_id")
        if not (ctx.since(10, 1) and params.get("pci_id")):
            problems.append("amd-iommu is unmigratable unless created with pci-id= (QEMU 10.1+): \"State blocked by "
                            "non-migratable device 'amd-iommu'\"")
            remedies.append("Create -device AMDVI-PCI,id=iommupci0 -device amd-iommu,pci-id=iommupci0 (QEMU 10.1+).")
    ev["params.x_device_dirty_page_tracking"] = params.get("x_device_dirty_page_tracking")
    blocked, unknown, considered = [], [], []
    for dev_id in devices:
        state = migration_support(ctx, dev_id)[0]
        if state not in ("stop_copy", None):
            continue  # that device's own blocker comes first (migration.device)
        considered.append(dev_id)
        if not ctx.since(11, 0):
            blocked.append(dev_id)  # blocked either way: by its own blocker or by the vIOMMU
            continue
        device_dt, dev_ev = device_dirty_tracking(ctx, dev_id)
        ev.update(dev_ev)
        if not params.get("x_device_dirty_page_tracking", True) or device_dt is False:
            continue
        if device_dt is True:
            blocked.append(dev_id)
        else:
            unknown.append(dev_id)  # 11.0+: blocked only if the device has DMA logging, which the facts lack
    if blocked:
        rule = ("QEMU %s blocks migration of every VFIO device behind a vIOMMU" % _version_text(ctx.qemu)
                if not ctx.since(11, 0) else
                "QEMU %s blocks migration of a VFIO device behind a vIOMMU while it uses device dirty tracking"
                % _version_text(ctx.qemu))
        problems.append("%s: %s" % (rule, "; ".join(
            "\"%s: Migration is currently not supported with vIOMMU enabled\"" % d for d in blocked)))
        remedies.append("Use QEMU 11.0+ with IOMMU dirty tracking and x-device-dirty-page-tracking=off"
                        if ctx.since(11, 0) else "Use QEMU 11.0+ (IOMMU dirty tracking), or a VM without vIOMMU.")
        if params.get("enable_migration") == "on":
            effect = "refuse"
    if problems:
        lead = ("QEMU refuses the device when the VM starts (enable-migration=on):" if effect == "refuse"
                else "Migration is blocked:")
        return _r(FAIL, "%s %s." % (lead, "; ".join(problems)), ev, src, " ".join(remedies), effect=effect)
    if unknown:
        blocker = "%s: Migration is currently not supported with vIOMMU enabled" % unknown[0]
        return _r(WARN, "Unknown whether QEMU %s blocks migration behind %s: it blocks a VFIO device that uses "
                        "device dirty tracking (\"%s\"), and the facts do not say whether %s support%s DMA logging." % (
                            _version_text(ctx.qemu), viommu, blocker, ", ".join(unknown),
                            "s" if len(unknown) == 1 else ""), ev,
                  "facts", "Gather the facts without sysfs_only (VFIO_DEVICE_FEATURE DMA_LOGGING), or set "
                           "x-device-dirty-page-tracking=off on the vfio-pci devices so that QEMU uses IOMMU dirty "
                           "tracking.")
    if not devices:
        return _r(NA, "No device selected.", ev, src)
    if not considered:
        return _r(NA, "No selected device can migrate (see migration.device): the vIOMMU rule is not reached.",
                  ev, src)
    return _r(PASS, "QEMU %s migrates these devices behind %s%s." % (
        _version_text(ctx.qemu), viommu, " with IOMMU dirty tracking (see migration.dirty_tracking)"
        if ctx.since(11, 0) else ""), ev, src)
