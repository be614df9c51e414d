# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ARM SMMUv3 checks (profile smmuv3_accel): QEMU arm-smmuv3,accel=on with assigned devices.

viommu.smmuv3.config and viommu.smmuv3.kvm (scope vm), then per device: hw_info_type, the ten host
IDR comparisons of smmuv3_accel_check_hw_compatible() (stlevel, ttendian, ttf, sidsize, ssidsize, ril,
oas, gran4k/16k/64k, registered in a loop), nesting and ats. Rules mirror QEMU hw/arm/smmuv3-accel.c,
hw/arm/smmuv3.c and hw/arm/virt.c; kernel drivers/iommu/arm/arm-smmu-v3/. With accel off (QEMU's
emulated SMMUv3) QEMU reads nothing of the host SMMU: config predicts its refusal of VFIO devices and
the per-device checks do not apply. The test bed's arm64 guest compares config and kvm with a running
qemu-system-aarch64 11.1 (tests/integration/test_arm64_testbed.py).
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.policy.facts import (
    _TYPE_IDS, _derived_note, _dev_path, _flag, _get, _hw_ok, _hw_type_id, vendor_view)
from ansible_collections.iommu.host.plugins.module_utils.policy import releases
from ansible_collections.iommu.host.plugins.module_utils.policy.params import _version_text
from ansible_collections.iommu.host.plugins.module_utils.policy.registry import (
    FAIL, _MDEV_VIOMMU, NA, PASS, WARN, _check, _onoff, _qemu_err, _r)

__metaclass__ = type


_OAS_BITS = {0: 32, 1: 36, 2: 40, 3: 42, 4: 44, 5: 48, 6: 52, 7: 56}


def _onoffauto(value):
    return "auto" if value == "auto" else _onoff(value)


def _smmu_props(ctx, params):
    """ril/ats/oas/ssidsize as the asked release takes them: the given values, else its defaults (QEMU 11.1:
    auto, `-device arm-smmuv3,help` of 11.1.3; 11.0: ril on, ats off, oas 44, ssidsize 0)."""
    return dict((name, releases.smmuv3_value(name, params.get(name), ctx.qemu))
                for name in ("ril", "ats", "oas", "ssidsize"))


# QEMU 11.1.3 smmuv3_accel_auto_finalise() (hw/arm/smmuv3-accel.c, inlined before line 90 in the binary):
# for each property left at auto, the vSMMU's ID register field is set to the host's, once, from the first
# VFIO device QEMU sets up (auto_finalised); every later device is compared with those values.
_AUTO_FIELDS = {"ats": ("idr0", "ats"), "ril": ("idr3", "ril"), "ssidsize": ("idr1", "ssidsize"),
                "oas": ("idr5", "oas")}


def _auto_source(ctx):
    """(address, decoded SMMUv3 hw_info) of the device whose host SMMUv3 resolves auto: the first cold-plugged
    VFIO device (the gate's device order is the VM's); (None, None) when it has no SMMUv3 hw_info."""
    for addr in ctx.pci:
        return addr, _smmu_hw(ctx, addr)
    return None, None


def _qemu_field(ctx, params, prop, explicit):
    """(QEMU's value of the vSMMU field behind ``prop``, note) for the IDR comparison: ``explicit(value)`` for a
    given value, the first device's host field under auto (None when unknown)."""
    value = _smmu_props(ctx, params)[prop]
    if value != "auto":
        return explicit(value), ""
    first, vendor = _auto_source(ctx)
    reg, field = _AUTO_FIELDS[prop]
    host = _get(vendor, reg, field) if vendor else None
    host = int(host) if isinstance(host, (bool, int)) else None
    return host, " (%s=auto: the host value of %s, the first VFIO device)" % (prop, first)


def _accel_off_refusal(ctx, params):
    """smmu_validate_property()'s first refusal of an accel-only property with accel off (QEMU 11.1.3
    hw/arm/smmuv3.c:2001-2013, in this order; 11.0: master ece408818d smmuv3.c:1937), or None."""
    if not ctx.since(11, 0):
        return None
    props = _smmu_props(ctx, params)
    ssid = props["ssidsize"]
    if props["ril"] is False:
        return ctx.words("smmuv3.ril_accel_off")
    if props["ats"] is True:
        return ctx.words("smmuv3.ats_accel_off")
    if props["oas"] not in (44, "auto"):
        return ctx.words("smmuv3.oas_accel_off")
    if isinstance(ssid, int) and not isinstance(ssid, bool) and ssid > 0:
        return ctx.words("smmuv3.ssidsize_accel_off")
    return None


def _map_notifier_refusal(ctx, addr, iommufd):
    """QEMU's refusal of a VFIO device behind the emulated SMMUv3 (accel off), as the release and backend print it:
    the guest's devfn, bus and address of the device are placeholders (DEVFN-BUS, BB.DD.F)."""
    text = (ctx.words("smmuv3.listener_failed")
            + ctx.words("smmuv3.listener_region") % "smmuv3-iommu-memory-region-DEVFN-BUS"
            + ctx.words("smmuv3.map_notifier").replace("%02x.%02x.%x", "BB.DD.F"))
    if not iommufd:
        group = ctx.dev(addr).get("iommu_group")
        text = ctx.words("smmuv3.container_failed").replace("%d", "%s" % (group if group not in (None, "") else "G")) \
            + text
    return "vfio %s: %s" % (addr, text)


def _accel_off(params):
    return not params.get("accel", True)


@_check("viommu.smmuv3.config", "vm", "arm-smmuv3 accel=on properties valid",
        "params.{accel,stage,oas,ssidsize,iommufd,qemu_version}; devices.<a>.iommu_group (legacy backend)",
        "QEMU hw/arm/smmuv3.c smmu_validate_property() (line 1937), smmuv3_notify_flag_changed() (accel off) and "
        "hw/arm/smmuv3-accel.c smmuv3_accel_supports_as() (line 593); accel=on is post-v10.2.0 (79fcbec80a)",
        verified=((11, 1),))
def _smmu_config(ctx, params):
    ev = dict(("params.%s" % k, params.get(k)) for k in ("stage", "oas", "ssidsize", "iommufd", "qemu_version"))
    problems = []
    ev["params.accel"] = params.get("accel")
    if _accel_off(params):
        refused = _accel_off_refusal(ctx, params)
        if refused:
            return _r(FAIL, "QEMU refuses the arm-smmuv3 device itself (smmu_validate_property, before any VFIO "
                            "device): \"%s\"." % refused, ev, "preflight parameters",
                      "Use accel=on, or leave ril, ats, oas and ssidsize at their defaults.")
        addr = ctx.first_device()
        iommufd = params.get("iommufd", True)
        if not iommufd:
            ev[_dev_path(addr, "iommu_group")] = ctx.dev(addr).get("iommu_group")
        return _r(FAIL, "arm-smmuv3 without accel=on emulates the SMMU and cannot translate VFIO devices (nor can "
                        "-machine virt,iommu=smmuv3): QEMU refuses them when VFIO registers its IOMMU notifier: "
                        "\"%s\" (DEVFN-BUS and BB.DD.F: the device's devfn, bus and address in the guest)."
                  % _map_notifier_refusal(ctx, addr, iommufd), ev,
                  "preflight parameters", "Use arm-smmuv3,accel=on (QEMU 11.0+, iommufd backend, KVM) for assigned "
                                          "devices, or no vSMMU.")
    if not ctx.since(11, 0):
        problems.append("arm-smmuv3 accel=on does not exist in QEMU %s (added after 10.2, 79fcbec80a): \"Property "
                        "'arm-smmuv3.accel' not found\"" % _version_text(ctx.qemu))
    if str(params.get("stage")) != "1":
        problems.append("\"Only stage1 is supported for SMMUv3 with accel=on\"")
    props = _smmu_props(ctx, params)
    auto = releases.smmuv3_auto(ctx.qemu)
    for name in ("ril", "ats", "oas", "ssidsize"):
        if props[name] == "auto" and not auto:
            problems.append("%s=auto does not exist in QEMU %s (arm-smmuv3 %s is %s there; auto came with 11.1's "
                            "OnOffAuto/OasMode/SsidSizeMode properties)" % (
                                name, _version_text(ctx.qemu), name, "a bool" if name in ("ril", "ats") else
                                "an integer"))
    oas, ssid = props["oas"], props["ssidsize"]
    if oas != "auto" and oas not in (44, 48):
        if auto and oas in _OAS_BITS.values():
            # an OasMode value (32..56) that smmu_validate_property refuses (11.1.3 hw/arm/smmuv3.c:1993)
            problems.append("\"%s\"" % ctx.words("smmuv3.oas_values"))
        elif auto:
            problems.append("oas=%s is not an OasMode value of QEMU %s (44, 48 or auto)" % (oas, _version_text(
                ctx.qemu)))
        else:
            problems.append("\"%s\"" % ctx.words("smmuv3.oas_values"))
    if ssid != "auto" and (not isinstance(ssid, int) or not 0 <= ssid <= 20):
        if auto:
            problems.append("ssidsize=%s is not a SsidSizeMode value of QEMU %s (0..20 or auto)" % (
                ssid, _version_text(ctx.qemu)))
        else:
            problems.append("\"%s\"" % ctx.words("smmuv3.ssidsize_values"))
    if not params.get("iommufd", True):
        problems.append("\"vfio-pci endpoint devices without an iommufd backend not allowed when using "
                        "arm-smmuv3,accel=on\"")
    if problems:
        return _r(FAIL, "QEMU rejects this arm-smmuv3,accel=on configuration: %s." % "; ".join(problems), ev,
                  "preflight parameters", "Use QEMU 11.0 or later, stage=1, oas=44 or 48, ssidsize 0..20, and "
                                          "vfio-pci with iommufd=.")
    note = (" (auto: QEMU takes each value from the host SMMUv3 of the first cold-plugged VFIO device, "
            "smmuv3_accel_auto_finalise(); without one it exits: \"%s\")" % ctx.words("smmuv3.auto_cold_plug")
            if "auto" in (props["ril"], props["ats"], props["oas"], props["ssidsize"]) else "")
    return _r(PASS, "arm-smmuv3,accel=on properties are valid: stage=1, oas=%s, ssidsize=%s, ril=%s, ats=%s%s." % (
        oas, ssid, _onoff(props["ril"]), _onoff(props["ats"]), note), ev, "preflight parameters")


@_check("viommu.smmuv3.kvm", "vm", "KVM for arm-smmuv3 accel=on",
        "params.{accel,qemu_version}; kernel.kvm.available",
        "QEMU hw/arm/virt.c virt_machine_device_pre_plug_cb(): \"SMMUv3 accel=on requires KVM with kernel-irqchip=on "
        "support\" (5ec2700dcb, post-v10.2); a pre-plug check, so it comes before the device's realize and every "
        "host IDR comparison (QEMU 11.1.3 under TCG says nothing else, with or without firmware/ACPI)",
        verified=((11, 1),))
def _smmu_kvm(ctx, params):
    kvm = _get(ctx.kernel, "kvm", "available")
    source = _get(ctx.kernel, "kvm", "source") or "/dev/kvm"
    ev = {"params.accel": params.get("accel", True), "kernel.kvm.available": kvm}
    if _accel_off(params):
        return _r(NA, "accel=off: the emulated vSMMU does not need KVM.", ev, "preflight parameters")
    if not ctx.since(11, 0):
        return _r(NA, "arm-smmuv3 accel=on does not exist in QEMU %s (see viommu.smmuv3.config)."
                  % _version_text(ctx.qemu), ev, "preflight parameters")
    words = ctx.words("smmuv3.accel_kvm")
    if kvm is True:
        return _r(PASS, "%s exists: the VM can run under KVM, which arm-smmuv3,accel=on requires (-accel kvm with "
                        "the in-kernel GIC, kernel-irqchip=on, the virt machine's default under KVM)." % source,
                  ev, source)
    if kvm is False:
        return _r(FAIL, "QEMU refuses arm-smmuv3,accel=on without KVM: \"%s\" (%s does not exist on this host; QEMU "
                        "checks this before it reads the host SMMUv3's ID registers)." % (words, source), ev, source,
                  "Run the VM under KVM (-accel kvm, kernel-irqchip=on) on a host with %s (kvm loaded, the CPU's "
                  "virtualization extensions available to the kernel), or use no vSMMU." % source)
    return _r(WARN, "Cannot verify that KVM is available (the facts have no kernel.kvm: gathered by an older "
                    "iommu.host); QEMU refuses arm-smmuv3,accel=on without it: \"%s\"." % words, ev, "facts",
              "Gather the facts again with iommu.host.iommu_facts.")


_NA_ACCEL_OFF = "accel=off: QEMU's emulated SMMUv3 reads nothing of the host SMMUv3 (see viommu.smmuv3.config)."


def _smmu_hw(ctx, addr):
    """The device's SMMUv3 hw_info vendor struct (decoded) or None."""
    hw = ctx.dev(addr).get("hw_info")
    if _hw_ok(hw) and _hw_type_id(hw) == 2 and isinstance(hw.get("vendor"), dict):
        return hw["vendor"]
    return None


@_check("viommu.smmuv3.hw_info_type", "device", "Host IOMMU is an SMMUv3 (hw_info type 2)",
        "devices.<a>.hw_info.type_id (else units.<u>.vendor)",
        "QEMU hw/arm/smmuv3-accel.c smmuv3_accel_hw_compatible() (line 126): \"Wrong data type (%d) for Host "
        "SMMUv3 device info\" (master)", mdev=_MDEV_VIOMMU)
def _smmu_type(ctx, addr, dev, params):
    if _accel_off(params):
        return _r(NA, _NA_ACCEL_OFF, {"params.accel": params.get("accel")}, "preflight parameters")
    hw = dev.get("hw_info")
    if _hw_ok(hw):
        tid = _hw_type_id(hw)
        ev = {_dev_path(addr, "hw_info", "type_id"): tid}
        source = "iommufd: IOMMU_GET_HW_INFO of %s" % addr
        if tid == 2:
            return _r(PASS, "hw_info type 2 (ARM SMMUv3): QEMU can read the host IDRs.", ev, source)
        return _r(FAIL, "The host IOMMU is not an SMMUv3: \"%s\"." % _qemu_err(
            addr, "Wrong data type (%s) for Host SMMUv3 device info" % tid), ev, source,
            "arm-smmuv3,accel=on needs an Arm SMMUv3 host.")
    view = vendor_view(ctx, addr)
    kind = view["kind"] if view else None
    ev = {_dev_path(addr, "iommu_vendor"): kind, _dev_path(addr, "hw_info", "source"): _get(hw, "source")}
    if kind == "arm_smmuv3":
        return _r(FAIL, "Not verified: the SMMUv3 ID registers can only be read through IOMMU_GET_HW_INFO (there is "
                        "no sysfs equivalent), and the facts hold no hw_info for %s." % addr, ev, view["source"],
                  "Bind the device to vfio-pci and gather facts without sysfs_only while it is idle.")
    if kind:
        tid = _TYPE_IDS.get(kind, 0)
        return _r(FAIL, "The host IOMMU is %s, not an SMMUv3 (derived from sysfs): \"%s\"." % (
            kind, _qemu_err(addr, "Wrong data type (%s) for Host SMMUv3 device info" % tid)), ev, view["source"],
            "arm-smmuv3,accel=on needs an Arm SMMUv3 host.", basis=_derived_note(view))
    return _r(FAIL, "Cannot verify: the device has no IOMMU unit and no hw_info.", ev, "facts",
              "Enable the IOMMU, bind the device to vfio-pci and gather the facts again.")


def _smmu_idr_check(check_id, reg, field, title, rule_row, compare):
    """Register one of the ten IDR comparisons of smmuv3_accel_check_hw_compatible."""

    @_check(check_id, "device", title,
            "devices.<a>.hw_info.vendor.%s.%s; params" % (reg, field),
            "QEMU hw/arm/smmuv3-accel.c smmuv3_accel_check_hw_compatible() (lines 39-123), row %s (master, "
            "ad32238ad2); QEMU 11.1.3: lines 90-168 (error_setg's __LINE__ in Debian's binary), after "
            "smmuv3_accel_auto_finalise() set the auto properties (ril, ats, oas, ssidsize) to the host's "
            "values" % rule_row, mdev=_MDEV_VIOMMU)
    def run(ctx, addr, dev, params):
        if _accel_off(params):
            return _r(NA, _NA_ACCEL_OFF, {"params.accel": params.get("accel")}, "preflight parameters")
        vendor = _smmu_hw(ctx, addr)
        if vendor is None:
            return _r(NA, "Not evaluated: no host SMMUv3 ID registers for %s (see viommu.smmuv3.hw_info_type)."
                      % addr, {_dev_path(addr, "hw_info", "type_id"): _get(dev.get("hw_info"), "type_id")}, "facts")
        p = _dev_path(addr, "hw_info", "vendor", reg, field)
        host = _get(vendor, reg, field)
        host = int(host) if isinstance(host, (bool, int)) else None
        if host is None:
            return _r(FAIL, "Cannot verify: %s.%s is missing from the decoded hw_info." % (reg.upper(), field.upper()),
                      {p: _get(vendor, reg, field)}, "iommufd: IOMMU_GET_HW_INFO",
                      "Gather the facts again with iommu.host.iommu_facts.")
        ok, qemu_value, message, remedy = compare(host, params, ctx)
        ev = {p: host, "QEMU value": qemu_value}
        source = "iommufd: IOMMU_GET_HW_INFO of %s" % addr
        if ok is None:
            return _r(FAIL, "Cannot verify: QEMU takes %s from the host SMMUv3 of %s (auto), whose ID registers "
                            "are not in the facts." % (field.upper(), ctx.pci[0] if ctx.pci else "the first device"),
                      ev, source, "Gather the facts of every assigned device with iommu.host.iommu_facts.")
        if ok:
            return _r(PASS, "Host %s.%s=%s is compatible (QEMU %s)." % (reg.upper(), field.upper(), host, qemu_value),
                      ev, source)
        return _r(FAIL, "QEMU refuses the device: \"%s\"." % _qemu_err(addr, message), ev, source, remedy)
    return run


def _cmp_stlevel(host, params, ctx):
    return (host == 1, 1, "Host SMMUv3 Stream Table format mismatch (host STLEVEL=%u, QEMU STLEVEL=%u)" % (host, 1),
            "The host SMMUv3 must have a 2-level stream table (IDR0.ST_LEVEL=1); accel=on cannot be used here.")


def _cmp_ttendian(host, params, ctx):
    return (host <= 2, 2, "Host SMMUv3 doesn't support Little-endian translation table",
            "accel=on needs a host SMMUv3 that walks little-endian tables (IDR0.TTENDIAN 0 or 2).")


def _cmp_ttf(host, params, ctx):
    return (host >= 2, 2, "Host SMMUv3 doesn't support AArch64 translation table format",
            "accel=on needs AArch64 table format on the host SMMUv3 (IDR0.TTF 2 or 3).")


def _cmp_sidsize(host, params, ctx):
    return (host >= 16, 16, "Host SMMUv3 SIDSIZE not compatible (host=%u, QEMU=%u)" % (host, 16),
            "accel=on needs a host SMMUv3 with 16-bit stream IDs (IDR1.SIDSIZE >= 16).")


def _compare_auto(host, want, note):
    """None (unknown) when auto could not be resolved, else host >= want."""
    return None if want is None else host >= want


def _cmp_ssidsize(host, params, ctx):
    want, note = _qemu_field(ctx, params, "ssidsize", lambda v: v if isinstance(v, int) else 0)
    return (_compare_auto(host, want, note), "%s%s" % (want, note),
            "Host SMMUv3 SSIDSIZE not compatible (host=%u, QEMU=%u)" % (host, want or 0),
            "Set ssidsize=%d or lower on arm-smmuv3%s." % (host, ", or leave it auto (QEMU 11.1+)"
                                                           if releases.smmuv3_auto(ctx.qemu) else ""))


def _cmp_ril(host, params, ctx):
    want, note = _qemu_field(ctx, params, "ril", lambda v: 1 if v else 0)
    return (_compare_auto(host, want, note), "%s%s" % (want, note), "Host SMMUv3 doesn't support Range Invalidation",
            "Set ril=off%s on arm-smmuv3." % (" (or auto, QEMU 11.1+)" if releases.smmuv3_auto(ctx.qemu) else ""))


def _cmp_oas(host, params, ctx):
    want, note = _qemu_field(ctx, params, "oas", lambda v: 5 if v == 48 else 4)
    return (_compare_auto(host, want, note), "%s%s" % (want, note),
            "Host SMMUv3 supports only %d-bit IPA, but the vSMMU OAS implies %d-bit IPA" % (
                _OAS_BITS.get(host, 0), _OAS_BITS.get(want, 0)),
            "Set oas=44 on arm-smmuv3%s%s." % (
                " (or auto, QEMU 11.1+)" if releases.smmuv3_auto(ctx.qemu) else "",
                " (the host's OAS is below 44 bits: accel=on with oas=44 cannot be used)" if host < 4 else ""))


def _cmp_ats(host, params, ctx):
    want, note = _qemu_field(ctx, params, "ats", lambda v: 1 if v is True else 0)
    return (_compare_auto(host, want, note), "%s%s" % (want, note),
            "Host SMMUv3 doesn't support Address Translation Services",
            "Set ats=off (or auto) on arm-smmuv3.")


def _cmp_gran(size):
    def cmp(host, params, ctx):
        return (host == 1, 1, "Host SMMUv3 doesn't support %s translation granule" % size,
                "accel=on needs a host SMMUv3 with 4K, 16K and 64K granules; this host lacks %s." % size)
    return cmp


for _args in (("viommu.smmuv3.stlevel", "idr0", "st_lvl", "Host SMMUv3 2-level stream table (STLEVEL)", 1, _cmp_stlevel),
              ("viommu.smmuv3.ttendian", "idr0", "ttendian", "Host SMMUv3 little-endian tables (TTENDIAN)", 2,
               _cmp_ttendian),
              ("viommu.smmuv3.ttf", "idr0", "ttf", "Host SMMUv3 AArch64 table format (TTF)", 3, _cmp_ttf),
              ("viommu.smmuv3.sidsize", "idr1", "sidsize", "Host SMMUv3 stream ID size (SIDSIZE)", 4, _cmp_sidsize),
              ("viommu.smmuv3.ssidsize", "idr1", "ssidsize", "Host SMMUv3 substream ID size (SSIDSIZE) >= ssidsize",
               5, _cmp_ssidsize),
              ("viommu.smmuv3.ril", "idr3", "ril", "Host SMMUv3 range invalidation (RIL) when ril=on", 6, _cmp_ril),
              ("viommu.smmuv3.oas", "idr5", "oas", "Host SMMUv3 output address size (OAS) >= oas", 7, _cmp_oas),
              ("viommu.smmuv3.gran4k", "idr5", "gran4k", "Host SMMUv3 4K granule", 8, _cmp_gran("4K")),
              ("viommu.smmuv3.gran16k", "idr5", "gran16k", "Host SMMUv3 16K granule", 9, _cmp_gran("16K")),
              ("viommu.smmuv3.gran64k", "idr5", "gran64k", "Host SMMUv3 64K granule", 10, _cmp_gran("64K"))):
    _smmu_idr_check(*_args)
del _args


@_check("viommu.smmuv3.nesting", "device", "Host SMMUv3 can nest (stage 1 + stage 2) and hold a vSMMU",
        "devices.<a>.hw_info.vendor.idr0.{s1p,s2p}, devices.<a>.hw_info.vendor.idr3.fwb, "
        "devices.<a>.hw_info.vendor.derived.nesting, firmware.acpi.iort.present",
        "kernel drivers/iommu/arm/arm-smmu-v3: ARM_SMMU_FEAT_NESTING = S1P && S2P (arm-smmu-v3.c:5255-5257, minus "
        "errata); a vSMMU (IOMMU_VIOMMU_ALLOC) also needs S2FWB or a CANWBS root complex in the IORT "
        "(arm_smmu_get_viommu_size, arm-smmu-v3-iommufd.c:533-567); QEMU does not check it: "
        "smmuv3_accel_get_viommu_flags() comment \"the nesting parent allocation will fail anyway in VFIO core\"",
        mdev=_MDEV_VIOMMU)
def _smmu_nesting(ctx, addr, dev, params):
    if _accel_off(params):
        return _r(NA, _NA_ACCEL_OFF, {"params.accel": params.get("accel")}, "preflight parameters")
    vendor = _smmu_hw(ctx, addr)
    if vendor is None:
        return _r(NA, "Not evaluated: no host SMMUv3 ID registers for %s (see viommu.smmuv3.hw_info_type)." % addr,
                  {_dev_path(addr, "hw_info", "type_id"): _get(dev.get("hw_info"), "type_id")}, "facts")
    s1p, s2p = _get(vendor, "idr0", "s1p"), _get(vendor, "idr0", "s2p")
    nesting = _get(vendor, "derived", "nesting")
    ev = {_dev_path(addr, "hw_info", "vendor", "idr0", "s1p"): s1p,
          _dev_path(addr, "hw_info", "vendor", "idr0", "s2p"): s2p,
          _dev_path(addr, "hw_info", "vendor", "derived", "nesting", "supported"): _get(nesting, "supported")}
    source = "iommufd: IOMMU_GET_HW_INFO of %s" % addr
    qemu = "\"vfio %s: Failed to allocate hwpt: Operation not supported\"" % addr
    if _flag(s1p) is None or _flag(s2p) is None:
        return _r(FAIL, "Cannot verify: IDR0.S1P/S2P are missing from the decoded hw_info.", ev, source,
                  "Gather the facts again with iommu.host.iommu_facts.")
    if not (s1p and s2p):
        return _r(FAIL, "The host SMMUv3 cannot nest (IDR0 %s clear): QEMU does not check this itself, and the "
                        "nesting-parent allocation fails: %s." % (
                            " and ".join(n for n, v in (("S1P", s1p), ("S2P", s2p)) if not v), qemu), ev, source,
                  "arm-smmuv3,accel=on needs a host SMMUv3 with both translation stages.")
    if _get(nesting, "supported") is False:
        return _r(FAIL, "The host SMMUv3 has S1P and S2P, but the kernel disables nesting on it (%s); the "
                        "nesting-parent allocation fails: %s." % (_get(nesting, "basis"), qemu), ev, source,
                  "Use an SMMUv3 without the nesting errata.")
    fwb = _get(vendor, "idr3", "fwb")
    iort = _get(ctx.firmware, "acpi", "iort", "present")
    ev[_dev_path(addr, "hw_info", "vendor", "idr3", "fwb")] = fwb
    ev["firmware.acpi.iort.present"] = iort
    why = ("the kernel allocates a vSMMU (IOMMU_VIOMMU_ALLOC) only when the SMMU has S2FWB or the device's root "
           "complex is CANWBS in the IORT (VFIO does no cache maintenance; arm_smmu_get_viommu_size, "
           "arm-smmu-v3-iommufd.c:533-567), otherwise the allocation fails with EOPNOTSUPP")
    if fwb is False and iort is not True:
        return _r(FAIL, "The host SMMUv3 can nest (S1P, S2P) but has no stage-2 forced write-back (IDR3.FWB clear) "
                        "and the device tree has no CANWBS attribute (only an IORT does): %s, so "
                        "arm-smmuv3,accel=on cannot create its vSMMU." % why, ev, source,
                  "accel=on needs a host SMMUv3 with S2FWB (SMMUv3.2+) or an ACPI host whose IORT marks the root "
                  "complex CANWBS.")
    if fwb is False:
        return _r(WARN, "The host SMMUv3 can nest (S1P, S2P) but has no S2FWB (IDR3.FWB clear): %s; whether the "
                        "IORT marks %s's root complex CANWBS is not in the facts." % (why, addr), ev, source,
                  "Check the IORT root complex memory access flags (CANWBS) of the device's root complex.")
    return _r(PASS, "The host SMMUv3 has both translation stages (S1P, S2P): it can be a nesting parent.", ev, source)


@_check("viommu.smmuv3.ats", "device", "ATS usable when arm-smmuv3 ats=on",
        "params.ats; devices.<a>.hw_info.vendor.idr0.ats, devices.<a>.hw_info.capabilities.ats_not_supported",
        "QEMU hw/arm/smmuv3.c ats property (f7f5013a55, master): \"Please ensure host platform has ATS support "
        "before enabling this\" - QEMU does not verify it; kernel IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED (Linux 7.1)",
        mdev=_MDEV_VIOMMU)
def _smmu_ats(ctx, addr, dev, params):
    ats = _smmu_props(ctx, params)["ats"]
    ev = {"params.ats": _onoffauto(ats)}
    if _accel_off(params):
        return _r(NA, _NA_ACCEL_OFF, dict(ev, **{"params.accel": params.get("accel")}), "preflight parameters")
    if ats is not True and ats != "auto":
        return _r(NA, "ats=off: the vSMMU advertises no ATS.", ev, "preflight parameters")
    vendor = _smmu_hw(ctx, addr)
    if vendor is None:
        return _r(NA, "Not evaluated: no host SMMUv3 ID registers for %s (see viommu.smmuv3.hw_info_type)." % addr,
                  ev, "facts")
    if releases.smmuv3_auto(ctx.qemu):
        # QEMU 11.1.3 compares IDR0.ATS itself (smmuv3_accel_check_hw_compatible, hw/arm/smmuv3-accel.c:151):
        # ats=on needs the host's IDR0.ATS; auto copies the first device's IDR0.ATS into the vSMMU
        host = _get(vendor, "idr0", "ats")
        host = int(host) if isinstance(host, (bool, int)) else None
        ev[_dev_path(addr, "hw_info", "vendor", "idr0", "ats")] = host
        source = "iommufd: IOMMU_GET_HW_INFO of %s" % addr
        if host is None:
            return _r(FAIL, "Cannot verify: IDR0.ATS is missing from the decoded hw_info.", ev, source,
                      "Gather the facts again with iommu.host.iommu_facts.")
        ok, want, message, remedy = _cmp_ats(host, params, ctx)
        ev["QEMU value"] = want
        if ok is None:
            return _r(FAIL, "Cannot verify: QEMU takes IDR0.ATS from the host SMMUv3 of the first VFIO device (ats="
                            "auto), whose ID registers are not in the facts.", ev, source,
                      "Gather the facts of every assigned device with iommu.host.iommu_facts.")
        if not ok:
            return _r(FAIL, "QEMU refuses the device: \"%s\"." % _qemu_err(addr, message), ev, source, remedy)
        if ats == "auto":
            return _r(PASS, "ats=auto: the vSMMU advertises ATS as the host SMMUv3 of the first device does "
                            "(IDR0.ATS=%s here, QEMU %s)." % (host, want), ev, source)
    hw = dev.get("hw_info")
    idr_ats = _get(vendor, "idr0", "ats")
    not_supp = _get(hw, "capabilities", "ats_not_supported")
    reported = _get(hw, "capabilities", "reported_by_kernel", "ats_not_supported")
    ev.update({_dev_path(addr, "hw_info", "vendor", "idr0", "ats"): idr_ats,
               _dev_path(addr, "hw_info", "capabilities", "ats_not_supported"): not_supp,
               _dev_path(addr, "hw_info", "capabilities", "reported_by_kernel", "ats_not_supported"): reported})
    source = "iommufd: IOMMU_GET_HW_INFO of %s" % addr
    note = " (QEMU does not verify it: \"Please ensure host platform has ATS support before enabling this\")"
    if idr_ats is False or idr_ats == 0:
        return _r(FAIL, "ats=on, but the host SMMUv3 has no ATS (IDR0.ATS clear)%s." % note, ev, source,
                  "Set ats=off on arm-smmuv3.")
    if not_supp is True and reported is not False:
        return _r(FAIL, "ats=on, but the kernel says ATS cannot be used for %s (IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED; "
                        "firmware IORT or the device lacks it)%s." % (addr, note), ev, source,
                  "Set ats=off on arm-smmuv3, or assign a device with ATS on a root complex with ATS in IORT.")
    if reported is not True:
        return _r(WARN, "The host SMMUv3 has ATS (IDR0.ATS), but this kernel does not report per-device ATS "
                        "(Linux < 7.1), and the IORT can override IDR0%s." % note, ev, source,
                  "Check the IORT root complex ATS attribute and the device's ATS capability (lspci -vv).")
    return _r(PASS, "ATS is usable for %s: IDR0.ATS set and the kernel does not report ATS_NOT_SUPPORTED." % addr,
              ev, source)
