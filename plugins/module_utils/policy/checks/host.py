# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host checks: is the host's IOMMU there, on, and usable by VFIO/iommufd (scope host).

host.iommu_firmware (ACPI DMAR/IVRS/IORT, device tree), host.iommu_enabled (/sys/class/iommu),
host.iommu_not_disabled (kernel command line), host.default_domain (iommu_groups/N/type),
host.iommufd (/dev/iommu), host.vfio_cdev (/dev/vfio/devices), host.interrupt_remapping (MSI
isolation). Rules mirror Linux (drivers/iommu/, drivers/iommu/iommufd/device.c) and QEMU
backends/iommufd.c iommufd_backend_connect() and hw/vfio/iommufd.c (iommufd_cdev_getfd, bind).
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.policy.facts import _dict, _get, _int, _list, path
from ansible_collections.iommu.host.plugins.module_utils.policy.registry import FAIL, NA, PASS, WARN, _check, _r

__metaclass__ = type


@_check("host.iommu_firmware", "host", "IOMMU described by the firmware",
        "firmware.acpi.{dmar,ivrs,iort}.present, firmware.devicetree.iommu_nodes, present, vendors",
        "Linux: ACPI DMAR (drivers/iommu/intel/dmar.c), IVRS (drivers/iommu/amd/init.c), IORT "
        "(drivers/acpi/arm64/iort.c) or device-tree 'iommus'; read from /sys/firmware/acpi/tables",
        host_iommu=True)
def _host_iommu_firmware(ctx, params):
    fw = ctx.firmware
    if not fw:
        return _r(FAIL, "Cannot verify: the facts have no firmware section.",
                  {"firmware": ctx.facts.get("firmware")}, "facts",
                  "Gather the facts again with iommu.host.iommu_facts (schema_version 1).")
    acpi = _dict(fw.get("acpi"))
    names = {"dmar": "ACPI DMAR (Intel VT-d)", "ivrs": "ACPI IVRS (AMD-Vi)", "iort": "ACPI IORT (Arm SMMU)"}
    ev = {}
    tables = []
    for key in ("dmar", "ivrs", "iort"):
        present = _get(acpi, key, "present")
        ev[path("firmware", "acpi", key, "present")] = present
        if present is True:
            tables.append(names[key])
    dt_nodes = [n for n in _list(_get(fw, "devicetree", "iommu_nodes")) if isinstance(n, str)]
    ev["firmware.devicetree.iommu_nodes"] = dt_nodes
    ev["vendors"] = ctx.vendors()
    source = fw.get("source") or "/sys/firmware"
    if tables or dt_nodes:
        what = tables + (["device tree: %s" % ", ".join(dt_nodes)] if dt_nodes else [])
        return _r(PASS, "Firmware describes an IOMMU: %s." % "; ".join(what), ev, source)
    if ctx.vendors() and set(ctx.vendors()) <= {"virtio"}:
        return _r(NA, "The IOMMU is virtio-iommu, described by ACPI VIOT or by virtio itself, which "
                      "the facts do not read; no DMAR/IVRS/IORT table is expected.", ev, source)
    if ctx.facts.get("present") is True:
        return _r(WARN, "The kernel has active IOMMU units (%s) but no DMAR/IVRS/IORT table or "
                        "device-tree IOMMU node is visible." % ", ".join(ctx.vendors() or ["?"]), ev, source,
                  "Check that /sys/firmware/acpi/tables is readable (gather facts as root).")
    return _r(FAIL, "Firmware describes no IOMMU: no ACPI DMAR, IVRS or IORT table and no "
                    "device-tree IOMMU node.", ev, source,
              "Enable the IOMMU in the firmware setup (Intel: 'VT-d' / 'Intel Virtualization Technology "
              "for Directed I/O'; AMD: 'IOMMU' / 'AMD-Vi'; Arm servers: SMMU). In a QEMU guest add a "
              "vIOMMU: -device intel-iommu,intremap=on,caching-mode=on with -machine q35,kernel-irqchip=split, "
              "or -device amd-iommu.")


@_check("host.iommu_enabled", "host", "IOMMU enabled by the kernel",
        "present, units, vendors, kernel.config.CONFIG_*_IOMMU*, cmdline.effects",
        "Linux: an active IOMMU registers /sys/class/iommu/<unit> (drivers/iommu/iommu-sysfs.c); "
        "Intel needs intel_iommu=on unless CONFIG_INTEL_IOMMU_DEFAULT_ON=y (drivers/iommu/intel/iommu.c)",
        host_iommu=True)
def _host_iommu_enabled(ctx, params):
    present = ctx.facts.get("present")
    units = sorted(ctx.units)
    ev = {"present": present, "vendors": ctx.vendors(), "units": units,
          "summary.groups": _get(ctx.facts, "summary", "groups")}
    if present is True:
        real = ["%s (%s)" % (u, _dict(ctx.units[u]).get("vendor")) for u in units
                if _dict(ctx.units[u]).get("vendor") != "selftest"]
        return _r(PASS, "The kernel runs the IOMMU: %s; %d IOMMU group(s)." % (
            ", ".join(real) or ", ".join(ctx.vendors()), len(ctx.groups)), ev, "sysfs /sys/class/iommu")
    if present is None:
        return _r(FAIL, "Cannot verify: the facts do not say whether an IOMMU is active ('present' missing).",
                  ev, "facts", "Gather the facts again with iommu.host.iommu_facts.")
    config = _dict(ctx.kernel.get("config"))
    acpi = _dict(ctx.firmware.get("acpi"))
    hints = []
    if _get(acpi, "dmar", "present"):
        ev["kernel.config.CONFIG_INTEL_IOMMU"] = config.get("CONFIG_INTEL_IOMMU")
        ev["kernel.config.CONFIG_INTEL_IOMMU_DEFAULT_ON"] = config.get("CONFIG_INTEL_IOMMU_DEFAULT_ON")
        ev["cmdline.effects.intel_iommu"] = ctx.effects.get("intel_iommu")
        if config.get("CONFIG_INTEL_IOMMU") == "n":
            hints.append("the kernel is built without CONFIG_INTEL_IOMMU")
        elif ctx.effects.get("intel_iommu") != "on" and config.get("CONFIG_INTEL_IOMMU_DEFAULT_ON") != "y":
            hints.append("the firmware has a DMAR table but the kernel was not booted with intel_iommu=on")
    if _get(acpi, "ivrs", "present") and config.get("CONFIG_AMD_IOMMU") == "n":
        ev["kernel.config.CONFIG_AMD_IOMMU"] = "n"
        hints.append("the kernel is built without CONFIG_AMD_IOMMU")
    if ctx.effects.get("intel_iommu") == "off" or ctx.effects.get("amd_iommu") == "off" or ctx.effects.get("iommu_off"):
        hints.append("the kernel command line disables it (see host.iommu_not_disabled)")
    units_note = " (only the iommufd selftest unit)" if units else ""
    return _r(FAIL, "No IOMMU is active: /sys/class/iommu has no unit%s%s." % (
        units_note, "; " + "; ".join(hints) if hints else ""), ev, "sysfs /sys/class/iommu",
        "Enable VT-d / AMD-Vi / SMMU in the firmware, boot with intel_iommu=on on Intel (AMD enables it "
        "by default), and use a kernel with CONFIG_INTEL_IOMMU / CONFIG_AMD_IOMMU / CONFIG_ARM_SMMU_V3 "
        "(role iommu.host.provision sets the command line).")


@_check("host.iommu_not_disabled", "host", "IOMMU not disabled on the kernel command line",
        "cmdline.raw, cmdline.effects.{intel_iommu,amd_iommu,iommu_off}, firmware.acpi, vendors",
        "Linux Documentation/admin-guide/kernel-parameters.txt: intel_iommu=off, amd_iommu=off, "
        "iommu=off (x86)", host_iommu=True)
def _host_iommu_not_disabled(ctx, params):
    if not ctx.cmdline or ctx.cmdline.get("raw") is None:
        return _r(FAIL, "Cannot verify: the kernel command line was not read (cmdline.raw missing).",
                  {"cmdline.raw": ctx.cmdline.get("raw")}, "facts",
                  "Gather the facts again; /proc/cmdline must be readable.")
    eff = ctx.effects
    acpi = _dict(ctx.firmware.get("acpi"))
    vendors = ctx.vendors()
    intel_hw = bool(_get(acpi, "dmar", "present")) or "intel_vtd" in vendors
    amd_hw = bool(_get(acpi, "ivrs", "present")) or "amd" in vendors
    arm_hw = bool(_get(acpi, "iort", "present")) or "arm_smmuv3" in vendors or bool(
        _list(_get(ctx.firmware, "devicetree", "iommu_nodes")))
    ev = {"cmdline.effects.intel_iommu": eff.get("intel_iommu"), "cmdline.effects.amd_iommu": eff.get("amd_iommu"),
          "cmdline.effects.iommu_off": eff.get("iommu_off"), "cmdline.args": ctx.cmdline.get("args")}
    source = ctx.cmdline.get("source") or "/proc/cmdline"
    any_off = eff.get("intel_iommu") == "off" or eff.get("amd_iommu") == "off" or eff.get("iommu_off") is True
    if not any_off and arm_hw and not (intel_hw or amd_hw):
        return _r(NA, "intel_iommu=, amd_iommu= and iommu=off are x86 parameters; this host's IOMMU is "
                      "described by IORT or the device tree.", ev, source)
    offending, ignored = [], []
    if eff.get("intel_iommu") == "off":
        (offending if intel_hw or not amd_hw else ignored).append("intel_iommu=off")
    if eff.get("amd_iommu") == "off":
        (offending if amd_hw or not intel_hw else ignored).append("amd_iommu=off")
    if eff.get("iommu_off") is True:
        offending.append("iommu=off")
    if offending:
        return _r(FAIL, "The kernel command line disables the IOMMU: %s." % ", ".join(offending), ev, source,
                  "Remove %s from the kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, then "
                  "update-grub) and reboot; on Intel use intel_iommu=on." % ", ".join(offending))
    notes = []
    if ignored:
        notes.append("%s is set but does not concern this host's IOMMU" % ", ".join(ignored))
    if eff.get("passthrough") is True:
        notes.append("iommu=pt / iommu.passthrough=1 only makes host-owned devices bypass translation; "
                     "VFIO still gets isolated domains")
    return _r(PASS, "Nothing on the kernel command line disables the IOMMU%s." % (
        " (" + "; ".join(notes) + ")" if notes else ""), ev, source)


@_check("host.default_domain", "host", "Default domain type of the IOMMU groups",
        "groups.*.type (of the assigned devices' groups, else all groups)",
        "Linux drivers/iommu/iommu.c iommu_group_show_type (/sys/kernel/iommu_groups/N/type, Linux >= 5.11); "
        "VFIO/iommufd replace the default domain with their own while they own the group",
        host_iommu=True)
def _host_default_domain(ctx, params):
    if "groups" not in ctx.facts or not isinstance(ctx.facts.get("groups"), dict):
        return _r(FAIL, "Cannot verify: the facts have no groups section.", {"groups": ctx.facts.get("groups")},
                  "facts", "Gather the facts again with iommu.host.iommu_facts.")
    if not ctx.groups:
        return _r(FAIL, "There are no IOMMU groups: the IOMMU translates no device.", {"groups": {}},
                  "sysfs /sys/kernel/iommu_groups",
                  "Enable the IOMMU (see host.iommu_enabled); every translated device gets a group.")
    wanted = []
    for addr in ctx.pci:
        gid = ctx.dev(addr).get("iommu_group")
        if gid is not None and str(gid) in ctx.groups and str(gid) not in wanted:
            wanted.append(str(gid))
    scope = "of the assigned devices' groups" if wanted else "of all groups"
    gids = wanted or sorted(ctx.groups, key=lambda g: (_int(g) is None, _int(g) or 0, str(g)))
    types = {}
    for gid in gids:
        types[gid] = _get(ctx.groups, gid, "type")
    ev = dict((path("groups", gid, "type"), t) for gid, t in list(types.items())[:32])
    source = "sysfs /sys/kernel/iommu_groups/N/type"
    known = set(t for t in types.values() if isinstance(t, str))
    if not known:
        return _r(NA, "The kernel does not expose the default domain type (iommu_groups/N/type appeared "
                      "in Linux 5.11).", ev, source)
    odd = sorted(gid for gid, t in types.items() if t in ("unknown", "blocked"))
    summary = ", ".join("%s: %d group(s)" % (t, sum(1 for v in types.values() if v == t)) for t in sorted(known))
    if odd:
        return _r(WARN, "Default domain type %s: %s; group(s) %s have type %s, which the kernel could not "
                        "set up as a DMA or identity domain." % (scope, summary, ", ".join(odd[:8]),
                                                                 "/".join(sorted(set(types[g] for g in odd)))),
                  ev, source, "Check dmesg for IOMMU errors for those groups; VFIO can still attach its "
                              "own domain, but host DMA through these devices is not translated as expected.")
    note = ""
    if "identity" in known:
        note = (" (identity = passthrough: host-owned devices bypass translation; VFIO still isolates "
                "assigned devices with its own domains)")
    return _r(PASS, "Default domain type %s: %s%s." % (scope, summary, note), ev, source)


@_check("host.iommufd", "host", "IOMMUFD available (/dev/iommu)",
        "kernel.iommufd.{available,supported,config,module}",
        "QEMU backends/iommufd.c iommufd_backend_connect(): cpr_open_fd(\"/dev/iommu\") "
        "-> \"Could not open '/dev/iommu': ...\" (QEMU >= 9.0); Linux CONFIG_IOMMUFD")
def _host_iommufd(ctx, params):
    if not params.get("iommufd", True):
        return _r(NA, "The VM uses the legacy VFIO container (iommufd=false), not /dev/iommu.",
                  {"params.iommufd": False}, "preflight parameters")
    k = ctx.kernel.get("iommufd")
    if not isinstance(k, dict):
        return _r(FAIL, "Cannot verify: the facts have no kernel.iommufd section.", {"kernel.iommufd": k},
                  "facts", "Gather the facts again with iommu.host.iommu_facts.")
    ev = {"kernel.iommufd.available": k.get("available"), "kernel.iommufd.supported": k.get("supported"),
          "kernel.iommufd.config": k.get("config"), "kernel.iommufd.module": k.get("module")}
    source = ", ".join(str(s) for s in _list(k.get("source"))) or "facts"
    if k.get("available") is True:
        return _r(PASS, "/dev/iommu exists (iommufd %s)." % (k.get("module") or k.get("config") or "present"),
                  ev, source)
    qemu = "QEMU's -object iommufd fails: \"Could not open '/dev/iommu': No such file or directory\""
    if k.get("supported") is True:
        return _r(FAIL, "/dev/iommu does not exist although the kernel has iommufd (CONFIG_IOMMUFD=%s): the "
                        "module is not loaded; %s." % (k.get("config") or "m", qemu), ev, source,
                  "Load it with 'modprobe iommufd' and persist it "
                  "(echo iommufd > /etc/modules-load.d/iommufd.conf; role iommu.host.provision does both).")
    if k.get("supported") is False:
        return _r(FAIL, "The kernel is built without IOMMUFD (CONFIG_IOMMUFD is not set); %s." % qemu, ev, source,
                  "Boot a kernel with CONFIG_IOMMUFD=y (Debian's kernels do not enable it), or deploy the "
                  "VM on the legacy VFIO container (iommufd=false), which has no IOMMU dirty tracking, "
                  "x-flts nesting or arm-smmuv3 accel=on.")
    return _r(FAIL, "/dev/iommu does not exist and the kernel configuration is unknown; %s." % qemu, ev, source,
              "Try 'modprobe iommufd'; if the module does not exist, boot a kernel with CONFIG_IOMMUFD=y.")


@_check("host.vfio_cdev", "host", "VFIO device cdev available (/dev/vfio/devices)",
        "kernel.vfio_device_cdev.{available,supported,config}",
        "QEMU hw/vfio/iommufd.c iommufd_cdev_getfd() opens <sysfsdev>/vfio-dev/vfioX -> "
        "\"failed to find vfio-dev/vfioX/dev\" (QEMU >= 9.0); Linux CONFIG_VFIO_DEVICE_CDEV (>= 6.6)")
def _host_vfio_cdev(ctx, params):
    if not params.get("iommufd", True):
        return _r(NA, "The VM uses the legacy VFIO container (iommufd=false): /dev/vfio/<group> is used, "
                      "not the device cdev.", {"params.iommufd": False}, "preflight parameters")
    k = ctx.kernel.get("vfio_device_cdev")
    if not isinstance(k, dict):
        return _r(FAIL, "Cannot verify: the facts have no kernel.vfio_device_cdev section.",
                  {"kernel.vfio_device_cdev": k}, "facts", "Gather the facts again with iommu.host.iommu_facts.")
    ev = {"kernel.vfio_device_cdev.available": k.get("available"),
          "kernel.vfio_device_cdev.supported": k.get("supported"),
          "kernel.vfio_device_cdev.config": k.get("config")}
    source = ", ".join(str(s) for s in _list(k.get("source"))) or "facts"
    if k.get("available") is True:
        return _r(PASS, "/dev/vfio/devices exists: the kernel has the VFIO device cdev.", ev, source)
    if k.get("supported") is True:
        return _r(PASS, "The kernel has CONFIG_VFIO_DEVICE_CDEV=%s; /dev/vfio/devices/vfioN appear once "
                        "devices are bound to vfio-pci." % (k.get("config") or "y"), ev, source)
    if k.get("supported") is False:
        return _r(FAIL, "The kernel is built without CONFIG_VFIO_DEVICE_CDEV: vfio-pci devices get no "
                        "/dev/vfio/devices/vfioN, and QEMU's iommufd backend fails with \"vfio <address>: "
                        "failed to find vfio-dev/vfioX/dev\".", ev, source,
                  "Boot a kernel with CONFIG_VFIO_DEVICE_CDEV=y (Linux >= 6.6), or use the legacy VFIO "
                  "container (iommufd=false).")
    config = _dict(ctx.kernel.get("config"))
    config_source = ctx.kernel.get("config_source")
    ev["kernel.config_source"] = config_source
    for option, why in (("CONFIG_VFIO", "the kernel is built without VFIO (CONFIG_VFIO is not set)"),
                        ("CONFIG_IOMMUFD", "CONFIG_VFIO_DEVICE_CDEV depends on CONFIG_IOMMUFD, which is not set")):
        if config.get(option) == "n":
            ev[path("kernel", "config", option)] = "n"
            return _r(FAIL, "No VFIO device cdev: %s, so QEMU's iommufd backend cannot open devices (\"vfio "
                            "<address>: failed to find vfio-dev/vfioX/dev\")." % why, ev, config_source or source,
                      "Boot a kernel with CONFIG_VFIO=y/m, CONFIG_IOMMUFD=y/m and CONFIG_VFIO_DEVICE_CDEV=y "
                      "(Linux >= 6.6).")
    if config_source:
        return _r(WARN, "Unknown: no /dev/vfio/devices (no device bound to vfio-pci yet), and the kernel config "
                        "(%s) does not list CONFIG_VFIO_DEVICE_CDEV (Linux < 6.6, or an unmet dependency)."
                  % config_source, ev, config_source,
                  "Use Linux >= 6.6 with CONFIG_VFIO_DEVICE_CDEV=y; bind a device to vfio-pci and gather facts "
                  "again to confirm.")
    return _r(WARN, "Unknown: no /dev/vfio/devices (no device bound to vfio-pci yet) and the kernel "
                    "configuration could not be read.", ev, source,
              "Bind a device to vfio-pci and gather facts again, or make /boot/config-$(uname -r) or "
              "/proc/config.gz readable.")


@_check("host.interrupt_remapping", "host", "Interrupt remapping (MSI isolation) enabled",
        "kernel.interrupt_remapping.{enabled,evidence}, kernel.allow_unsafe_interrupts, cmdline.effects.intremap_off",
        "Linux drivers/iommu/iommufd/device.c: iommufd refuses a device without MSI isolation (EPERM) unless "
        "iommufd.allow_unsafe_interrupts=1; QEMU hw/vfio/iommufd.c:158 \"error bind device fd=%d to "
        "iommufd=%d\"", host_iommu=True, verified=((10, 0), (11, 1)))
def _host_interrupt_remapping(ctx, params):
    ir = ctx.kernel.get("interrupt_remapping")
    ev = {"kernel.interrupt_remapping.enabled": _get(ir, "enabled"),
          "kernel.interrupt_remapping.mechanism": _get(ir, "mechanism"),
          "kernel.interrupt_remapping.evidence": _list(_get(ir, "evidence"))[:6],
          "kernel.allow_unsafe_interrupts": ctx.kernel.get("allow_unsafe_interrupts"),
          "cmdline.effects.intremap_off": ctx.effects.get("intremap_off")}
    source = _get(ir, "source") or "/proc/interrupts"
    addr = ctx.first_device()
    group = _get(ctx.devices.get(addr), "iommu_group") if addr in ctx.devices else None
    qemu = ("iommufd refuses to bind the device (EPERM) and QEMU stops with \"vfio %s: error bind "
            "device fd=N to iommufd=M: Operation not permitted\"" % addr if params.get("iommufd", True)
            else "vfio_iommu_type1 refuses to attach the group and QEMU stops with \"vfio %s: failed to setup "
                 "container for group %s: Failed to set iommu for container: Operation not permitted\"" % (
                     addr, group if group is not None else "<group>"))
    remedy = ("Enable interrupt remapping: keep intremap on (remove intremap=off / nointremap), enable "
              "'Interrupt Remapping' / x2APIC in the firmware; in a QEMU guest use intel-iommu,intremap=on "
              "or amd-iommu,intremap=on with -machine kernel-irqchip=split. Last resort, unsafe: "
              "iommufd.allow_unsafe_interrupts=1.")
    if not isinstance(ir, dict):
        return _r(FAIL, "Cannot verify: the facts have no kernel.interrupt_remapping section.", ev, "facts",
                  "Gather the facts again with iommu.host.iommu_facts.")
    if ctx.effects.get("intremap_off") is True:
        return _r(FAIL, "The kernel command line turns interrupt remapping off (intremap=off/nointremap): "
                        "MSIs are not isolated, so %s." % qemu, ev, source, remedy)
    enabled = ir.get("enabled")
    evidence = ", ".join(str(e) for e in _list(ir.get("evidence"))[:3])
    arm = ir.get("mechanism") == "gicv3_its" or any(
        str(e).startswith(("ITS-", "GICv2m-", "MBI-")) for e in _list(ir.get("evidence")))
    if arm:
        remedy = ("Use a GICv3/v4 with an ITS for the PCI MSIs (DT msi-map/msi-parent or IORT ITS group; in a QEMU "
                  "guest -machine virt,gic-version=3), not GICv2m or MBI frames, which cannot tell devices apart. "
                  "Last resort, unsafe: iommufd.allow_unsafe_interrupts=1.")
    if enabled is True and ir.get("mechanism") == "gicv3_its":
        return _r(PASS, "MSIs are isolated by the GIC ITS (%s): the ITS MSI domain is IRQ_DOMAIN_FLAG_ISOLATED_MSI, "
                        "which iommufd requires (an SMMU itself remaps no interrupts)." % evidence, ev, source)
    if enabled is True:
        return _r(PASS, "Interrupts are remapped/isolated (%s)." % evidence, ev, source)
    unsafe = ctx.kernel.get("allow_unsafe_interrupts") is True or ctx.effects.get("allow_unsafe_interrupts") is True
    if enabled is False and unsafe and params.get("iommufd", True):
        return _r(WARN, "Interrupts are not remapped, but iommufd.allow_unsafe_interrupts=1 lets devices in "
                        "without MSI isolation: a guest can forge interrupts to the host.", ev, source, remedy)
    if enabled is False and ir.get("mechanism") == "gicv3_its":
        return _r(FAIL, "The GIC ITS sits behind a Socionext pre-ITS (%s), which breaks MSI isolation (the kernel "
                        "clears IRQ_DOMAIN_FLAG_ISOLATED_MSI), so %s." % (
                            ", ".join(str(n) for n in _list(ir.get("pre_its"))) or "socionext,synquacer-pre-its", qemu),
                  ev, source, remedy)
    if enabled is False and arm:
        return _r(FAIL, "MSIs are not isolated: /proc/interrupts shows %s, MSI frames without an ITS that cannot tell "
                        "devices apart, so %s." % (evidence, qemu), ev, source, remedy)
    if enabled is False:
        return _r(FAIL, "Interrupt remapping is off: MSIs are not isolated (/proc/interrupts shows %s, not "
                        "IR-* chips), so %s." % (", ".join(str(e) for e in _list(ir.get("evidence"))[:3])
                                                 or "plain MSI chips", qemu), ev, source, remedy)
    return _r(WARN, "Could not determine whether interrupts are remapped (no MSI or IO-APIC chip in "
                    "/proc/interrupts).", ev, source,
              "Check dmesg for 'Enabled IRQ remapping' (Intel) or 'Interrupt remapping enabled' (AMD).")
