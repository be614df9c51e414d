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
from ansible_collections.iommu.host.plugins.module_utils.policy import releases
from ansible_collections.iommu.host.plugins.module_utils.policy.params import _version_text
from ansible_collections.iommu.host.plugins.module_utils.policy.registry import (
    FAIL, _MDEV_VIOMMU, NA, PASS, WARN, _check, _onoff, _qemu_err, _r)

__metaclass__ = type


_INTEL_PROPS = ("x_scalable_mode", "scalable_mode", "x_flts", "fsts", "x_pasid_mode", "svm")


def viommu_pasid_bits(ctx, params):
    """The PASID width the Intel vIOMMU advertises in this release: 11.1 pasid-bits, else x-pasid-mode
    (ECAP.PSS 7 = 8 bits since 10.1, PSS 0 = 1 bit in 10.0); 0 when it offers none."""
    if ctx.since(11, 1):
        return params.get("pasid_bits") or 0
    if not params.get("x_pasid_mode"):
        return 0
    return 8 if ctx.since(10, 1) else 1


@_check("viommu.intel.config", "vm", "intel-iommu properties valid for device assignment",
        "params.{aw_bits,scalable_mode|x_scalable_mode,fsts|x_flts,x_pasid_mode,pasid_bits,svm,device_iotlb,"
        "dma_translation,snoop_control,qemu_version}",
        "QEMU hw/i386/intel_iommu.c vtd_decide_config() and vtd_iommu_notify_flag_changed(); property names per "
        "release (11.1 renamed x-scalable-mode, x-flts, x-pasid-mode to scalable-mode, fsts, pasid-bits): "
        "\"Property 'intel-iommu.%s' not found\"", verified=((10, 0), (11, 1)))
def _intel_config(ctx, params):
    aw = params.get("aw_bits")
    flts, sm = params.get("fsts"), params.get("scalable_mode")
    given = params.get("_given") or []
    keys = ("aw_bits", "scalable_mode", "fsts", "x_pasid_mode", "pasid_bits", "svm", "snoop_control", "qemu_version")
    ev = dict(("params.%s" % k, params.get(k)) for k in keys)
    problems = []
    check_props = list(_INTEL_PROPS)
    if "pasid" not in (params.get("_profiles") or []):
        check_props.append("intel_pasid_bits")  # pasid_bits means intel-iommu's pasid-bits here
    for prop in check_props:
        name = "pasid_bits" if prop == "intel_pasid_bits" else prop
        if name in given and not releases.has_property(prop, ctx.qemu):
            problems.append("\"%s\" (QEMU %s)" % (releases.missing_property(prop, ctx.qemu), _version_text(ctx.qemu)))
    fl, fl_off = ctx.prop("fsts"), ctx.words("intel.sm_aw")
    if flts and not sm:
        problems.append("\"%s\"" % ctx.words("intel.flts_needs_sm"))
    if flts and sm:
        if aw != 48:
            problems.append("\"%s\"" % (ctx.words("intel.flts_aw") % 48))
    elif aw not in (39, 48):
        problems.append("\"%s\"" % ((fl_off % (39, 48)) if sm else "Legacy mode: supported values for aw-bits are: "
                                                                   "39, 48"))
    pasid = viommu_pasid_bits(ctx, params)
    if pasid and not sm:
        problems.append("\"Need to set scalable mode for PASID\"")
    if ctx.since(11, 1) and pasid > 20:
        problems.append("\"PASID width %d exceeds Max PASID Width 20 allowed in PCI spec\"" % pasid)
    if params.get("svm") and ctx.since(11, 0):
        if not params.get("device_iotlb"):
            problems.append("\"Need to set device IOTLB for svm\"")
        if not flts:
            problems.append("\"%s\"" % ctx.words("intel.svm_flts"))
        if not params.get("dma_translation", True):
            problems.append("\"Need to set dma-translation for svm\"")
        if not pasid:
            problems.append("\"Need to set PASID support for svm\"")
    snoop = ("QEMU starts the VM with snoop-control=on (oracle: QEMU 10.0, 11.1), but refuses the assigned devices' "
             "IOMMU notifiers once the guest enables DMA remapping for them: \"Snoop Control with vhost or VFIO is not "
             "supported\"" if params.get("snoop_control") else None)
    if problems and snoop:
        problems.append(snoop[:1].lower() + snoop[1:])
    if problems:
        return _r(FAIL, "QEMU %s rejects this intel-iommu configuration: %s." % (
            _version_text(ctx.qemu), "; ".join(problems)), ev, "preflight parameters",
            "Fix the intel-iommu properties for QEMU %s: property names of that release (%s, %s), aw-bits 39 or 48 "
            "(48 with %s), scalable mode for %s and PASID, snoop-control=off with VFIO." % (
                _version_text(ctx.qemu), ctx.prop("scalable_mode"), fl, fl, fl))
    if snoop:
        return _r(WARN, "%s (vtd_iommu_notify_flag_changed)." % snoop, ev, "preflight parameters",
                  "Set snoop-control=off on intel-iommu when devices are assigned.")
    return _r(PASS, "intel-iommu properties are valid for QEMU %s: aw-bits=%s, %s=%s, %s=%s, PASID %s." % (
        _version_text(ctx.qemu), aw, ctx.prop("scalable_mode"), _onoff(sm), fl, _onoff(flts),
        "%d bits" % pasid if pasid else "off"), ev, "preflight parameters")


@_check("viommu.intel.caching_mode", "vm", "intel-iommu caching-mode=on",
        "params.caching_mode, params.qemu_version",
        "QEMU hw/i386/intel_iommu.c: up to 10.1 a machine-init-done check for every vfio-pci device (mdevs "
        "included) that exits with \"We need to set caching-mode=on for intel-iommu to enable device assignment "
        "with IOMMU protection.\"; from 10.2 (3cda33e06e) vtd_dev_set_iommu_device() refuses each physical device "
        "(\"vfio %s: Failed to set vIOMMU: Device assignment is not allowed without enabling caching-mode=on for "
        "Intel IOMMU.\") and an mdev fails its MAP notifier (\"device %02x.%02x.%x requires caching mode\")",
        verified=((10, 0), (11, 1)))
def _intel_caching_mode(ctx, params):
    ev = {"params.caching_mode": params.get("caching_mode"), "params.qemu_version": params.get("qemu_version")}
    if params.get("caching_mode"):
        return _r(PASS, "caching-mode=on, as device assignment requires.", ev, "preflight parameters")
    words = ctx.words("intel.caching_mode")
    if not ctx.since(10, 2):
        qemu = [words]
    else:
        qemu = [_qemu_err(a, words) for a in ctx.pci]
        qemu += ["device BB.DD.F requires caching mode (mdev %s; BB.DD.F = its guest address)" % u for u in ctx.mdevs]
    return _r(FAIL, "caching-mode is off; QEMU %s refuses the assigned device%s: %s" % (
        _version_text(ctx.qemu), "s" if len(qemu) > 1 else "", "; ".join("\"%s\"" % q for q in qemu or [words])), ev,
        "preflight parameters", "Add caching-mode=on to -device intel-iommu (libvirt: <driver caching_mode='on'/> "
                                "in <iommu model='intel'>).")


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


@_check("viommu.intel.x_flts", "device", "fsts / x-flts (stage-1 nesting) accepted for the device",
        "params.{fsts|x_flts,iommufd,qemu_version}; devices.<a>.hw_info.type_id (else units.<u>.vendor)",
        "QEMU hw/i386/intel_iommu_accel.c vtd_check_hiod_accel() (11.0+, cca621c782): \"Need IOMMUFD backend when "
        "x-flts=on\" (11.1: fsts=on), \"Incompatible host platform IOMMU type %d\"; QEMU 10.0-10.2 vtd_check_hiod: "
        "\"host device is uncompatible with stage-1 translation\"", mdev=_MDEV_VIOMMU, verified=((10, 0), (11, 1)))
def _intel_x_flts(ctx, addr, dev, params):
    fl = ctx.prop("fsts")
    ev = {"params.fsts": params.get("fsts"), "params.iommufd": params.get("iommufd"),
          "params.qemu_version": params.get("qemu_version")}
    if not params.get("fsts"):
        return _r(NA, "%s is off: the vIOMMU uses emulated second-stage translation." % fl, ev, "preflight parameters")
    if not ctx.since(11, 0):
        return _r(FAIL, "QEMU %s refuses every assigned device with %s=on: \"%s\"." % (
            _version_text(ctx.qemu), fl, _qemu_err(addr, ctx.words("intel.flts_refused"))),
            ev, "preflight parameters", "Use QEMU 11.0 or later for %s with assigned devices, or %s=off." % (fl, fl))
    if not params.get("iommufd", True):
        return _r(FAIL, "%s needs the iommufd backend: \"%s\"." % (fl, _qemu_err(
            addr, ctx.words("intel.flts_iommufd"))), ev, "preflight parameters",
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
        return _r(FAIL, "The host IOMMU is not Intel VT-d, so %s cannot nest on it: \"%s\"." % (fl, _qemu_err(
            addr, "Incompatible host platform IOMMU type %s" % tid)), ev, source,
            "Use %s only on Intel VT-d hosts." % fl, basis=basis)
    note = ""
    flags = _get(hw, "vendor", "flags") if _hw_ok(hw) else None
    if isinstance(flags, dict) and flags.get("errata_772415_spr17"):
        ev[_dev_path(addr, "hw_info", "vendor", "flags", "errata_772415_spr17")] = True
        note = (" The host reports ERRATA_772415_SPR17: QEMU maps no read-only guest memory in the nesting "
                "parent, and the guest must keep scalable mode on (\"intel_iommu=on,sm_off\" is unsupported).")
    return _r(PASS, "%s=on is accepted for %s: iommufd backend and Intel VT-d host (hw_info type 1).%s" % (
        fl, addr, note), ev, source, basis=basis)


@_check("viommu.intel.nesting", "device", "Host VT-d can be a nesting parent (fsts / x-flts)",
        "params.fsts|x_flts; devices.<a>.hw_info.vendor.ecap.{nest,slts,smts} (else units.<u>.decoded.ecap), "
        "cmdline.effects.scalable_mode, kernel.config.CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON",
        "kernel drivers/iommu/intel/iommu.c: IOMMU_HWPT_ALLOC_NEST_PARENT needs nested_supported() = scalable "
        "mode && ECAP.NEST and ECAP.SLTS; QEMU does not check it (cca621c782) and fails in "
        "backends/iommufd.c:329 \"Failed to allocate hwpt\"", mdev=_MDEV_VIOMMU, verified=((11, 1),))
def _intel_nesting(ctx, addr, dev, params):
    fl = ctx.prop("fsts")
    ev = {"params.fsts": params.get("fsts")}
    if not params.get("fsts"):
        return _r(NA, "%s is off: QEMU allocates no nesting parent." % fl, ev, "preflight parameters")
    if not ctx.since(11, 0):
        return _r(NA, "QEMU %s refuses %s=on with assigned devices before any nesting parent is allocated (see "
                      "viommu.intel.x_flts)." % (_version_text(ctx.qemu), fl), ev, "preflight parameters")
    view, err = _intel_view(ctx, addr)
    if err:
        return err
    if view["kind"] != "intel_vtd":
        ev["iommu vendor"] = view["kind"]
        return _r(FAIL, "The host IOMMU is %s, not Intel VT-d (see viommu.intel.x_flts)." % view["kind"], ev,
                  view["source"], "Use %s only on Intel VT-d hosts." % fl)
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
                  "%s=off." % fl, basis=basis)
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
        "params.{fsts|x_flts,fs1gp}; devices.<a>.hw_info.vendor.cap.fl1gp_support (else units.<u>.decoded.cap)",
        "QEMU hw/i386/intel_iommu_accel.c vtd_check_hiod_accel(): host CAP bit 56 (VTD_CAP_FS1GP) -> \"First "
        "stage 1GB large page is unsupported by host IOMMU\" (master)", mdev=_MDEV_VIOMMU)
def _intel_fs1gp(ctx, addr, dev, params):
    fl = ctx.prop("fsts")
    ev = {"params.fsts": params.get("fsts"), "params.fs1gp": params.get("fs1gp")}
    if not params.get("fsts"):
        return _r(NA, "%s is off: the guest uses no first-stage tables on the host." % fl, ev, "preflight parameters")
    if not ctx.since(11, 0):
        return _r(NA, "QEMU %s refuses %s=on with assigned devices before comparing fs1gp (see "
                      "viommu.intel.x_flts)." % (_version_text(ctx.qemu), fl), ev, "preflight parameters")
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


@_check("viommu.intel.pasid", "device", "Host PASID support for the vIOMMU's PASIDs",
        "params.{pasid_bits (11.1+),x_pasid_mode (10.x-11.0),scalable_mode}; devices.<a>.hw_info.vendor.ecap."
        "{pasid,pss,smts} (else units.<u>.decoded.ecap), devices.<a>.hw_info.capabilities.max_pasid_log2",
        "QEMU hw/i386/intel_iommu.c: x-pasid-mode sets ECAP.PSS 0 (10.0) / 7 (10.1+, 8-bit PASIDs) and is not "
        "compared with the host; 11.1 pasid-bits is, with fsts=on (vtd_check_hiod_accel): \"PASID bits size %d > "
        "host IOMMU PASID bits size %d\" (host = the device's IOMMU_GET_HW_INFO out_max_pasid_log2); kernel pasid_supported() = scalable mode "
        "&& ECAP.PASID, width ECAP.PSS+1", mdev=_MDEV_VIOMMU, verified=((10, 0), (11, 1)))
def _intel_pasid(ctx, addr, dev, params):
    want = viommu_pasid_bits(ctx, params)
    name = "pasid-bits=%s" % want if ctx.since(11, 1) else "x-pasid-mode=on"
    ev = {"params.x_pasid_mode": params.get("x_pasid_mode"), "params.pasid_bits": params.get("pasid_bits"),
          "params.scalable_mode": params.get("scalable_mode")}
    if not want:
        return _r(NA, "The vIOMMU offers no PASID (%s)." % ("pasid-bits=0" if ctx.since(11, 1) else
                                                            "x-pasid-mode=off"), ev, "preflight parameters")
    if not params.get("scalable_mode"):
        return _r(FAIL, "QEMU rejects %s without scalable mode: \"Need to set scalable mode for PASID\"." % name,
                  ev, "preflight parameters", "Add %s=on to intel-iommu." % ctx.prop("scalable_mode"))
    hw = dev.get("hw_info")
    if ctx.since(11, 1):
        host = _int(_get(hw, "capabilities", "max_pasid_log2")) if _hw_ok(hw) else None
        ev[_dev_path(addr, "hw_info", "capabilities", "max_pasid_log2")] = host
        if host is None:
            return _r(WARN, "Unknown whether the host gives %s %d-bit PASIDs: QEMU 11.1 compares pasid-bits with the "
                            "device's IOMMU_GET_HW_INFO max_pasid_log2, which the facts lack." % (addr, want), ev,
                      "facts", "Gather the facts without sysfs_only so the device's hw_info is read.")
        if want > host and not params.get("fsts"):
            # QEMU 11.1 makes this comparison in vtd_check_hiod_accel(), with its other fsts=on checks (the
            # strings of the 11.1.3 binary sit together there): with fsts=off the device is not compared
            ev["params.fsts"] = False
            return _r(WARN, "pasid-bits=%d exceeds the host's PASID width for %s (%d bits). With fsts=off QEMU 11.1 "
                            "does not compare them and starts the VM, but the guest's PASIDs on %s are not backed by "
                            "the host; with fsts=on it refuses the device (\"PASID bits size %d > host IOMMU PASID "
                            "bits size %d\")." % (want, addr, host, addr, want, host),
                      ev, "iommufd: IOMMU_GET_HW_INFO of %s" % addr,
                      "Set pasid-bits=%d or lower, or assign a device with an enabled PASID capability on a host "
                      "IOMMU with PASID support." % host)
        if want > host:
            return _r(FAIL, "pasid-bits=%d exceeds the host's PASID width for %s (%d bits); QEMU refuses the device: "
                            "\"%s\"." % (want, addr, host, _qemu_err(
                                addr, "PASID bits size %d > host IOMMU PASID bits size %d" % (want, host))),
                      ev, "iommufd: IOMMU_GET_HW_INFO of %s" % addr,
                      "Set pasid-bits=%d or lower, or assign a device with an enabled PASID capability on a host "
                      "IOMMU with PASID support." % host)
        return _r(PASS, "The host gives %s %d-bit PASIDs, enough for pasid-bits=%d." % (addr, host, want), ev,
                  "iommufd: IOMMU_GET_HW_INFO of %s" % addr)
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
        return _r(WARN, "The host VT-d gives devices no PASIDs (%s). QEMU does not compare this; guest PASID use "
                        "on the assigned device cannot be backed by the host." % (
                            "scalable mode off" if sm is False else "ECAP.SMTS/ECAP.PASID clear"), ev,
                  view["source"], "Use a host VT-d with PASID support in scalable mode (intel_iommu=sm_on), "
                                  "or x-pasid-mode=off.", basis=basis)
    width = bits["pss"] + 1
    hw = dev.get("hw_info")
    dev_log2 = _int(_get(hw, "capabilities", "max_pasid_log2")) if _hw_ok(hw) else None
    if _hw_ok(hw):
        ev[_dev_path(addr, "hw_info", "capabilities", "max_pasid_log2")] = dev_log2
    if width < want:
        return _r(WARN, "The host VT-d has %d-bit PASIDs, fewer than the %d bits QEMU's vIOMMU advertises."
                  % (width, want), ev, view["source"], "Expect guest PASID allocation beyond %d bits to fail." % width,
                  basis=basis)
    if dev_log2 == 0:
        return _r(WARN, "The host VT-d supports %d-bit PASIDs, but the device reports none (max_pasid_log2 0: no "
                        "enabled PCI PASID capability)." % width, ev, view["source"],
                  "Only devices with a PASID capability can use PASIDs.", basis=basis)
    return _r(PASS, "The host VT-d supports %d-bit PASIDs in scalable mode%s." % (
        width, "" if dev_log2 is None else "; the device %d bits" % dev_log2), ev, view["source"], basis=basis)
