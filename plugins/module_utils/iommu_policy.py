# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight requirement engine: ``iommu`` facts + requirements -> findings.

Pure functions over the facts built by :mod:`iommu_facts` (schema_version 1).
Nothing here touches a host, so the engine runs on the controller, also over
cached facts. Stdlib only; ``jmespath`` is used for user-defined checks when it
can be imported (it is a controller-side dependency of the collection).

Each check has a stable id, the facts it reads, the rule it mirrors (QEMU or
Linux source, with the QEMU version) and returns one finding per host, per VM
configuration or per assigned device:

    {id, host, device, status, message, evidence, remedy, rule, title, profiles}

``status`` is ``pass``, ``warn``, ``fail`` or ``not_applicable``. ``evidence``
maps fact paths (JMESPath expressions into the ``iommu`` facts) to the values
used, plus ``source`` (where the facts came from) and, for register-derived
values, ``basis``. Messages that describe a refusal by QEMU quote QEMU's own
wording (QEMU master ece408818d, 10.2.50; docs/preflight.md lists each rule).

Entry point: :func:`evaluate`. Nothing in it raises on partial or odd facts;
a missing fact becomes a finding that says what is missing.
"""

from __future__ import absolute_import, division, print_function

import json
import re

from ansible_collections.iommu.host.plugins.module_utils import iommu_sysfs as sysfs

try:
    import jmespath
    HAS_JMESPATH = True
except ImportError:  # pragma: no cover - exercised by monkeypatching HAS_JMESPATH
    jmespath = None
    HAS_JMESPATH = False

__metaclass__ = type

ENGINE_VERSION = 1
FACTS_SCHEMA_VERSION = 1

PASS = "pass"
WARN = "warn"
FAIL = "fail"
NA = "not_applicable"
STATUSES = (PASS, WARN, FAIL, NA)
_RANK = {FAIL: 0, WARN: 1, PASS: 2, NA: 3}
_LABEL = {FAIL: "FAIL", WARN: "WARN", PASS: "PASS", NA: "N/A "}

QEMU_TREE = "QEMU master ece408818d (10.2.50)"
# QEMU releases are compared as (major, minor, micro); "master" is the tree the rules were read from.
QEMU_MASTER = (10, 2, 50)

ALL_VFIO = "all_vfio"

_VENDOR_DEVICE_RE = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{4}|\*)$")
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CUSTOM_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

# hw_info type ids (include/uapi/linux/iommufd.h enum iommu_hw_info_type)
_TYPE_IDS = {"intel_vtd": 1, "arm_smmuv3": 2, "tegra241_cmdqv": 3, "amd": 4}


# ---------------------------------------------------------------------------
# Safe access to facts of any shape


def _dict(value):
    return value if isinstance(value, dict) else {}


def _list(value):
    return list(value) if isinstance(value, (list, tuple)) else []


def _get(obj, *keys):
    """obj[k1][k2]...; None as soon as a level is not a dict or lacks the key."""
    for key in keys:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _int(value):
    """An int from an int or a decimal/0x string; None otherwise (bools are not ints here)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        try:
            return int(text, 16) if text.startswith("0x") else int(text)
        except ValueError:
            return None
    return None


def _flag(value):
    """True/False for a bool or a 0/1 int, None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return None


def _text(value):
    try:
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):  # pragma: no cover - json.dumps with default=str rarely fails
        return repr(value)


def _qkey(key):
    key = str(key)
    return key if _IDENT_RE.match(key) else json.dumps(key)


def path(*keys):
    """A JMESPath expression for a fact: path('devices', '0000:00:09.0', 'driver')."""
    return ".".join(_qkey(k) for k in keys)


def _dev_path(addr, *keys):
    return path("devices", addr, *keys)


# ---------------------------------------------------------------------------
# Parameters (named as QEMU names the device properties, '-' written '_')

PARAMS = {
    "iommufd": {
        "type": "bool", "default": True,
        "qemu": "-object iommufd,id=X + -device vfio-pci,iommufd=X (QEMU >= 9.0)",
        "doc": "The VM uses the iommufd backend. false means the legacy VFIO container (type1): "
               "the iommufd and VFIO cdev checks then do not apply, and neither IOMMU dirty "
               "tracking, x-flts nor arm-smmuv3 accel=on are available."},
    "qemu_version": {
        "type": "version", "default": "master",
        "doc": "QEMU release the VM runs on (e.g. '10.1', '10.2'); 'master' = the 11.0 development "
               "tree the rules were read from. Decides which refusals and wordings apply."},
    "viommu": {
        "type": "str", "default": "auto",
        "choices": ["auto", "none", "intel-iommu", "arm-smmuv3", "amd-iommu"],
        "doc": "vIOMMU of the VM, for the migration rules. auto: taken from the selected profiles "
               "(intel_viommu, smmuv3_accel, amd_viommu), else none."},
    "x_device_dirty_page_tracking": {
        "type": "bool", "default": True, "qemu": "vfio-pci x-device-dirty-page-tracking (on)",
        "doc": "Device (DMA logging) dirty tracking allowed. With a vIOMMU, QEMU master only "
               "migrates when it is off or unsupported by the device."},
    "aw_bits": {"type": "int", "default": 48, "qemu": "intel-iommu aw-bits (48; 39 on machine types <= 9.1)",
                "doc": "Guest IOVA width of the Intel vIOMMU."},
    "caching_mode": {"type": "bool", "default": False, "qemu": "intel-iommu caching-mode (off)",
                     "doc": "Must be on for device assignment (QEMU refuses otherwise)."},
    "x_scalable_mode": {"type": "bool", "default": False, "qemu": "intel-iommu x-scalable-mode (off)",
                        "doc": "Scalable-mode vIOMMU."},
    "x_flts": {"type": "bool", "default": False, "qemu": "intel-iommu x-flts (off)",
               "doc": "First-stage translation for the guest, nested on the host IOMMU (QEMU master)."},
    "fs1gp": {"type": "bool", "default": True, "qemu": "intel-iommu fs1gp (on)",
              "doc": "First-stage 1 GiB pages advertised to the guest (with x-flts)."},
    "x_pasid_mode": {"type": "bool", "default": False, "qemu": "intel-iommu x-pasid-mode (off)",
                     "doc": "PASID support in the Intel vIOMMU (8-bit PSS since QEMU 10.1)."},
    "snoop_control": {"type": "bool", "default": False, "qemu": "intel-iommu snoop-control (off)",
                      "doc": "Snoop control; cannot be used with VFIO."},
    "stage": {"type": "str", "default": "1", "choices": ["1", "2", "nested"],
              "qemu": "arm-smmuv3 stage (1)", "doc": "Translation stage of the vSMMU."},
    "ril": {"type": "bool", "default": True, "qemu": "arm-smmuv3 ril (on)",
            "doc": "Range invalidation advertised to the guest."},
    "ats": {"type": "bool", "default": False, "qemu": "arm-smmuv3 ats (off)",
            "doc": "ATS advertised to the guest; QEMU does not verify host support."},
    "oas": {"type": "int", "default": 44, "qemu": "arm-smmuv3 oas (44)", "doc": "Output address size, 44 or 48."},
    "ssidsize": {"type": "int", "default": 0, "qemu": "arm-smmuv3 ssidsize (0)",
                 "doc": "Substream ID (PASID) bits of the vSMMU, 0..20."},
    "dma_remap": {"type": "bool", "default": False, "qemu": "amd-iommu dma-remap (off)",
                  "doc": "DMA remapping of the AMD vIOMMU; required for VFIO since QEMU 10.2."},
    "pci_id": {"type": "str", "default": "", "qemu": "amd-iommu pci-id (unset)",
               "doc": "Id of a separately created AMDVI-PCI device; makes amd-iommu migratable (QEMU >= 10.1)."},
    "pasid_bits": {"type": "int", "default": 1,
                   "doc": "Minimum PASID width (bits) the device must get from the host."},
    "pasid_exec": {"type": "bool", "default": False, "doc": "The device must have PASID execute permission enabled."},
    "pasid_priv": {"type": "bool", "default": False, "doc": "The device must have PASID privileged mode enabled."},
    "require_ats": {"type": "bool", "default": True, "doc": "The device must be able to use ATS."},
}

_BASE = ("host.iommu_firmware", "host.iommu_enabled", "host.iommu_not_disabled", "host.default_domain",
         "host.iommufd", "host.vfio_cdev", "host.interrupt_remapping",
         "device.vfio_pci", "device.not_in_use", "device.group_viable", "device.hw_info")

_SMMU_IDR_CHECKS = ("viommu.smmuv3.stlevel", "viommu.smmuv3.ttendian", "viommu.smmuv3.ttf",
                    "viommu.smmuv3.sidsize", "viommu.smmuv3.ssidsize", "viommu.smmuv3.ril",
                    "viommu.smmuv3.oas", "viommu.smmuv3.gran4k", "viommu.smmuv3.gran16k",
                    "viommu.smmuv3.gran64k")

PROFILES = {
    "passthrough": {
        "description": "Basic device assignment with VFIO: host IOMMU on, iommufd and the VFIO cdev "
                       "available, interrupt remapping, each device on vfio-pci, idle, in a viable "
                       "group, and its hw_info readable.",
        "checks": _BASE,
        "params": ("iommufd",),
    },
    "live_migration": {
        "description": "passthrough + IOMMU dirty tracking for every assigned device and QEMU's "
                       "vIOMMU migration rules.",
        "checks": _BASE + ("migration.dirty_tracking", "migration.viommu"),
        "params": ("iommufd", "qemu_version", "viommu", "x_device_dirty_page_tracking", "pci_id"),
    },
    "intel_viommu": {
        "description": "passthrough + QEMU intel-iommu with assigned devices: caching-mode, aw-bits "
                       "against the host, x-flts nesting, first-stage 1 GiB pages, PASID.",
        "checks": _BASE + ("viommu.intel.config", "viommu.intel.caching_mode", "viommu.intel.aw_bits",
                           "viommu.intel.x_flts", "viommu.intel.nesting", "viommu.intel.fs1gp",
                           "viommu.intel.pasid"),
        "params": ("iommufd", "qemu_version", "aw_bits", "caching_mode", "x_scalable_mode", "x_flts",
                   "fs1gp", "x_pasid_mode", "snoop_control"),
    },
    "smmuv3_accel": {
        "description": "passthrough + QEMU arm-smmuv3,accel=on: the ten host IDR comparisons of "
                       "smmuv3_accel_check_hw_compatible, nesting and ATS.",
        "checks": _BASE + ("viommu.smmuv3.config", "viommu.smmuv3.hw_info_type") + _SMMU_IDR_CHECKS
        + ("viommu.smmuv3.nesting", "viommu.smmuv3.ats"),
        "params": ("iommufd", "qemu_version", "stage", "ril", "ats", "oas", "ssidsize"),
    },
    "amd_viommu": {
        "description": "passthrough + QEMU amd-iommu with assigned devices (QEMU checks no host "
                       "capability, only dma-remap).",
        "checks": _BASE + ("viommu.amd.dma_remap",),
        "params": ("iommufd", "qemu_version", "dma_remap", "pci_id"),
    },
    "pasid": {
        "description": "passthrough + PASID width and ATS for devices that need them.",
        "checks": _BASE + ("device.pasid", "device.ats"),
        "params": ("iommufd", "pasid_bits", "pasid_exec", "pasid_priv", "require_ats"),
    },
}

_VIOMMU_OF_PROFILE = (("intel_viommu", "intel-iommu"), ("smmuv3_accel", "arm-smmuv3"),
                      ("amd_viommu", "amd-iommu"))

_TRUE = ("on", "true", "yes", "y", "1")
_FALSE = ("off", "false", "no", "n", "0")


def parse_qemu_version(value):
    """'10.2', '10.2.1', 'v10.1.0', 'master' -> (major, minor, micro); None when unparsable."""
    if value is None:
        return QEMU_MASTER
    text = str(value).strip().lower()
    if text in ("", "master", "latest", "git"):
        return QEMU_MASTER
    m = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def _version_text(v):
    if v == QEMU_MASTER:
        return "master (10.2.50)"
    return "%d.%d.%d" % v


def _coerce(name, value):
    """(value, error) for a parameter value, coerced to its declared type."""
    spec = PARAMS[name]
    kind = spec["type"]
    if kind == "bool":
        if isinstance(value, bool):
            return value, None
        if isinstance(value, int) and value in (0, 1):
            return bool(value), None
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE, None
        return None, "%s must be a boolean (on/off, true/false), not %s" % (name, _text(value))
    if kind == "int":
        number = _int(value)
        if number is None:
            return None, "%s must be an integer, not %s" % (name, _text(value))
        return number, None
    if kind == "version":
        if parse_qemu_version(value) is None:
            return None, "%s must be a QEMU release like '10.2' or 'master', not %s" % (name, _text(value))
        return str(value), None
    if value is None:
        value = ""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        return None, "%s must be a string, not %s" % (name, _text(value))
    value = str(value).strip()
    if spec.get("choices") and value not in spec["choices"]:
        return None, "%s must be one of %s, not %s" % (name, ", ".join(spec["choices"]), _text(value))
    return value, None


def resolve_profiles(profiles, params=None):
    """Selected profile names, the merged parameters, and configuration problems.

    ``profiles``: names, or dicts {name: intel_viommu, aw_bits: 39} / {intel_viommu: {aw_bits: 39}}.
    ``params``: flat {aw_bits: 39} and/or per profile {intel_viommu: {aw_bits: 39}}; QEMU's
    spelling with '-' (aw-bits, x-flts) is accepted. Parameters form one namespace: a value
    given for one profile applies wherever that parameter is used.
    Returns (names, values, given, problems).
    """
    names, raw, problems = [], [], []
    if profiles is None:
        profiles = ["passthrough"]
    if isinstance(profiles, (str, dict)):
        profiles = [profiles]
    if not isinstance(profiles, (list, tuple)):
        problems.append("profiles must be a list of names, not %s" % _text(profiles))
        profiles = []
    for item in profiles:
        if isinstance(item, str):
            name, extra = item.strip(), {}
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            name = item["name"].strip()
            extra = dict((k, v) for k, v in item.items() if k != "name")
        elif isinstance(item, dict) and len(item) == 1 and isinstance(list(item.values())[0], (dict, type(None))):
            name, extra = str(list(item.keys())[0]), _dict(list(item.values())[0])
        else:
            problems.append("profile entry %s is not a name or {name: ..., <param>: ...}" % _text(item))
            continue
        if name not in PROFILES:
            problems.append("unknown profile %s (known: %s)" % (_text(name), ", ".join(sorted(PROFILES))))
            continue
        if name not in names:
            names.append(name)
        raw.extend((k, v, name) for k, v in extra.items())
    if params is not None and not isinstance(params, dict):
        problems.append("params must be a dict, not %s" % _text(params))
        params = {}
    for key, value in _dict(params).items():
        if key in PROFILES and isinstance(value, dict):
            raw.extend((k, v, key) for k, v in value.items())
        elif key in PROFILES:
            problems.append("params.%s must be a dict of parameters" % key)
        else:
            raw.append((key, value, None))
    declared = set()
    for name in names:
        declared.update(PROFILES[name]["params"])
    values = dict((k, spec["default"]) for k, spec in PARAMS.items())
    given = {}
    for key, value, origin in raw:
        norm = str(key).strip().replace("-", "_")
        if norm not in PARAMS:
            problems.append("unknown parameter %s%s (known: %s)" % (
                _text(key), " for profile %s" % origin if origin else "", ", ".join(sorted(PARAMS))))
            continue
        if origin and norm not in PROFILES[origin]["params"]:
            problems.append("parameter %s does not belong to profile %s (its parameters: %s)" % (
                norm, origin, ", ".join(PROFILES[origin]["params"])))
            continue
        if norm not in declared:
            problems.append("parameter %s is not used by the selected profiles (%s)" % (
                norm, ", ".join(names) or "none"))
            continue
        coerced, err = _coerce(norm, value)
        if err:
            problems.append(err)
            continue
        values[norm] = coerced
        given[norm] = coerced
    if values["viommu"] == "auto":
        chosen = [v for p, v in _VIOMMU_OF_PROFILE if p in names]
        values["viommu"] = chosen[0] if chosen else "none"
    values["_qemu"] = parse_qemu_version(values["qemu_version"]) or QEMU_MASTER
    return names, values, given, problems


# ---------------------------------------------------------------------------
# Device selection


def select_devices(facts, devices):
    """Resolve device specs against the facts.

    Specs: ``all_vfio`` (every PCI device bound to vfio-pci), a PCI address
    (``0000:01:00.0`` or ``01:00.0``), ``vendor:device`` (``8086:10d3``, ``8086:*``)
    or an mdev UUID. A string may hold several, separated by commas or spaces.
    Returns (pci addresses, mdev uuids, [(spec, problem)], [(spec, matched)]).
    """
    facts = _dict(facts)
    pci_devs = _dict(facts.get("devices"))
    mdevs = _dict(facts.get("mdevs"))
    if devices is None:
        specs = [ALL_VFIO]
    elif isinstance(devices, str):
        specs = [s for s in re.split(r"[\s,]+", devices) if s]
    elif isinstance(devices, (list, tuple)):
        specs = []
        for item in devices:
            if isinstance(item, str):
                specs.extend(s for s in re.split(r"[\s,]+", item) if s)
            else:
                specs.append(item)
    else:
        specs = [devices]
    pci, mdev, problems, matched = [], [], [], []
    for spec in specs:
        if not isinstance(spec, str):
            problems.append((_text(spec), "not a PCI address, vendor:device, mdev UUID or all_vfio"))
            continue
        text = spec.strip().lower()
        found = []
        addr = sysfs.normalize_pci_address(text)
        if text.replace("-", "_") == ALL_VFIO:
            found = [a for a in sorted(pci_devs) if _dict(pci_devs[a]).get("driver") == "vfio-pci"]
            if not found:
                problems.append((spec, "no PCI device is bound to vfio-pci on this host"))
            pci.extend(a for a in found if a not in pci)
        elif addr:
            if addr in pci_devs:
                found = [addr]
                if addr not in pci:
                    pci.append(addr)
            else:
                problems.append((spec, "no PCI device %s on this host" % addr))
        elif _VENDOR_DEVICE_RE.match(text):
            vid, did = _VENDOR_DEVICE_RE.match(text).groups()
            for addr in sorted(pci_devs):
                dev = _dict(pci_devs[addr])
                if _int(dev.get("vendor_id")) == int(vid, 16) and (
                        did == "*" or _int(dev.get("device_id")) == int(did, 16)):
                    found.append(addr)
                    if addr not in pci:
                        pci.append(addr)
            if not found:
                problems.append((spec, "no PCI device with vendor:device %s on this host" % text))
        elif _UUID_RE.match(text):
            if text in mdevs:
                found = [text]
                if text not in mdev:
                    mdev.append(text)
            else:
                problems.append((spec, "no mediated device %s on this host" % text))
        else:
            problems.append((spec, "not a PCI address, vendor:device, mdev UUID or all_vfio"))
        if found:
            matched.append((spec, found))
    return pci, mdev, problems, matched


# ---------------------------------------------------------------------------
# Check registry

CHECKS = {}
_ORDER = []


def _check(check_id, scope, title, reads, rule, mdev=None, host_iommu=False):
    """Register a check. scope: 'host' (once), 'vm' (once, VM configuration), 'device' (per device).

    ``mdev``: for device checks, why the check does not apply to a mediated device.
    ``host_iommu``: a host check about the IOMMU itself; not applicable when only mdevs are assigned.
    """
    def wrap(func):
        CHECKS[check_id] = {"id": check_id, "scope": scope, "title": title, "reads": reads, "rule": rule,
                            "mdev": mdev, "host_iommu": host_iommu, "func": func}
        _ORDER.append(check_id)
        return func
    return wrap


def _r(status, message, evidence=None, source=None, remedy=None, rule=None, basis=None):
    out = {"status": status, "message": message, "evidence": dict(evidence or {}), "remedy": remedy}
    if source:
        out["evidence"]["source"] = source
    if basis:
        out["evidence"]["basis"] = basis
    if rule:
        out["rule"] = rule
    return out


class Context:
    """What the checks see: the facts, the host name, the selection and the parameters."""

    def __init__(self, facts, host, params, pci, mdevs, profiles):
        self.facts = _dict(facts)
        self.host = host
        self.params = params
        self.pci = pci
        self.mdevs = mdevs
        self.profiles = profiles
        self.devices = _dict(self.facts.get("devices"))
        self.units = _dict(self.facts.get("units"))
        self.groups = _dict(self.facts.get("groups"))
        self.kernel = _dict(self.facts.get("kernel"))
        self.cmdline = _dict(self.facts.get("cmdline"))
        self.effects = _dict(self.cmdline.get("effects"))
        self.firmware = _dict(self.facts.get("firmware"))
        self.qemu = params.get("_qemu", QEMU_MASTER)

    @property
    def only_mdevs(self):
        return bool(self.mdevs) and not self.pci

    def dev(self, addr):
        return _dict(self.devices.get(addr))

    def vendors(self):
        return [v for v in _list(self.facts.get("vendors")) if isinstance(v, str)]

    def first_device(self):
        return self.pci[0] if self.pci else (self.mdevs[0] if self.mdevs else "<device>")


def _hw_ok(hw):
    return isinstance(hw, dict) and hw.get("source") == "iommufd" and not hw.get("error")


def _hw_type_id(hw):
    tid = _int(hw.get("type_id"))
    if tid is None:
        tid = _int(_get(hw, "vendor", "type_id"))
    if tid is None and isinstance(hw.get("type"), str):
        tid = _TYPE_IDS.get(hw["type"], 0 if hw["type"] == "none" else None)
    return tid


def vendor_view(ctx, addr):
    """The decoded vendor registers of a device's IOMMU and where they come from.

    iommufd (the device's own IOMMU_GET_HW_INFO answer, ``devices[a].hw_info.vendor``) is
    preferred; otherwise the sysfs registers of its unit (``units[u].decoded``).
    Returns {kind, decoded, basis ('iommufd'|'sysfs'), path, source, unit} or None.
    """
    dev = ctx.dev(addr)
    hw = dev.get("hw_info")
    unit_name = dev.get("iommu_unit")
    if _hw_ok(hw):
        vendor = hw.get("vendor")
        kind = _get(hw, "vendor", "type") or hw.get("type")
        if isinstance(vendor, dict) and kind not in (None, "none", "unknown"):
            return {"kind": kind, "decoded": vendor, "basis": "iommufd", "unit": unit_name,
                    "path": _dev_path(addr, "hw_info", "vendor"),
                    "source": "iommufd: IOMMU_GET_HW_INFO of %s" % addr}
    unit = _dict(ctx.units.get(unit_name)) if isinstance(unit_name, str) else {}
    if unit:
        decoded = unit.get("decoded") if isinstance(unit.get("decoded"), dict) else None
        return {"kind": unit.get("vendor"), "decoded": decoded, "basis": "sysfs", "unit": unit_name,
                "path": path("units", unit_name, "decoded"),
                "source": "sysfs: registers of IOMMU unit %s (%s)" % (
                    unit_name, unit.get("source") or unit.get("sysfs") or "/sys/class/iommu/%s" % unit_name)}
    return None


def _vfield(view, section, field):
    """(value, fact path) of a decoded register field; value None when unknown."""
    if not view or not isinstance(view.get("decoded"), dict):
        return None, None
    sec = view["decoded"].get(section)
    p = "%s.%s.%s" % (view["path"], _qkey(section), _qkey(field))
    if not isinstance(sec, dict) or field not in sec:
        return None, p
    value = sec[field]
    if isinstance(value, bool) or isinstance(value, int):
        return value, p
    return None, p


def _derived_note(view):
    if view and view["basis"] == "sysfs":
        return ("derived per vendor from the sysfs registers of %s (the kernel did not report it "
                "for this device: no IOMMU_GET_HW_INFO answer)" % view["unit"])
    return None


def _intel_scalable_mode(ctx):
    """(True/False/None, evidence): whether the Intel driver runs in scalable mode (intel_iommu_sm)."""
    eff = ctx.effects.get("scalable_mode")
    if isinstance(eff, bool):
        return eff, {"cmdline.effects.scalable_mode": eff}
    cfg = _get(ctx.kernel, "config", "CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON")
    ev = {"kernel.config.CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON": cfg,
          "cmdline.effects.scalable_mode": eff}
    if cfg == "y":
        return True, ev
    if cfg == "n":
        return False, ev
    return None, ev


def _qemu_err(addr, text):
    """QEMU's error as vfio_pci_realize reports it for a vIOMMU refusal (hw/pci/pci.c, hw/vfio/pci.c)."""
    return "vfio %s: Failed to set vIOMMU: %s" % (addr, text)


def _bind_remedy(addr, driver):
    unbind = "echo {a} > /sys/bus/pci/devices/{a}/driver/unbind; " if driver else ""
    return ("Bind it to vfio-pci: 'driverctl set-override {a} vfio-pci', or "
            "'echo vfio-pci > /sys/bus/pci/devices/{a}/driver_override; " + unbind +
            "echo {a} > /sys/bus/pci/drivers_probe' (module iommu.host.vfio_pci does this and keeps it "
            "across reboots).").format(a=addr)


# ---------------------------------------------------------------------------
# Host checks


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
        "iommufd=%d\"", host_iommu=True)
def _host_interrupt_remapping(ctx, params):
    ir = ctx.kernel.get("interrupt_remapping")
    ev = {"kernel.interrupt_remapping.enabled": _get(ir, "enabled"),
          "kernel.interrupt_remapping.evidence": _list(_get(ir, "evidence"))[:6],
          "kernel.allow_unsafe_interrupts": ctx.kernel.get("allow_unsafe_interrupts"),
          "cmdline.effects.intremap_off": ctx.effects.get("intremap_off")}
    source = _get(ir, "source") or "/proc/interrupts"
    qemu = ("iommufd refuses to bind the device (EPERM) and QEMU stops with \"vfio <address>: error bind "
            "device fd=N to iommufd=M\"" if params.get("iommufd", True)
            else "vfio_iommu_type1 refuses to attach the group")
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
    if enabled is True:
        return _r(PASS, "Interrupts are remapped/isolated (%s)." % ", ".join(
            str(e) for e in _list(ir.get("evidence"))[:3]), ev, source)
    unsafe = ctx.kernel.get("allow_unsafe_interrupts") is True or ctx.effects.get("allow_unsafe_interrupts") is True
    if enabled is False and unsafe and params.get("iommufd", True):
        return _r(WARN, "Interrupts are not remapped, but iommufd.allow_unsafe_interrupts=1 lets devices in "
                        "without MSI isolation: a guest can forge interrupts to the host.", ev, source, remedy)
    if enabled is False:
        return _r(FAIL, "Interrupt remapping is off: MSIs are not isolated (/proc/interrupts shows %s, not "
                        "IR-* chips), so %s." % (", ".join(str(e) for e in _list(ir.get("evidence"))[:3])
                                                 or "plain MSI chips", qemu), ev, source, remedy)
    return _r(WARN, "Could not determine whether interrupts are remapped (no MSI or IO-APIC chip in "
                    "/proc/interrupts).", ev, source,
              "Check dmesg for 'Enabled IRQ remapping' (Intel) or 'Interrupt remapping enabled' (AMD).")


# ---------------------------------------------------------------------------
# Device checks

_MDEV_DRIVER = ("mediated device: it is not a PCI function on vfio-pci; QEMU detects it as an mdev "
                "(hw/vfio/pci.c vfio_pci_realize, vfio_device_is_mdev)")
_MDEV_HW_INFO = ("mediated device: QEMU makes no IOMMU_GET_HW_INFO call and allocates no HWPT for mdevs "
                 "(hw/vfio/iommufd.c iommufd_cdev_attach_container: \"mdevs aren't physical devices\")")
_MDEV_VIOMMU = ("mediated device: QEMU creates no HostIOMMUDevice for an mdev, so no vIOMMU host "
                "compatibility check applies (hw/vfio/pci.c:3527, hw/vfio/device.c:421)")
_MDEV_GROUP = "mediated device: its IOMMU group is a software group owned by its parent's driver"


@_check("device.vfio_pci", "device", "Device bound to vfio-pci",
        "devices.<a>.{driver,driver_override}, kernel.vfio_pci.supported",
        "QEMU hw/vfio/iommufd.c iommufd_cdev_getfd(): \"couldn't open directory %s\" when the device has "
        "no vfio-dev/ (not bound to a VFIO driver), QEMU >= 9.0", mdev=_MDEV_DRIVER)
def _device_vfio_pci(ctx, addr, dev, params):
    driver = dev.get("driver")
    ev = {_dev_path(addr, "driver"): driver, _dev_path(addr, "driver_override"): dev.get("driver_override")}
    source = "sysfs /sys/bus/pci/devices/%s/driver" % addr
    if driver == "vfio-pci":
        return _r(PASS, "Bound to vfio-pci%s." % (
            " (cdev %s)" % dev["vfio_cdev"] if isinstance(dev.get("vfio_cdev"), str) else ""), ev, source)
    if "driver" not in dev:
        return _r(FAIL, "Cannot verify: the facts have no driver for this device.", ev, "facts",
                  "Gather the facts again with iommu.host.iommu_facts.")
    extra = ""
    if dev.get("driver_override") == "vfio-pci":
        extra = "; driver_override is already vfio-pci, but the device has not been re-probed"
    if _get(ctx.kernel, "vfio_pci", "supported") is False:
        ev["kernel.vfio_pci.supported"] = False
        extra += "; the kernel has no vfio-pci driver (CONFIG_VFIO_PCI)"
    qemu = "couldn't open directory /sys/bus/pci/devices/%s/vfio-dev" % addr if params.get("iommufd", True) else ""
    return _r(FAIL, "Bound to %s, not vfio-pci%s.%s" % (
        driver or "no driver", extra, " QEMU stops with \"vfio %s: %s\"." % (addr, qemu) if qemu else ""),
        ev, source, _bind_remedy(addr, driver))


@_check("device.not_in_use", "device", "Device not in use",
        "devices.<a>.in_use_by (processes holding /dev/vfio/devices/vfioN or /dev/vfio/<group>)",
        "Linux drivers/vfio: a second open of the group gives EBUSY, a second cdev bind EINVAL; QEMU "
        "hw/vfio/iommufd.c:158 \"error bind device fd=%d to iommufd=%d\"",
        mdev="mediated device: the facts do not track processes holding mdevs")
def _device_not_in_use(ctx, addr, dev, params):
    users = dev.get("in_use_by")
    ev = {_dev_path(addr, "in_use_by"): users}
    source = "/proc/<pid>/fd links to /dev/vfio and /dev/iommu"
    if not isinstance(users, list):
        return _r(FAIL, "Cannot verify: the facts do not say whether a process holds the device "
                        "(in_use_by missing).", ev, "facts", "Gather the facts again with iommu.host.iommu_facts.")
    if users:
        return _r(FAIL, "In use by %s: a VM or process holds its VFIO device node; QEMU cannot bind it "
                        "(\"vfio %s: error bind device fd=N to iommufd=M\")." % (", ".join(str(u) for u in users), addr),
                  ev, source, "Stop the VM or process using it (or assign another device), then run the "
                              "preflight again.")
    return _r(PASS, "No process holds its VFIO device or group node.", ev, source)


@_check("device.group_viable", "device", "IOMMU group viable",
        "devices.<a>.{iommu_group,group_members,group_blockers,group_viable}",
        "Linux drivers/vfio/group.c, Documentation/driver-api/vfio.rst: every other endpoint of the group "
        "bound to vfio-pci or pci-stub (or no driver), bridges excepted; iommufd bind gives EPERM otherwise",
        mdev=_MDEV_GROUP)
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
        return _r(FAIL, "IOMMU group %s is not viable: %s %s bound to host drivers, and a group has a "
                        "single DMA owner." % (gid, ", ".join(blockers) or "other members",
                                               "is" if len(blockers) == 1 else "are"), ev, source,
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
        if dev.get("driver") != "vfio-pci":
            why = "the device is not bound to vfio-pci"
            remedy = "Bind it to vfio-pci (see device.vfio_pci), then gather the facts again."
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


# ---------------------------------------------------------------------------
# Live migration


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


# ---------------------------------------------------------------------------
# Intel vIOMMU (hw/i386/intel_iommu.c, intel_iommu_accel.c)


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


def _onoff(value):
    return "on" if value else "off"


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


# ---------------------------------------------------------------------------
# ARM SMMUv3 accel (hw/arm/smmuv3-accel.c, smmuv3.c)

_OAS_BITS = {0: 32, 1: 36, 2: 40, 3: 42, 4: 44, 5: 48, 6: 52, 7: 56}


@_check("viommu.smmuv3.config", "vm", "arm-smmuv3 accel=on properties valid",
        "params.{stage,oas,ssidsize,iommufd,qemu_version}",
        "QEMU hw/arm/smmuv3.c smmu_validate_property() (line 1937) and hw/arm/smmuv3-accel.c "
        "smmuv3_accel_supports_as() (line 593); accel=on is post-v10.2.0 (79fcbec80a)")
def _smmu_config(ctx, params):
    ev = dict(("params.%s" % k, params.get(k)) for k in ("stage", "oas", "ssidsize", "iommufd", "qemu_version"))
    problems = []
    if ctx.qemu < QEMU_MASTER:
        problems.append("arm-smmuv3 accel=on does not exist in QEMU %s (added after 10.2, 79fcbec80a)"
                        % _version_text(ctx.qemu))
    if str(params.get("stage")) != "1":
        problems.append("\"Only stage1 is supported for SMMUv3 with accel=on\"")
    if params.get("oas") not in (44, 48):
        problems.append("\"OAS can only be set to 44 or 48 bits\"")
    ssid = params.get("ssidsize")
    if not isinstance(ssid, int) or not 0 <= ssid <= 20:
        problems.append("\"ssidsize must be in the range 0 to 20\"")
    if not params.get("iommufd", True):
        problems.append("\"vfio-pci endpoint devices without an iommufd backend not allowed when using "
                        "arm-smmuv3,accel=on\"")
    if problems:
        return _r(FAIL, "QEMU rejects this arm-smmuv3,accel=on configuration: %s." % "; ".join(problems), ev,
                  "preflight parameters", "Use QEMU master (11.0), stage=1, oas=44 or 48, ssidsize 0..20, and "
                                          "vfio-pci with iommufd=.")
    return _r(PASS, "arm-smmuv3,accel=on properties are valid: stage=1, oas=%s, ssidsize=%s, ril=%s, ats=%s." % (
        params.get("oas"), ssid, _onoff(params.get("ril")), _onoff(params.get("ats"))), ev, "preflight parameters")


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
            "ad32238ad2)" % rule_row, mdev=_MDEV_VIOMMU)
    def run(ctx, addr, dev, params):
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
        ok, qemu_value, message, remedy = compare(host, params)
        ev = {p: host, "QEMU value": qemu_value}
        source = "iommufd: IOMMU_GET_HW_INFO of %s" % addr
        if ok:
            return _r(PASS, "Host %s.%s=%s is compatible (QEMU %s)." % (reg.upper(), field.upper(), host, qemu_value),
                      ev, source)
        return _r(FAIL, "QEMU refuses the device: \"%s\"." % _qemu_err(addr, message), ev, source, remedy)
    return run


def _cmp_stlevel(host, params):
    return (host == 1, 1, "Host SMMUv3 Stream Table format mismatch (host STLEVEL=%u, QEMU STLEVEL=%u)" % (host, 1),
            "The host SMMUv3 must have a 2-level stream table (IDR0.ST_LEVEL=1); accel=on cannot be used here.")


def _cmp_ttendian(host, params):
    return (host <= 2, 2, "Host SMMUv3 doesn't support Little-endian translation table",
            "accel=on needs a host SMMUv3 that walks little-endian tables (IDR0.TTENDIAN 0 or 2).")


def _cmp_ttf(host, params):
    return (host >= 2, 2, "Host SMMUv3 doesn't support AArch64 translation table format",
            "accel=on needs AArch64 table format on the host SMMUv3 (IDR0.TTF 2 or 3).")


def _cmp_sidsize(host, params):
    return (host >= 16, 16, "Host SMMUv3 SIDSIZE not compatible (host=%u, QEMU=%u)" % (host, 16),
            "accel=on needs a host SMMUv3 with 16-bit stream IDs (IDR1.SIDSIZE >= 16).")


def _cmp_ssidsize(host, params):
    want = params.get("ssidsize") or 0
    return (host >= want, want, "Host SMMUv3 SSIDSIZE not compatible (host=%u, QEMU=%u)" % (host, want),
            "Set ssidsize=%d or lower on arm-smmuv3." % host)


def _cmp_ril(host, params):
    want = 1 if params.get("ril", True) else 0
    return (host >= want, want, "Host SMMUv3 doesn't support Range Invalidation",
            "Set ril=off on arm-smmuv3.")


def _cmp_oas(host, params):
    want = 5 if params.get("oas") == 48 else 4
    return (host >= want, want, "Host SMMUv3 supports only %d-bit IPA, but the vSMMU OAS implies %d-bit IPA" % (
        _OAS_BITS.get(host, 0), _OAS_BITS[want]),
        "Set oas=44 on arm-smmuv3%s." % (" (the host's OAS is below 44 bits: accel=on cannot be used)"
                                         if host < 4 else ""))


def _cmp_gran(size):
    def cmp(host, params):
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


@_check("viommu.smmuv3.nesting", "device", "Host SMMUv3 can nest (stage 1 + stage 2)",
        "devices.<a>.hw_info.vendor.idr0.{s1p,s2p}, devices.<a>.hw_info.vendor.derived.nesting",
        "kernel drivers/iommu/arm/arm-smmu-v3: ARM_SMMU_FEAT_NESTING = S1P && S2P (arm-smmu-v3.c:5255-5257, minus "
        "errata); QEMU does not check it: smmuv3_accel_get_viommu_flags() comment \"the nesting parent allocation "
        "will fail anyway in VFIO core\"", mdev=_MDEV_VIOMMU)
def _smmu_nesting(ctx, addr, dev, params):
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
    return _r(PASS, "The host SMMUv3 has both translation stages (S1P, S2P): it can be a nesting parent.", ev, source)


@_check("viommu.smmuv3.ats", "device", "ATS usable when arm-smmuv3 ats=on",
        "params.ats; devices.<a>.hw_info.vendor.idr0.ats, devices.<a>.hw_info.capabilities.ats_not_supported",
        "QEMU hw/arm/smmuv3.c ats property (f7f5013a55, master): \"Please ensure host platform has ATS support "
        "before enabling this\" - QEMU does not verify it; kernel IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED (Linux 7.1)",
        mdev=_MDEV_VIOMMU)
def _smmu_ats(ctx, addr, dev, params):
    ev = {"params.ats": params.get("ats")}
    if not params.get("ats"):
        return _r(NA, "ats=off: the vSMMU advertises no ATS.", ev, "preflight parameters")
    vendor = _smmu_hw(ctx, addr)
    if vendor is None:
        return _r(NA, "Not evaluated: no host SMMUv3 ID registers for %s (see viommu.smmuv3.hw_info_type)." % addr,
                  ev, "facts")
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


# ---------------------------------------------------------------------------
# AMD vIOMMU (hw/i386/amd_iommu.c)


@_check("viommu.amd.dma_remap", "vm", "amd-iommu dma-remap=on for VFIO",
        "params.{dma_remap,qemu_version}",
        "QEMU hw/i386/amd_iommu.c amdvi_iommu_notify_flag_changed(): v10.2.0+ (7e24cddf1f) \"device %02x.%02x.%x "
        "requires dma-remap=1\"; v10.1 and earlier \"device %02x.%02x.%x requires iommu notifier which is not "
        "currently supported\"; QEMU applies no host-capability check for amd-iommu")
def _amd_dma_remap(ctx, params):
    ev = {"params.dma_remap": params.get("dma_remap"), "params.qemu_version": params.get("qemu_version")}
    if ctx.qemu < (10, 2, 0):
        return _r(FAIL, "QEMU %s cannot put VFIO devices behind amd-iommu: \"device BB.DD.F requires iommu notifier "
                        "which is not currently supported\" (BB.DD.F = the device's guest address)."
                  % _version_text(ctx.qemu), ev, "preflight parameters",
                  "Use QEMU >= 10.2 with amd-iommu,dma-remap=on, or intel-iommu.")
    if not params.get("dma_remap"):
        return _r(FAIL, "dma-remap is off; QEMU refuses VFIO devices behind amd-iommu: \"device BB.DD.F requires "
                        "dma-remap=1\" (BB.DD.F = the device's guest address).", ev, "preflight parameters",
                  "Add dma-remap=on to -device amd-iommu.")
    return _r(PASS, "dma-remap=on, as VFIO behind amd-iommu requires (QEMU checks no host AMD-Vi capability).", ev,
              "preflight parameters")


# ---------------------------------------------------------------------------
# PASID / ATS per device


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
                          "Use Linux >= 6.15.")
            return _r(FAIL, "The device gets no PASID (max_pasid_log2 0: no enabled PCI PASID capability, or its IOMMU "
                            "has no PASID support); QEMU synthesizes no PASID capability for it.", ev, source,
                      "Assign a device with a PASID capability on an IOMMU with PASID support (Intel: scalable "
                      "mode; AMD: EFR.GTSup/PASmax; Arm: IDR1.SSIDSIZE).")
        if log2 < want:
            return _r(FAIL, "The device gets %d-bit PASIDs, fewer than the %d required." % (log2, want), ev, source,
                      "Assign a device (and IOMMU) with at least %d PASID bits, or lower pasid_bits." % want)
        missing = []
        for name in ("pasid_exec", "pasid_priv"):
            ev[_dev_path(addr, "hw_info", "capabilities", name)] = caps.get(name)
            if params.get(name) and caps.get(name) is not True:
                missing.append(name.replace("pasid_", "").replace("exec", "execute permission").replace(
                    "priv", "privileged mode"))
        if missing:
            return _r(FAIL, "The device's PASID capability lacks %s (IOMMU_HW_CAP_PCI_PASID_EXEC/PRIV, from its PASID "
                            "control register)." % " and ".join(missing), ev, source,
                      "Assign a device whose PASID capability enables %s." % " and ".join(missing))
        return _r(PASS, "The device gets %d-bit PASIDs (max_pasid_log2 %d, at least %d required)." % (log2, log2, want),
                  ev, source)
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
                  basis=basis)
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
                                  "(Intel ECAP.DT, AMD IOTLB, Arm IDR0.ATS + IORT).")
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
                  "Enable the IOMMU and gather the facts again.")
    bit, p = None, None
    if view["kind"] == "intel_vtd":
        bit, p = _vfield(view, "ecap", "dev_iotlb_support")
    elif view["kind"] == "arm_smmuv3":
        bit, p = _vfield(view, "idr0", "ats")
    if p:
        ev[p] = bit
    if bit is False or bit == 0:
        return _r(FAIL, "The device's IOMMU (%s) has no device-TLB/ATS support (derived from its registers)."
                  % view["unit"], ev, view["source"], "Use an IOMMU with ATS support.", basis=basis)
    return _r(WARN, "Unknown whether ATS is usable on %s: %s; only the kernel's per-device answer (hw_info, Linux "
                    ">= 7.1) covers the device and root port." % (
                        addr, "its IOMMU allows ATS (derived)" if bit else "no per-vendor rule for %s" % view["kind"]),
              ev, view["source"], "Gather facts without sysfs_only on Linux >= 7.1.", basis=basis)


# ---------------------------------------------------------------------------
# User-defined checks (JMESPath)

_OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "contains", "truthy", "falsy")


def _compare(op, actual, expected):
    if op == "eq":
        return actual == expected
    if op == "ne":
        return actual != expected
    if op == "truthy":
        return bool(actual)
    if op == "falsy":
        return not actual
    if op in ("in", "not_in"):
        if isinstance(expected, str):
            found = isinstance(actual, str) and actual in expected
        elif isinstance(expected, (list, tuple, dict)):
            found = actual in expected
        else:
            raise TypeError("%s needs a list or a string as expected value, not %s" % (op, _text(expected)))
        return found if op == "in" else not found
    if op == "contains":
        if isinstance(actual, str) and isinstance(expected, str):
            return expected in actual
        return isinstance(actual, (list, tuple, dict)) and expected in actual
    if isinstance(actual, bool) or isinstance(expected, bool) or not (
            isinstance(actual, (int, float)) and isinstance(expected, (int, float))) and not (
            isinstance(actual, str) and isinstance(expected, str)):
        raise TypeError("cannot compare %s with %s using %s" % (_text(actual), _text(expected), op))
    return {"lt": actual < expected, "le": actual <= expected, "gt": actual > expected, "ge": actual >= expected}[op]


def _custom_finding(spec, host, device, status, message, evidence, remedy):
    name = spec.get("name") if isinstance(spec, dict) else None
    if not isinstance(name, str) or not _CUSTOM_NAME_RE.match(name):
        name = "invalid"
    return {"id": "custom.%s" % name, "host": host, "device": device, "status": status, "message": message,
            "evidence": evidence, "remedy": remedy,
            "rule": "user-defined: JMESPath %s" % _text(_get(spec, "expression")),
            "title": (_get(spec, "title") if isinstance(_get(spec, "title"), str) else None) or "custom check %s" % name,
            "profiles": ["custom"]}


def evaluate_custom(spec, facts, host, pci):
    """Findings of one user-defined check.

    spec: {name, expression, expected?, operator? (eq when expected is set and not null, else truthy;
    to compare with null, give operator eq explicitly),
    scope? (host: the expression runs on the iommu facts; device: on each selected device's facts,
    with 'address' added), severity? (fail|warn), message?, remedy?, title?}
    """
    if not isinstance(spec, dict):
        return [_custom_finding({}, host, None, FAIL, "Custom check %s is not a dict." % _text(spec), {}, None)]
    problems = []
    name = spec.get("name")
    if not isinstance(name, str) or not _CUSTOM_NAME_RE.match(name):
        problems.append("name must match %s" % _CUSTOM_NAME_RE.pattern)
    expr = spec.get("expression")
    if not isinstance(expr, str) or not expr.strip():
        problems.append("expression must be a non-empty JMESPath string")
    has_expected = spec.get("expected") is not None
    op = spec.get("operator") or ("eq" if has_expected else "truthy")
    if op not in _OPERATORS:
        problems.append("operator must be one of %s" % ", ".join(_OPERATORS))
    severity = spec.get("severity") or FAIL
    if severity not in (FAIL, WARN):
        problems.append("severity must be fail or warn")
        severity = FAIL
    scope = spec.get("scope") or "host"
    if scope not in ("host", "device"):
        problems.append("scope must be host or device")
    remedy = spec.get("remedy") if isinstance(spec.get("remedy"), str) else None
    if problems:
        return [_custom_finding(spec, host, None, FAIL, "Invalid custom check: %s." % "; ".join(problems),
                                {"check": _text(spec)}, "Fix the check definition.")]
    if not HAS_JMESPATH:
        return [_custom_finding(spec, host, None, severity, "Not evaluated: the Python library jmespath is not "
                                "installed on the controller.", {"expression": expr},
                                "Install jmespath on the controller (pip install jmespath).")]
    try:
        compiled = jmespath.compile(expr)
    except Exception as e:  # jmespath raises its own ParseError/LexerError hierarchy
        return [_custom_finding(spec, host, None, FAIL, "Invalid JMESPath expression %s: %s" % (_text(expr), e),
                                {"expression": expr}, "Fix the expression (https://jmespath.org).")]
    targets = [(None, _dict(facts))] if scope == "host" else [
        (a, dict(_dict(_dict(_dict(facts).get("devices")).get(a)), address=a)) for a in pci]
    if not targets:
        return [_custom_finding(spec, host, None, NA, "No device is selected for this device-scope check.",
                                {"expression": expr}, None)]
    out = []
    for addr, data in targets:
        ev = {"expression": expr, "operator": op, "source": "user-defined JMESPath over the iommu facts"
              + (" of device %s" % addr if addr else "")}
        if has_expected or op not in ("truthy", "falsy"):
            ev["expected"] = spec.get("expected")
        try:
            actual = compiled.search(data)
            ev["actual"] = actual
            ok = _compare(op, actual, spec.get("expected"))
        except Exception as e:
            out.append(_custom_finding(spec, host, addr, severity, "Could not evaluate %s: %s" % (expr, e), ev, remedy))
            continue
        message = spec.get("message") if isinstance(spec.get("message"), str) else None
        default = "%s -> %s%s" % (expr, _text(actual), " (%s)" % op if op in ("truthy", "falsy")
                                  else " (%s %s)" % (op, _text(spec.get("expected"))))
        if ok:
            out.append(_custom_finding(spec, host, addr, PASS, "%s: %s" % (message, default) if message else default,
                                       ev, None))
        else:
            text = "%s: %s" % (message or "Requirement not met", default)
            out.append(_custom_finding(spec, host, addr, severity, text, ev, remedy))
    return out


# ---------------------------------------------------------------------------
# Evaluation


_FACT_KEYS = ("schema_version", "devices", "kernel", "units", "groups", "present", "cmdline", "firmware", "mdevs")


def unwrap_facts(data):
    """The iommu facts from ansible_facts (with 'iommu'), hostvars-like dicts or the iommu dict itself."""
    if not isinstance(data, dict):
        return None
    if any(key in data for key in _FACT_KEYS):
        return data
    for key in ("iommu", "ansible_iommu"):
        if isinstance(data.get(key), dict):
            return data[key]
    if isinstance(data.get("ansible_facts"), dict):
        return unwrap_facts(data["ansible_facts"])
    return None


def _safe(func, *args):
    try:
        res = func(*args)
    except Exception as e:  # a check must never break the gate; report the bug as a failure
        return _r(FAIL, "Internal error evaluating this check: %s: %s" % (type(e).__name__, e), {}, "iommu.host",
                  "Report this bug to the iommu.host maintainers, with the facts.")
    if not isinstance(res, dict) or res.get("status") not in STATUSES:
        return _r(FAIL, "Internal error: the check returned %s." % _text(res), {}, "iommu.host", None)
    return res


def _finish(chk, ctx, res, device, profiles):
    return {"id": chk["id"], "host": ctx.host, "device": device, "status": res["status"],
            "message": res["message"], "evidence": res.get("evidence") or {},
            "remedy": res.get("remedy") if res["status"] in (FAIL, WARN) else None,
            "rule": res.get("rule") or chk["rule"], "title": chk["title"], "profiles": profiles}


def _meta(check_id, host, status, message, evidence, remedy, rule, title):
    return {"id": check_id, "host": host, "device": None, "status": status, "message": message,
            "evidence": evidence, "remedy": remedy if status in (FAIL, WARN) else None, "rule": rule,
            "title": title, "profiles": []}


def evaluate(facts, profiles=None, devices=None, host=None, custom=None, params=None):
    """Evaluate the selected profiles (and custom checks) for the selected devices.

    facts: the ``iommu`` facts (or ansible_facts holding them); profiles: names or dicts
    (default [passthrough]); devices: 'all_vfio' (default), PCI addresses, vendor:device or mdev
    UUIDs; custom: user-defined checks (see evaluate_custom); params: profile parameters.
    Returns {host, status, findings, summary, failed, counts, selected, profiles, params, ...};
    findings are sorted failures first. Never raises.
    """
    try:
        return _evaluate(facts, profiles, devices, host, custom, params)
    except Exception as e:  # pragma: no cover - last line of defence
        finding = _meta("engine.error", host, FAIL, "Internal error in the preflight engine: %s: %s" % (
            type(e).__name__, e), {}, "Report this bug to the iommu.host maintainers.", "iommu.host", "engine")
        return _result(host, [finding], [], [], [], {}, {}, None)


def _evaluate(facts, profiles, devices, host, custom, params):
    host = str(host) if host is not None else "localhost"
    iommu = unwrap_facts(facts)
    findings = []
    names, values, given, problems = resolve_profiles(profiles, params)
    rule_cfg = "iommu.host preflight profiles (docs/preflight.md)"
    if problems:
        findings.append(_meta("config.profiles", host, FAIL, "Invalid preflight configuration: %s." % "; ".join(problems),
                              {"profiles": _text(profiles), "params": _text(params)},
                              "Fix the profiles/params (docs/preflight.md lists them).", rule_cfg,
                              "Profiles and parameters valid"))
    if not isinstance(iommu, dict) or not iommu:
        findings.append(_meta("facts.iommu", host, FAIL, "No iommu facts for this host: nothing can be checked.",
                              {"iommu": _text(iommu) if iommu is not None else None},
                              "Gather them with iommu.host.iommu_facts (the preflight role does this).",
                              "iommu.host facts schema", "IOMMU facts present"))
        return _result(host, findings, names, [], [], values, given, None)
    schema = iommu.get("schema_version")
    if schema != FACTS_SCHEMA_VERSION:
        findings.append(_meta("facts.iommu", host, WARN,
                              "The facts have schema_version %s; this engine reads version %d: checks may "
                              "miss facts." % (_text(schema), FACTS_SCHEMA_VERSION), {"schema_version": schema},
                              "Gather the facts again with this collection's iommu.host.iommu_facts.",
                              "iommu.host facts schema", "IOMMU facts present"))
    pci, mdevs, sel_problems, matched = select_devices(iommu, devices)
    device_level = bool(names)
    ctx = Context(iommu, host, values, pci, mdevs, names)

    sel_ev = {"devices": _text(devices if devices is not None else ALL_VFIO), "selected": pci + mdevs,
              "source": "devices, mdevs, summary.vfio_pci_devices"}
    rule_sel = "iommu.host preflight device selection (PCI address, vendor:device, mdev UUID, all_vfio)"
    if not device_level:
        findings.append(_meta("selection.devices", host, NA, "No device-level profile is selected.", sel_ev, None,
                              rule_sel, "Devices to gate selected"))
    elif not pci and not mdevs:
        findings.append(_meta("selection.devices", host, FAIL, "No device selected, so there is nothing to gate: %s." %
                              "; ".join("%s: %s" % (s, p) for s, p in sel_problems) if sel_problems else
                              "No device selected, so there is nothing to gate.", sel_ev,
                              "Bind the devices the VM will use to vfio-pci, or name them (PCI address, vendor:device) "
                              "in iommu_preflight_devices.", rule_sel, "Devices to gate selected"))
    elif sel_problems:
        findings.append(_meta("selection.devices", host, FAIL, "Selected %s, but %s." % (
            ", ".join(pci + mdevs), "; ".join("%s: %s" % (s, p) for s, p in sel_problems)), sel_ev,
            "Name only devices present on this host.", rule_sel, "Devices to gate selected"))
    else:
        findings.append(_meta("selection.devices", host, PASS, "Selected %s (%s)." % (
            ", ".join(pci + mdevs), "; ".join("%s -> %s" % (s, ", ".join(f)) for s, f in matched)), sel_ev, None,
            rule_sel, "Devices to gate selected"))

    check_ids, owners = [], {}
    for name in names:
        for cid in PROFILES[name]["checks"]:
            if cid not in owners:
                check_ids.append(cid)
                owners[cid] = []
            owners[cid].append(name)
    for cid in check_ids:
        chk = CHECKS[cid]
        profs = owners[cid]
        if chk["scope"] == "host":
            if chk["host_iommu"] and ctx.only_mdevs:
                res = _r(NA, "Only mediated devices are assigned; they do not use the host IOMMU directly.",
                         {"selected mdevs": mdevs}, "device selection")
            else:
                res = _safe(chk["func"], ctx, values)
            findings.append(_finish(chk, ctx, res, None, profs))
        elif chk["scope"] == "vm":
            if not pci and not mdevs:
                res = _r(NA, "No device selected (see selection.devices).", {}, "device selection")
            else:
                res = _safe(chk["func"], ctx, values)
            findings.append(_finish(chk, ctx, res, None, profs))
        else:
            if not pci and not mdevs:
                findings.append(_finish(chk, ctx, _r(NA, "No device selected (see selection.devices).", {},
                                                     "device selection"), None, profs))
            for addr in pci:
                res = _safe(chk["func"], ctx, addr, ctx.dev(addr), values)
                findings.append(_finish(chk, ctx, res, addr, profs))
            for uuid in mdevs:
                res = _r(NA, "Not applicable: %s." % chk["mdev"], {path("mdevs", uuid, "has_iommu"): _get(
                    iommu, "mdevs", uuid, "has_iommu"), path("mdevs", uuid, "parent"): _get(iommu, "mdevs", uuid, "parent")},
                    "sysfs /sys/bus/mdev/devices")
                findings.append(_finish(chk, ctx, res, uuid, profs))
    if custom is not None and not isinstance(custom, (list, tuple)):
        custom = [custom]
    for spec in custom or []:
        try:
            findings.extend(evaluate_custom(spec, iommu, host, pci))
        except Exception as e:  # pragma: no cover - evaluate_custom guards itself
            findings.append(_custom_finding(spec if isinstance(spec, dict) else {}, host, None, FAIL,
                                            "Internal error: %s" % e, {}, None))
    return _result(host, findings, names, pci, mdevs, values, given, iommu)


def _result(host, findings, names, pci, mdevs, values, given, iommu):
    order = dict((cid, i) for i, cid in enumerate(_ORDER))
    findings = sorted(findings, key=lambda f: (_RANK.get(f["status"], 9), order.get(f["id"], -1 if not str(
        f["id"]).startswith("custom.") else len(order)), str(f.get("device") or "")))
    counts = dict((s, sum(1 for f in findings if f["status"] == s)) for s in STATUSES)
    status = FAIL if counts[FAIL] else (WARN if counts[WARN] else PASS)
    public = dict((k, v) for k, v in values.items() if not k.startswith("_"))
    result = {
        "engine_version": ENGINE_VERSION,
        "host": host,
        "status": status,
        "counts": counts,
        "profiles": list(names),
        "params": public,
        "params_given": dict(given),
        "selected": {"pci": list(pci), "mdev": list(mdevs)},
        "facts_mode": _get(iommu, "mode") if isinstance(iommu, dict) else None,
        "findings": findings,
    }
    result["summary"] = summary_lines(result)
    result["failed"] = [_line(f) for f in findings if f["status"] == FAIL]
    return result


def _line(f):
    where = " [%s]" % f["device"] if f.get("device") else ""
    text = "%s %s%s: %s" % (_LABEL.get(f["status"], f["status"]), f["id"], where, f["message"])
    if f.get("remedy") and f["status"] in (FAIL, WARN):
        text += " Fix: %s" % f["remedy"]
    return text


def summary_lines(result):
    """One header line, then one line per finding (failures first)."""
    c = result["counts"]
    selected = result["selected"]["pci"] + result["selected"]["mdev"]
    head = "%s: %s - %d failed, %d warning(s), %d passed, %d not applicable (profiles: %s; devices: %s%s)" % (
        result["host"], result["status"].upper(), c[FAIL], c[WARN], c[PASS], c[NA],
        ", ".join(result["profiles"]) or "none", ", ".join(selected) or "none",
        "; facts: %s" % result["facts_mode"] if result.get("facts_mode") else "")
    return [head] + [_line(f) for f in result["findings"]]


def catalogue():
    """Every check: id, scope, title, reads, rule and the profiles using it (for docs and tests)."""
    out = []
    for cid in _ORDER:
        chk = CHECKS[cid]
        out.append({"id": cid, "scope": chk["scope"], "title": chk["title"], "reads": chk["reads"],
                    "rule": chk["rule"], "profiles": [p for p in sorted(PROFILES) if cid in PROFILES[p]["checks"]]})
    return out
