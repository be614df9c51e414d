# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Assemble the ``iommu`` facts: sysfs readers + iommufd query + vendor decoders.

The shape produced here is the public facts schema documented in
docs/facts.md (``schema_version`` below). Every section says where its values
came from (``source``). Nothing in this file talks to the kernel directly:
reads go through :mod:`iommu_sysfs`, ioctls through :mod:`iommu_uapi`.
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.decode import api as decode
from ansible_collections.iommu.host.plugins.module_utils.decode import pci_config
from ansible_collections.iommu.host.plugins.module_utils import iommu_memory
from ansible_collections.iommu.host.plugins.module_utils import iommu_sysfs as sysfs
from ansible_collections.iommu.host.plugins.module_utils import iommu_uapi as uapi
from ansible_collections.iommu.host.plugins.module_utils.fleet.capabilities import with_capabilities

__metaclass__ = type

SCHEMA_VERSION = 1


def decode_unit_registers(unit):
    """Decode the registers a unit exposes in sysfs (VT-d cap/ecap, AMD EFR/EFR2)."""
    regs = unit.get("registers") or {}
    if unit["vendor"] == "intel_vtd" and regs.get("cap") and regs.get("ecap"):
        try:
            return decode.decode_vtd(int(regs["cap"], 16), int(regs["ecap"], 16))
        except ValueError:
            return {"errors": ["unparsable cap/ecap %r/%r" % (regs["cap"], regs["ecap"])]}
    if unit["vendor"] == "amd" and regs.get("efr") is not None:
        return decode.decode_amd(regs["efr"], regs.get("efr2") or 0)
    return None


def kernel_support(reader, release, config, builtin, nodes):
    """Whether iommufd, the VFIO cdev and vfio-pci are built, loaded and usable."""
    values = config["values"]

    def support(option, module, present, present_source):
        state = values.get(option)
        mod = reader.module_state(module) if module else None
        sources = []
        if state is not None:
            sources.append(config["source"])
        if builtin is not None and module in builtin:
            sources.append("modules.builtin")
            if builtin[module] and state is None:
                state = "y"
        if mod:
            sources.append("/sys/module")
        if present:
            sources.append(present_source)
        if state in ("y", "m") or mod or present:
            supported = True
        elif state == "n":
            supported = False
        else:
            supported = None
        return {"supported": supported, "config": state, "module": mod,
                "available": bool(present), "source": sources}

    cdev_dirs = nodes["vfio_cdevs"] or reader.exists("/dev/vfio/devices")
    return {
        "release": release,
        "config_source": config["source"],
        "config": values,
        "iommufd": support("CONFIG_IOMMUFD", "iommufd", nodes["iommu"], "/dev/iommu"),
        "vfio_device_cdev": support("CONFIG_VFIO_DEVICE_CDEV", None, cdev_dirs, "/dev/vfio/devices"),
        "vfio_pci": support("CONFIG_VFIO_PCI", "vfio_pci",
                            reader.exists("/sys/bus/pci/drivers/vfio-pci"), "/sys/bus/pci/drivers/vfio-pci"),
        "dev_nodes": nodes,
        "interrupt_remapping": reader.interrupt_remapping(),
        "allow_unsafe_interrupts": _param_bool(reader.module_param("iommufd", "allow_unsafe_interrupts")),
        "vfio_noiommu_mode": _param_bool(reader.module_param("vfio", "enable_unsafe_noiommu_mode")),
        # QEMU's arm-smmuv3,accel=on (and any -accel kvm VM) needs it (policy viommu.smmuv3.kvm)
        "kvm": {"available": reader.exists("/dev/kvm"), "source": "/dev/kvm"},
    }


def _param_bool(text):
    if text is None:
        return None
    return text.strip() in ("Y", "y", "1")


def bound_holders(dev, holders):
    """Holders that keep the device from a new owner: the group node's (a group opens once), and the
    cdev's that also hold /dev/iommu (bound to an iommufd: a second bind gets EINVAL). A process that
    merely open(2)ed the cdev does not stop QEMU (test bed, QEMU 10.0/11.1)."""
    bound = []
    if dev.get("vfio_cdev"):
        iommufd = set(holders.get("/dev/iommu", []))
        bound += [h for h in holders.get("/dev/vfio/devices/%s" % dev["vfio_cdev"], []) if h in iommufd]
    if dev.get("iommu_group"):
        bound += holders.get("/dev/vfio/%s" % dev["iommu_group"], [])
    return sorted(set(bound))


def _device_view(dev, groups, devices, units, holders):
    """Per-device facts derived from sysfs: group, viability, in-use, unit."""
    group = groups.get(dev["iommu_group"]) if dev["iommu_group"] else None
    members = group["devices"] if group else []
    in_use = []
    if dev["vfio_cdev"]:
        in_use += holders.get("/dev/vfio/devices/%s" % dev["vfio_cdev"], [])
    if dev["iommu_group"]:
        in_use += holders.get("/dev/vfio/%s" % dev["iommu_group"], [])
    dev["group_members"] = [m for m in members if m != dev["address"]]
    dev["group_blockers"] = sysfs.group_members_not_vfio(devices, members, dev["address"])
    dev["group_viable"] = not dev["group_blockers"] if group else None
    dev["in_use_by"] = sorted(set(in_use))
    dev["in_use_bound_by"] = bound_holders(dev, holders)
    unit = units.get(dev["iommu_unit"]) if dev["iommu_unit"] else None
    dev["iommu_vendor"] = unit["vendor"] if unit else None
    dev["has_iommu"] = bool(group)
    return dev


ACS_OVERRIDE_NOTE = ("pcie_acs_override exists only in patched kernels (Proxmox VE, linux-zen, the ACS override "
                     "patch); it makes the kernel pretend ports and multi-function devices have ACS, so IOMMU "
                     "groups are split without the hardware isolating them. A mainline kernel ignores it.")


def acs_override(cmdline):
    """Whether pcie_acs_override is on the kernel command line, and its values."""
    values = (cmdline.get("args") or {}).get("pcie_acs_override") or []
    return {"present": bool(values), "values": ["" if v is True else v for v in values],
            "source": "/proc/cmdline", "note": ACS_OVERRIDE_NOTE}


def _acs_view(addr, parsed):
    acs = parsed["acs"] or {}
    return {
        "source": "config:/sys/bus/pci/devices/%s/config" % addr,
        "bytes_read": parsed["size"],
        "readable": parsed["readable"],
        "pcie": parsed["pcie"],
        "port_type": parsed["port_type"],
        "multifunction": parsed["multifunction"],
        "status": parsed["acs_status"],
        "offset": acs.get("offset"),
        "cap_raw": acs.get("cap_raw"),
        "ctrl_raw": acs.get("ctrl_raw"),
        "capability": acs.get("capability"),
        "control": acs.get("control"),
        "isolates": acs.get("isolates") if parsed["acs_status"] == "present" else (
            False if parsed["acs_status"] in ("absent", "not_pcie") else None),
        "note": parsed["note"],
        "problems": parsed["problems"],
    }


def sriov_and_acs(reader, devices, cmdline):
    """Per device: ``sriov`` (PFs), ``upstream`` (bridges above it, nearest first), ``acs`` (bridges and
    multi-function devices: their ACS capability from config space) and ``acs_path`` (each upstream
    bridge's ACS in short). Returns the host-wide ``acs`` section."""
    slots = {}
    for addr, dev in devices.items():
        dev["sriov"] = reader.sriov(addr)
        dev["upstream"] = reader.upstream_bridges(addr)
        if not dev.get("physfn"):
            slots.setdefault(addr.rsplit(".", 1)[0], []).append(addr)
    multi = set(a for members in slots.values() if len(members) > 1 for a in members)
    read = 0
    for addr, dev in devices.items():
        if dev.get("is_bridge") or addr in multi:
            dev["acs"] = _acs_view(addr, pci_config.parse_config(reader.config_space(addr)))
            read += 1
        else:
            dev["acs"] = None
    for addr, dev in devices.items():
        path = []
        for bridge in dev["upstream"]:
            acs = (devices.get(bridge) or {}).get("acs") or {}
            path.append({"address": bridge, "port_type": acs.get("port_type"), "status": acs.get("status"),
                         "isolates": acs.get("isolates")})
        dev["acs_path"] = path
    extended = [a for a, d in devices.items() if d["acs"] and d["acs"]["readable"] == "extended"]
    return {"override": acs_override(cmdline), "config_read": read,
            "extended_config_readable": bool(extended) if read else None,
            "source": "sysfs /sys/bus/pci/devices/*/config (bridges and multi-function devices)"}


def query_candidates(devices, selected=None):
    """Devices whose hw_info may be read through iommufd: bound to a VFIO driver (vfio-pci or a
    variant driver), with a cdev, not in use."""
    out = []
    for addr, dev in sorted(devices.items()):
        if selected is not None and addr not in selected:
            continue
        if sysfs.is_vfio_bound(dev) and dev["vfio_cdev"] and not dev["in_use_by"]:
            out.append(addr)
    return out


def _features_not_read(reason, error=None):
    out = {"source": "none", "skipped": reason}
    if error is not None:
        out["error"] = error
    return out


def features_after_error(e):
    """vfio_features for a query that failed: the probes made before the failure, or why none were."""
    if getattr(e, "features", None):
        return e.features
    return _features_not_read("not opened: %s failed (%s)" % (e.step or "the query", e.message), e.as_dict())


MDEV_NO_HW_INFO = ("mediated device: no IOMMU of its own (it binds to iommufd as an emulated device, an "
                   "ACCESS object), so there is no IOMMU_GET_HW_INFO answer; QEMU does not ask it either")


def _mdev_in_use(mdev, holders):
    in_use = []
    if mdev.get("vfio_cdev"):
        in_use += holders.get("/dev/vfio/devices/%s" % mdev["vfio_cdev"], [])
    if mdev.get("iommu_group"):
        in_use += holders.get("/dev/vfio/%s" % mdev["iommu_group"], [])
    return sorted(set(in_use))


def query_mdev_features(uuid, mdev, mdev_query=None):
    """Bind an mdev's VFIO cdev to a private iommufd context and probe its VFIO features.

    Returns (vfio_features, error dict or None). ``mdev_query``: the function doing
    the ioctls (default iommu_uapi.query_features; tests inject one).
    """
    try:
        info = (mdev_query or uapi.query_features)(uapi.VFIO_CDEV_DIR + "/" + mdev["vfio_cdev"], device=uuid,
                                                   context={"in_use_by": mdev.get("in_use_by") or []})
    except uapi.IommuError as e:
        return features_after_error(e), e.as_dict()
    return info["features"], None


def hw_info_result(info, release):
    """Decode a raw IOMMU_GET_HW_INFO answer into the facts shape."""
    vendor = decode.decode_hw_info_data(info["type_id"], info["data"])
    caps = decode.decode_capabilities(info["capabilities"], info["max_pasid_log2"])
    caps["reported_by_kernel"] = {
        "dirty_tracking": uapi.kernel_reports("capabilities.dirty_tracking", release),
        "pasid": uapi.kernel_reports("capabilities.pasid", release),
        "ats_not_supported": uapi.kernel_reports("capabilities.ats_not_supported", release),
    }
    return {
        "source": "iommufd",
        "type": vendor.get("type"),
        "type_id": info["type_id"],
        "data_len": info["data_len"],
        "capabilities": caps,
        "vendor": vendor,
        "raw": {"data": info["data"].hex(), "capabilities": "0x%x" % info["capabilities"],
                "max_pasid_log2": info["max_pasid_log2"]},
    }


def compare_with_sysfs(hw, unit):
    """Check that iommufd's vendor registers equal the unit's sysfs registers."""
    if not unit or not hw:
        return None
    regs = unit.get("registers") or {}
    raw = (hw.get("vendor") or {}).get("raw") or {}
    pairs = []
    if hw.get("type") == "intel_vtd" and regs.get("cap"):
        pairs = [("cap", raw.get("cap_reg")), ("ecap", raw.get("ecap_reg"))]
    elif hw.get("type") == "amd" and regs.get("efr") is not None:
        pairs = [("efr", raw.get("efr")), ("efr2", raw.get("efr2"))]
    if not pairs:
        return None
    mismatches = []
    for name, value in pairs:
        sys_value = regs.get(name)
        if isinstance(sys_value, str):
            sys_value = int(sys_value, 16)
        if sys_value is None and name == "efr2":
            continue  # older kernels print EFR only
        if value is None or int(value, 16) != sys_value:
            mismatches.append(name)
    return {"equal": not mismatches, "mismatches": mismatches}


def query_hw_info(dev, query, in_type, interrupt_remapping, release, units):
    """Bind ``dev``'s VFIO cdev to a private iommufd context and read its hw_info.

    This resets the device (see iommu_uapi.bind_iommufd). The sysfs context given to
    the query explains an EPERM. Raises iommu_uapi.IommuError.
    ``query``: the function doing the ioctls (default iommu_uapi.query_device; tests inject one).
    """
    context = {"interrupt_remapping": interrupt_remapping, "group_other_drivers": dev["group_blockers"],
               "in_use_by": dev["in_use_by"]}
    info = (query or uapi.query_device)(uapi.VFIO_CDEV_DIR + "/" + dev["vfio_cdev"], in_type=in_type,
                                        device=dev["address"], context=context)
    hw = hw_info_result(info, release)
    hw["device_reset"] = True
    hw["consistent_with_sysfs"] = compare_with_sysfs(hw, units.get(dev["iommu_unit"]))
    if info.get("features") is not None:
        hw["vfio_features"] = info["features"]   # moved to the device entry by the callers
    return hw


def gather(root="/", sysfs_only=False, selected=None, in_type=None, query=None, mdev_query=None):
    """Collect the ``iommu`` facts below ``root``.

    ``sysfs_only``: open no device (no reset). Otherwise every device bound to
    a VFIO driver (vfio-pci or a variant driver) with a VFIO cdev that no process
    holds (or only those in ``selected``) is bound to a private iommufd context and
    queried (hw_info and the VFIO_DEVICE_FEATURE probes); that resets the device
    (see iommu_uapi.bind_iommufd). Idle mdevs with a VFIO cdev (or those in
    ``selected``, by UUID) are bound the same way to probe their VFIO features.
    ``query`` / ``mdev_query``: the functions doing the ioctls (tests inject them).
    """
    reader = sysfs.SysfsReader(root)
    release = reader.kernel_release()
    config = reader.kernel_config(release)
    nodes = reader.dev_nodes()
    kernel = kernel_support(reader, release, config, reader.builtin_modules(release), nodes)
    units = reader.units()
    for unit in units.values():
        decoded = decode_unit_registers(unit)
        unit["decoded"] = decoded
        unit["source"] = "sysfs:%s" % unit["sysfs"]
    devices = reader.pci_devices()
    groups = reader.groups(devices)
    holders = reader.vfio_holders()
    for dev in devices.values():
        _device_view(dev, groups, devices, units, holders)
    cmdline = reader.cmdline()
    acs = sriov_and_acs(reader, devices, cmdline)
    mdevs = reader.mdevs()
    for mdev in mdevs.values():
        # an mdev's DMA is its parent's: it sits on the parent's NUMA node (null for a non-PCI parent)
        mdev["numa_node"] = (devices.get(mdev["parent"]) or {}).get("numa_node")
    memory = iommu_memory.read_memory(reader)
    findings = []

    queried = []
    mode = "sysfs_only" if sysfs_only else "iommufd"
    for addr in query_candidates(devices, selected):
        dev = devices[addr]
        if sysfs_only:
            dev["hw_info"] = {"source": "none", "skipped": "sysfs_only: device not opened"}
            continue
        try:
            hw = query_hw_info(dev, query, in_type, kernel["interrupt_remapping"]["enabled"], release, units)
        except uapi.IommuError as e:
            dev["hw_info"] = {"source": "iommufd", "error": e.as_dict()}
            dev["vfio_features"] = features_after_error(e)
            findings.append(dict(e.as_dict(), severity="warning"))
            continue
        if "vfio_features" in hw:
            dev["vfio_features"] = hw.pop("vfio_features")
        dev["hw_info"] = hw
        queried.append(addr)
        unit = units.get(dev["iommu_unit"])
        if unit is not None and "iommufd" not in unit:
            unit["iommufd"] = {"via": addr, "type": hw["type"], "vendor": hw["vendor"],
                               "consistent_with_sysfs": hw["consistent_with_sysfs"],
                               "source": "iommufd:IOMMU_GET_HW_INFO(%s)" % addr}
    for addr, dev in devices.items():
        if sysfs_only and "hw_info" in dev:
            dev["vfio_features"] = _features_not_read(dev["hw_info"]["skipped"])
        if sysfs.is_vfio_bound(dev) and dev["in_use_by"] and "hw_info" not in dev:
            dev["hw_info"] = {"source": "none",
                              "skipped": "in use by %s: not opened (opening would reset it)"
                                         % ", ".join(dev["in_use_by"])}
            dev["vfio_features"] = _features_not_read(dev["hw_info"]["skipped"])

    queried_mdevs = []
    for uuid, mdev in sorted(mdevs.items()):
        mdev["in_use_by"] = _mdev_in_use(mdev, holders)
        mdev["hw_info"] = {"source": "none", "skipped": MDEV_NO_HW_INFO}
        if not mdev["vfio"]["bound"] or not mdev["vfio_cdev"]:
            continue
        if selected is not None and uuid not in selected:
            continue
        if sysfs_only:
            mdev["vfio_features"] = _features_not_read("sysfs_only: device not opened")
            continue
        if mdev["in_use_by"]:
            mdev["vfio_features"] = _features_not_read("in use by %s: not opened" % ", ".join(mdev["in_use_by"]))
            continue
        mdev["vfio_features"], error = query_mdev_features(uuid, mdev, mdev_query)
        if error:
            findings.append(dict(error, severity="warning"))
        else:
            queried_mdevs.append(uuid)

    real_units = [u for u in units.values() if u["vendor"] not in ("selftest",)]
    for error in reader.errors:
        findings.append({"code": "sysfs_read", "severity": "warning",
                         "message": "%s: %s" % (error["path"], error["error"]), "step": "read",
                         "device": None, "remedy": None, "errno": None})
    return with_capabilities({
        "schema_version": SCHEMA_VERSION,
        "mode": mode,
        "present": bool(real_units),
        "vendors": sorted(set(u["vendor"] for u in real_units)),
        "kernel": kernel,
        "cmdline": cmdline,
        "acs": acs,
        "firmware": reader.firmware(),
        "units": units,
        "groups": groups,
        "devices": devices,
        "mdevs": mdevs,
        "memory": memory,
        "queried": queried,
        "queried_mdevs": queried_mdevs,
        "summary": {
            "units": len(real_units),
            "groups": len(groups),
            "devices": len(devices),
            "vfio_pci_devices": sorted(a for a, d in devices.items() if d["driver"] == "vfio-pci"),
            "vfio_devices": sorted(a for a, d in devices.items() if sysfs.is_vfio_bound(d)),
            "default_domain_types": sorted(set(g["type"] for g in groups.values() if g["type"])),
            "mdevs": len(mdevs),
        },
        "findings": findings,
    })


# ---------------------------------------------------------------------------
# Named-device queries (module iommu_hw_info)


def resolve_device(reader, spec):
    """A PCI address, /dev/vfio/devices/vfioN, a sysfs path or an mdev UUID -> (kind, address).

    kind is 'pci', 'mdev' or None (not found; address then holds the reason).
    """
    text = str(spec).strip()
    if text.startswith("/dev/vfio/devices/"):
        name = text.rsplit("/", 1)[1]
        real = reader.realpath("/sys/class/vfio-dev/%s/device" % name)
        if not real or not reader.exists("/sys/class/vfio-dev/%s" % name):
            return None, "%s: no such VFIO cdev (no /sys/class/vfio-dev/%s)" % (text, name)
        text = real
    base = text.rstrip("/").rsplit("/", 1)[-1]
    address = sysfs.normalize_pci_address(base)
    if address:
        if reader.exists("/sys/bus/pci/devices/%s" % address):
            return "pci", address
        return None, "%s: no PCI device %s in /sys/bus/pci/devices" % (spec, address)
    if reader.exists("/sys/bus/mdev/devices/%s" % base):
        return "mdev", base
    return None, "%s: not a PCI address, VFIO cdev, sysfs device path or mdev UUID" % spec


def query_named(specs, in_type=None, check_mode=False, root="/", query=None, mdev_query=None):
    """hw_info and VFIO features for named devices. Returns (results by address, failures).

    A PCI device's result is its hw_info with ``vfio_features`` added; an mdev's is
    its sysfs entry with ``vfio_features`` (mdevs have no hw_info, which is no failure).
    """
    reader = sysfs.SysfsReader(root)
    release = reader.kernel_release()
    devices = reader.pci_devices()
    groups = reader.groups(devices)
    units = reader.units()
    holders = reader.vfio_holders()
    irq = reader.interrupt_remapping()["enabled"]
    results, failures = {}, []
    for spec in specs:
        kind, address = resolve_device(reader, spec)
        if kind is None:
            failures.append({"device": str(spec), "code": "not_found", "message": address,
                             "remedy": "Name the device by PCI address (0000:00:09.0), VFIO cdev "
                                       "(/dev/vfio/devices/vfio0) or sysfs path."})
            continue
        if kind == "mdev":
            mdev = dict(reader.mdevs().get(address, {}))
            mdev["in_use_by"] = _mdev_in_use(mdev, holders)
            result = dict(mdev, source="sysfs", hw_info=None, hw_info_skipped=MDEV_NO_HW_INFO)
            if check_mode:
                result["vfio_features"] = _features_not_read("check mode: device not opened")
            elif not mdev.get("vfio", {}).get("bound") or not mdev.get("vfio_cdev"):
                result["vfio_features"] = _features_not_read("not bound to a VFIO driver with a VFIO cdev")
            elif mdev["in_use_by"]:
                result["vfio_features"] = _features_not_read(
                    "in use by %s: not opened" % ", ".join(mdev["in_use_by"]))
            else:
                result["vfio_features"], error = query_mdev_features(address, mdev, mdev_query)
                if error:
                    failures.append(error)
            results[address] = result
            continue
        dev = _device_view(devices[address], groups, devices, units, holders)
        problem = _unqueryable(dev)
        if problem:
            failures.append(dict(problem, device=address))
            continue
        if check_mode:
            skipped = "check mode: device not opened (opening resets it)"
            results[address] = {"source": "none", "skipped": skipped,
                                "vfio_features": _features_not_read(skipped)}
            continue
        try:
            hw = query_hw_info(dev, query, in_type, irq, release, units)
        except uapi.IommuError as e:
            failures.append(e.as_dict())
            if getattr(e, "features", None):
                results[address] = {"source": "iommufd", "error": e.as_dict(), "vfio_features": e.features}
            continue
        hw["iommu_unit"] = dev["iommu_unit"]
        hw["vfio"] = dev["vfio"]
        results[address] = hw
    return results, failures


def _unqueryable(dev):
    """Why a PCI device cannot be queried through iommufd without harm, or None."""
    if not sysfs.is_vfio_bound(dev):
        return {"code": "not_vfio_pci",
                "message": "device is bound to %s, not to a VFIO driver (vfio-pci or a VFIO variant driver); "
                           "only devices on a VFIO driver have a VFIO cdev." % (dev["driver"] or "no driver"),
                "remedy": "Bind it to vfio-pci (module iommu.host.vfio_pci), or use the sysfs facts "
                          "(module iommu.host.iommu_facts) for its IOMMU unit."}
    if not dev["vfio_cdev"]:
        return {"code": "no_vfio_cdev",
                "message": "device is bound to %s but has no VFIO cdev (vfio-dev/): the kernel "
                           "lacks CONFIG_VFIO_DEVICE_CDEV." % dev["driver"],
                "remedy": "Use a kernel with CONFIG_VFIO_DEVICE_CDEV=y, or the sysfs facts."}
    if dev["in_use_by"]:
        return {"code": "in_use",
                "message": "device is in use by %s; it is not opened, because opening a VFIO device "
                           "resets it." % ", ".join(dev["in_use_by"]),
                "remedy": "Query it when the VM or process using it has stopped."}
    return None
