# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Intel vIOMMU checks (profile intel_viommu): QEMU intel-iommu with assigned devices.

viommu.intel.config / caching_mode (scope vm, the properties QEMU validates) and, per device,
aw_bits, x_flts, nesting, fs1gp, pasid against the host VT-d registers. Rules mirror QEMU
hw/i386/intel_iommu.c (vtd_decide_config, vtd_check_hiod, vtd_dev_set_iommu_device) and
hw/i386/intel_iommu_accel.c (vtd_check_hiod_accel); kernel drivers/iommu/intel/.
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.policy.facts import (
    _TYPE_IDS, _derived_note, _dev_path, _dict, _get, _hw_ok, _hw_type_id, _int, _intel_scalable_mode,
    vendor_view, _vfield)
from ansible_collections.iommu.host.plugins.module_utils.policy.params import QEMU_MASTER, _version_text
from ansible_collections.iommu.host.plugins.module_utils.policy.registry import (
    FAIL, _MDEV_VIOMMU, NA, PASS, WARN, _check, _onoff, _qemu_err, _r)

__metaclass__ = type


@_check("viommu.intel.config", "vm", "intel-iommu properties valid for device assignment",
        "params.{aw_bits,x_scalable_mode,x_flts,x_pasid_mode,snoop_control,qemu_version}",
        "QEMU hw/i386/intel_iommu.c vtd_decide_config() (line 5531) and vtd_iommu_notify_flag_changed() "
        "(line 4066); x-flts since v10.0.0 (aa68a9fbdb)")
def _intel_config(ctx, params):
    aw = params.get("aw_bits")
    flts, sm = params.get("x_flts"), params.get("x_scalable_mode")
    ev = dict(("params.%s" % k, params.get(k)) for k in
              ("aw_bits", "x_scalable_mode", "x_flts", "x_pasid_mode", "snoop_control", "qemu_version"))
    problems = []
    if flts and ctx.qemu < (10, 0, 0):
        problems.append("x-flts does not exist before QEMU 10.0 (QEMU %s)" % _version_text(ctx.qemu))
    if flts and not sm:
        problems.append("\"x-flts is only available in scalable mode\"")
    if flts and sm:
        if aw != 48:
            problems.append("\"Scalable mode(x-flts=on): supported value for aw-bits is: 48\"")
    elif aw not in (39, 48):
        problems.append("\"%s: supported values for aw-bits are: 39, 48\"" % (
            "Scalable mode(flts=off)" if sm else "Legacy mode"))
    if params.get("x_pasid_mode") and not sm:
        problems.append("\"Need to set scalable mode for PASID\"")
    if params.get("snoop_control"):
        problems.append("\"Snoop Control with vhost or VFIO is not supported\"")
    if problems:
        return _r(FAIL, "QEMU rejects this intel-iommu configuration: %s." % "; ".join(problems), ev,
                  "preflight parameters",
                  "Fix the intel-iommu properties: aw-bits 39 or 48 (48 with x-flts), x-scalable-mode=on for "
                  "x-flts and x-pasid-mode, snoop-control=off with VFIO.")
    return _r(PASS, "intel-iommu properties are valid: aw-bits=%s, x-scalable-mode=%s, x-flts=%s, x-pasid-mode=%s."
              % (aw, _onoff(sm), _onoff(flts), _onoff(params.get("x_pasid_mode"))), ev, "preflight parameters")


@_check("viommu.intel.caching_mode", "vm", "intel-iommu caching-mode=on",
        "params.caching_mode, params.qemu_version",
        "QEMU hw/i386/intel_iommu.c vtd_dev_set_iommu_device() (line 4738, v10.2.0+, 3cda33e06e); before "
        "v10.2 the machine-init-done check with exit(1)")
def _intel_caching_mode(ctx, params):
    ev = {"params.caching_mode": params.get("caching_mode"), "params.qemu_version": params.get("qemu_version")}
    if params.get("caching_mode"):
        return _r(PASS, "caching-mode=on, as device assignment requires.", ev, "preflight parameters")
    addr = ctx.first_device()
    if ctx.qemu >= (10, 2, 0):
        qemu = _qemu_err(addr, "Device assignment is not allowed without enabling caching-mode=on for Intel IOMMU.")
    else:
        qemu = ("We need to set caching-mode=on for intel-iommu to enable device assignment with IOMMU "
                "protection.")
    return _r(FAIL, "caching-mode is off; QEMU refuses the assigned device: \"%s\"" % qemu, ev,
              "preflight parameters", "Add caching-mode=on to -device intel-iommu (libvirt: "
                                      "<driver caching_mode='on'/> in <iommu model='intel'>).")


def _intel_view(ctx, addr):
    """The device's Intel VT-d registers, or (None, result) when this is not a VT-d host/device."""
    view = vendor_view(ctx, addr)
    if view is None:
        return None, _r(FAIL, "Cannot verify: the device has no IOMMU unit and no hw_info.",
                        {_dev_path(addr, "iommu_unit"): ctx.dev(addr).get("iommu_unit"),
                         _dev_path(addr, "hw_info", "source"): _get(ctx.dev(addr).get("hw_info"), "source")},
                        "facts", "Enable the IOMMU and bind the device to vfio-pci, then gather the facts again.")
    return view, None


@_check("viommu.intel.aw_bits", "device", "intel-iommu aw-bits within the host's IOVA width",
        "params.aw_bits; devices.<a>.hw_info.vendor.derived.second_stage_iova_bits, else "
        "units.<u>.decoded.derived.second_stage_iova_bits (CAP.MGAW/SAGAW)",
        "QEMU hw/i386/intel_iommu.c vtd_check_hiod() (line 4708, v9.1.0+, 77f6efc0ab): \"aw-bits %d > host "
        "aw-bits %d\"; host aw-bits = last usable IOVA bit + 1 (hw/vfio/device.c vfio_device_get_aw_bits)",
        mdev=_MDEV_VIOMMU)
def _intel_aw_bits(ctx, addr, dev, params):
    aw = params.get("aw_bits")
    view, err = _intel_view(ctx, addr)
    if err:
        return err
    ev = {"params.aw_bits": aw}
    if view["kind"] != "intel_vtd":
        ev["iommu vendor"] = view["kind"]
        return _r(WARN, "The host IOMMU is %s, not Intel VT-d: its IOVA width is not derived here; QEMU compares "
                        "aw-bits=%s with it when the VM starts (\"aw-bits %s > host aw-bits N\")." % (
                            view["kind"], aw, aw), ev, view["source"],
                  "Make sure the host IOMMU's IOVA aperture covers %s bits." % aw)
    derived = _dict(_get(view, "decoded", "derived"))
    host = _int(derived.get("second_stage_iova_bits"))
    ev["%s.derived.second_stage_iova_bits" % view["path"]] = host
    mgaw, p = _vfield(view, "cap", "mgaw")
    ev[p] = mgaw
    sagaw, p = _vfield(view, "cap", "sagaw")
    ev[p] = sagaw
    basis = ("host aw-bits approximated by the second-stage IOVA width min(CAP.MGAW, widest CAP.SAGAW level) "
             "(kernel compute_vasz_lg2_ss); QEMU reads the last bit of IOMMU_IOAS_IOVA_RANGES after attaching")
    if view["basis"] == "sysfs":
        basis += "; " + _derived_note(view)
    if not host:
        return _r(FAIL, "Cannot verify: the host's IOVA width is unknown (no decoded CAP register).", ev,
                  view["source"], "Gather the facts again with iommu.host.iommu_facts.", basis=basis)
    if aw is not None and aw > host:
        qemu = _qemu_err(addr, "aw-bits %d > host aw-bits %d" % (aw, host))
        return _r(FAIL, "aw-bits=%s exceeds the host's %s-bit IOVA width (derived from CAP.MGAW/SAGAW); QEMU "
                        "refuses the device: \"%s\"." % (aw, host, qemu), ev, view["source"],
                  "Set aw-bits=%s (or lower) on intel-iommu, or use a host with a wider IOMMU address width."
                  % (39 if host >= 39 else host), basis=basis)
    return _r(PASS, "aw-bits=%s fits the host's %s-bit IOVA width (derived from CAP.MGAW/SAGAW)." % (aw, host), ev,
              view["source"], basis=basis)


@_check("viommu.intel.x_flts", "device", "x-flts (stage-1 nesting) accepted for the device",
        "params.{x_flts,iommufd,qemu_version}; devices.<a>.hw_info.type_id (else units.<u>.vendor)",
        "QEMU hw/i386/intel_iommu_accel.c vtd_check_hiod_accel() (line 19, master cca621c782): \"Need IOMMUFD "
        "backend when x-flts=on\", \"Incompatible host platform IOMMU type %d\"; QEMU 10.0-10.2 vtd_check_hiod: "
        "\"host device is uncompatible with stage-1 translation\"", mdev=_MDEV_VIOMMU)
def _intel_x_flts(ctx, addr, dev, params):
    ev = {"params.x_flts": params.get("x_flts"), "params.iommufd": params.get("iommufd"),
          "params.qemu_version": params.get("qemu_version")}
    if not params.get("x_flts"):
        return _r(NA, "x-flts is off: the vIOMMU uses emulated second-stage translation.", ev, "preflight parameters")
    if ctx.qemu < (10, 0, 0):
        return _r(FAIL, "x-flts does not exist in QEMU %s (added in 10.0)." % _version_text(ctx.qemu), ev,
                  "preflight parameters", "Use QEMU master (11.0) for x-flts with assigned devices.")
    if ctx.qemu < QEMU_MASTER:
        return _r(FAIL, "QEMU %s refuses every assigned device with x-flts=on: \"%s\"." % (
            _version_text(ctx.qemu), _qemu_err(addr, "host device is uncompatible with stage-1 translation")),
            ev, "preflight parameters", "Use QEMU master (11.0), or x-flts=off.")
    if not params.get("iommufd", True):
        return _r(FAIL, "x-flts needs the iommufd backend: \"%s\"." % _qemu_err(
            addr, "Need IOMMUFD backend when x-flts=on"), ev, "preflight parameters",
            "Use -object iommufd and vfio-pci,iommufd= (iommufd=true).")
    hw = ctx.dev(addr).get("hw_info")
    if _hw_ok(hw):
        tid = _hw_type_id(hw)
        ev[_dev_path(addr, "hw_info", "type_id")] = tid
        source, basis = "iommufd: IOMMU_GET_HW_INFO of %s" % addr, None
    else:
        view = vendor_view(ctx, addr)
        kind = view["kind"] if view else None
        ev[_dev_path(addr, "iommu_vendor")] = kind
        if kind is None:
            return _r(FAIL, "Cannot verify: the device has no IOMMU unit and no hw_info.", ev, "facts",
                      "Enable the IOMMU, bind the device to vfio-pci and gather the facts again.")
        tid = _TYPE_IDS.get(kind, 0)
        if kind == "amd" and not _get(ctx.kernel, "config", "CONFIG_AMD_IOMMU_IOMMUFD") == "y":
            tid = 0
        source, basis = view["source"], _derived_note(view) + "; type id inferred from the unit's vendor"
    if tid != 1:
        return _r(FAIL, "The host IOMMU is not Intel VT-d, so x-flts cannot nest on it: \"%s\"." % _qemu_err(
            addr, "Incompatible host platform IOMMU type %s" % tid), ev, source,
            "Use x-flts only on Intel VT-d hosts.", basis=basis)
    note = ""
    flags = _get(hw, "vendor", "flags") if _hw_ok(hw) else None
    if isinstance(flags, dict) and flags.get("errata_772415_spr17"):
        ev[_dev_path(addr, "hw_info", "vendor", "flags", "errata_772415_spr17")] = True
        note = (" The host reports ERRATA_772415_SPR17: QEMU maps no read-only guest memory in the nesting "
                "parent, and the guest must keep scalable mode on (\"intel_iommu=on,sm_off\" is unsupported).")
    return _r(PASS, "x-flts=on is accepted for %s: iommufd backend and Intel VT-d host (hw_info type 1).%s" % (
        addr, note), ev, source, basis=basis)


@_check("viommu.intel.nesting", "device", "Host VT-d can be a nesting parent (x-flts)",
        "params.x_flts; devices.<a>.hw_info.vendor.ecap.{nest,slts,smts} (else units.<u>.decoded.ecap), "
        "cmdline.effects.scalable_mode, kernel.config.CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON",
        "kernel drivers/iommu/intel/iommu.c: IOMMU_HWPT_ALLOC_NEST_PARENT needs nested_supported() = scalable "
        "mode && ECAP.NEST and ECAP.SLTS; QEMU does not check it (cca621c782) and fails in "
        "backends/iommufd.c:329 \"Failed to allocate hwpt\"", mdev=_MDEV_VIOMMU)
def _intel_nesting(ctx, addr, dev, params):
    ev = {"params.x_flts": params.get("x_flts")}
    if not params.get("x_flts"):
        return _r(NA, "x-flts is off: QEMU allocates no nesting parent.", ev, "preflight parameters")
    view, err = _intel_view(ctx, addr)
    if err:
        return err
    if view["kind"] != "intel_vtd":
        ev["iommu vendor"] = view["kind"]
        return _r(FAIL, "The host IOMMU is %s, not Intel VT-d (see viommu.intel.x_flts)." % view["kind"], ev,
                  view["source"], "Use x-flts only on Intel VT-d hosts.")
    bits = {}
    for name in ("nest", "slts", "smts"):
        bits[name], p = _vfield(view, "ecap", name)
        ev[p] = bits[name]
    sm, sm_ev = _intel_scalable_mode(ctx)
    ev.update(sm_ev)
    basis = _derived_note(view)
    qemu = "\"vfio %s: Failed to allocate hwpt: Operation not supported\"" % addr
    if any(v is None for v in bits.values()):
        return _r(FAIL, "Cannot verify: the unit's ECAP register is unknown.", ev, view["source"],
                  "Gather the facts again with iommu.host.iommu_facts.", basis=basis)
    missing = [n.upper() for n in ("smts", "nest", "slts") if not bits[n]]
    if missing:
        return _r(FAIL, "The host VT-d cannot be a nesting parent (ECAP lacks %s). QEMU does not check this "
                        "itself; the VM start fails with %s." % (", ".join(missing), qemu), ev, view["source"],
                  "Use a host whose VT-d has scalable mode and nested translation (ECAP.SMTS, ECAP.NEST), or "
                  "x-flts=off.", basis=basis)
    if sm is False:
        return _r(FAIL, "The kernel runs VT-d in legacy mode (scalable mode off), so it cannot allocate a nesting "
                        "parent; the VM start fails with %s." % qemu, ev, view["source"],
                  "Boot with intel_iommu=on,sm_on.", basis=basis)
    if sm is None:
        return _r(WARN, "The registers allow nesting (ECAP.SMTS, NEST, SLTS), but whether the kernel runs VT-d in "
                        "scalable mode is unknown.", ev, view["source"],
                  "Boot with intel_iommu=on,sm_on to be sure.", basis=basis)
    return _r(PASS, "The host VT-d can be a nesting parent: scalable mode on, ECAP.NEST and ECAP.SLTS set.", ev,
              view["source"], basis=basis)


@_check("viommu.intel.fs1gp", "device", "First-stage 1 GiB pages supported by the host (fs1gp)",
        "params.{x_flts,fs1gp}; devices.<a>.hw_info.vendor.cap.fl1gp_support (else units.<u>.decoded.cap)",
        "QEMU hw/i386/intel_iommu_accel.c vtd_check_hiod_accel(): host CAP bit 56 (VTD_CAP_FS1GP) -> \"First "
        "stage 1GB large page is unsupported by host IOMMU\" (master)", mdev=_MDEV_VIOMMU)
def _intel_fs1gp(ctx, addr, dev, params):
    ev = {"params.x_flts": params.get("x_flts"), "params.fs1gp": params.get("fs1gp")}
    if not params.get("x_flts"):
        return _r(NA, "x-flts is off: the guest uses no first-stage tables on the host.", ev, "preflight parameters")
    if not params.get("fs1gp"):
        return _r(NA, "fs1gp=off: the vIOMMU advertises no first-stage 1 GiB pages.", ev, "preflight parameters")
    view, err = _intel_view(ctx, addr)
    if err:
        return err
    if view["kind"] != "intel_vtd":
        ev["iommu vendor"] = view["kind"]
        return _r(NA, "The host IOMMU is %s, not Intel VT-d (see viommu.intel.x_flts)." % view["kind"], ev,
                  view["source"])
    value, p = _vfield(view, "cap", "fl1gp_support")
    ev[p] = value
    basis = _derived_note(view)
    if value is None:
        return _r(FAIL, "Cannot verify: the unit's CAP register is unknown.", ev, view["source"],
                  "Gather the facts again with iommu.host.iommu_facts.", basis=basis)
    if not value:
        return _r(FAIL, "The host VT-d has no first-stage 1 GiB pages (CAP.FS1GP, bit 56, clear); QEMU refuses the "
                        "device: \"%s\"." % _qemu_err(addr, "First stage 1GB large page is unsupported by host IOMMU"),
                  ev, view["source"], "Set fs1gp=off on intel-iommu.", basis=basis)
    return _r(PASS, "The host VT-d supports first-stage 1 GiB pages (CAP.FS1GP).", ev, view["source"], basis=basis)


@_check("viommu.intel.pasid", "device", "Host PASID support for x-pasid-mode",
        "params.{x_pasid_mode,x_scalable_mode}; devices.<a>.hw_info.vendor.ecap.{pasid,pss,smts} (else "
        "units.<u>.decoded.ecap), devices.<a>.hw_info.capabilities.max_pasid_log2, scalable mode",
        "QEMU hw/i386/intel_iommu.c vtd_decide_config() \"Need to set scalable mode for PASID\", emulated "
        "ECAP.PSS = 7 (8-bit PASIDs, v10.1.0+); QEMU compares no PASID capability with the host; kernel "
        "pasid_supported() = scalable mode && ECAP.PASID, width ECAP.PSS+1 (drivers/iommu/intel/dmar.c)",
        mdev=_MDEV_VIOMMU)
def _intel_pasid(ctx, addr, dev, params):
    ev = {"params.x_pasid_mode": params.get("x_pasid_mode"), "params.x_scalable_mode": params.get("x_scalable_mode")}
    if not params.get("x_pasid_mode"):
        return _r(NA, "x-pasid-mode is off: the vIOMMU offers no PASID.", ev, "preflight parameters")
    if not params.get("x_scalable_mode"):
        return _r(FAIL, "QEMU rejects x-pasid-mode without scalable mode: \"Need to set scalable mode for PASID\".",
                  ev, "preflight parameters", "Add x-scalable-mode=on to intel-iommu.")
    view, err = _intel_view(ctx, addr)
    if err:
        return err
    if view["kind"] != "intel_vtd":
        ev["iommu vendor"] = view["kind"]
        return _r(WARN, "The host IOMMU is %s, not Intel VT-d: host PASID support is not derived here; QEMU "
                        "compares nothing about PASID with the host." % view["kind"], ev, view["source"],
                  "See the pasid profile (device.pasid) for the device's PASID width.")
    bits = {}
    for name in ("smts", "pasid", "pss"):
        bits[name], p = _vfield(view, "ecap", name)
        ev[p] = bits[name]
    sm, sm_ev = _intel_scalable_mode(ctx)
    ev.update(sm_ev)
    basis = _derived_note(view)
    if any(v is None for v in bits.values()):
        return _r(FAIL, "Cannot verify: the unit's ECAP register is unknown.", ev, view["source"],
                  "Gather the facts again with iommu.host.iommu_facts.", basis=basis)
    if not (bits["smts"] and bits["pasid"]) or sm is False:
        return _r(FAIL, "The host VT-d gives devices no PASIDs (%s). QEMU does not compare this; guest PASID use "
                        "on the assigned device cannot be backed by the host." % (
                            "scalable mode off" if sm is False else "ECAP.SMTS/ECAP.PASID clear"), ev,
                  view["source"], "Use a host VT-d with PASID support in scalable mode (intel_iommu=sm_on), "
                                  "or x-pasid-mode=off.", basis=basis)
    width = bits["pss"] + 1
    hw = dev.get("hw_info")
    dev_log2 = _int(_get(hw, "capabilities", "max_pasid_log2")) if _hw_ok(hw) else None
    if _hw_ok(hw):
        ev[_dev_path(addr, "hw_info", "capabilities", "max_pasid_log2")] = dev_log2
    if width < 8:
        return _r(WARN, "The host VT-d has %d-bit PASIDs, fewer than the 8 bits QEMU's vIOMMU advertises (ECAP.PSS=7)."
                  % width, ev, view["source"], "Expect guest PASID allocation beyond %d bits to fail." % width,
                  basis=basis)
    if dev_log2 == 0:
        return _r(WARN, "The host VT-d supports %d-bit PASIDs, but the device reports none (max_pasid_log2 0: no "
                        "enabled PCI PASID capability)." % width, ev, view["source"],
                  "Only devices with a PASID capability can use PASIDs.", basis=basis)
    return _r(PASS, "The host VT-d supports %d-bit PASIDs in scalable mode%s." % (
        width, "" if dev_log2 is None else "; the device %d bits" % dev_log2), ev, view["source"], basis=basis)
