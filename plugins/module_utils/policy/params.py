# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight parameters and profiles: what the user may ask for, validated and merged.

``PARAMS`` are named as QEMU names the device properties ('-' written '_'), with QEMU's defaults;
``PROFILES`` group the check ids of a use case (passthrough, live_migration, intel_viommu,
smmuv3_accel, amd_viommu, pasid) and declare the parameters each one reads.
``resolve_profiles`` turns the user's profiles/params into (names, values, given, problems);
``parse_qemu_version`` reads the QEMU release the rules are asked for (``QEMU_MASTER`` is the
tree the rules were read from, ``QEMU_TREE``).
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.policy import releases
from ansible_collections.iommu.host.plugins.module_utils.policy.facts import _dict, _int, _text

__metaclass__ = type


QEMU_TREE = "QEMU %s (rules verified for %s)" % (
    releases.DEFAULT_VERSION, ", ".join("%d.%d" % v for v in sorted(releases.VERIFIED)))
# The release asked for when none is given: the newest the rules were verified against.
QEMU_DEFAULT = releases.NEWEST + (0,)
QEMU_MASTER = QEMU_DEFAULT  # kept for callers of the 0.1 API; 'master' now means the newest rules


PARAMS = {
    "iommufd": {
        "type": "bool", "default": True,
        "qemu": "-object iommufd,id=X + -device vfio-pci,iommufd=X (QEMU >= 9.0)",
        "doc": "The VM uses the iommufd backend. false means the legacy VFIO container (type1): "
               "the iommufd and VFIO cdev checks then do not apply, and neither IOMMU dirty "
               "tracking, x-flts nor arm-smmuv3 accel=on are available."},
    "qemu_version": {
        "type": "version", "default": releases.DEFAULT_VERSION,
        "doc": "QEMU release the VM runs on ('10.0' .. '11.1', or '10.0.13'); decides which refusals, property "
               "names and wordings apply. Default: the newest release the rules were verified for. A newer "
               "release (or 'master') gets the newest rules and a warning; an older one the oldest rules and a "
               "warning."},
    "viommu": {
        "type": "str", "default": "auto",
        "choices": ["auto", "none", "intel-iommu", "arm-smmuv3", "amd-iommu", "virtio-iommu"],
        "doc": "vIOMMU of the VM, for the migration rules. auto: taken from the selected profiles "
               "(intel_viommu, smmuv3_accel, amd_viommu, virtio_viommu), else none."},
    "enable_migration": {
        "type": "str", "default": "auto", "choices": ["auto", "on", "off"],
        "qemu": "vfio-pci enable-migration (auto)",
        "doc": "auto: a device that cannot migrate gets a migration blocker; on: it is refused when the VM "
               "starts, and missing dirty tracking is only a warning; off: every device blocks migration."},
    "vfio_ats": {
        "type": "str", "default": "auto", "choices": ["auto", "on", "off"],
        "qemu": "vfio-pci ats (11.1+) (auto)",
        "doc": "vfio-pci's ats property (QEMU 11.1+; QEMU 10.0-11.0 have none and refuse it): whether the guest sees "
               "the device's ATS extended capability. auto masks it when the kernel reports ATS unusable "
               "(iommufd hw_info ATS_NOT_SUPPORTED); on refuses the device then; off always masks it."},
    "x_device_dirty_page_tracking": {
        "type": "bool", "default": True, "qemu": "vfio-pci x-device-dirty-page-tracking (on)",
        "doc": "Device (DMA logging) dirty tracking allowed. With a vIOMMU, QEMU 11.0+ only migrates "
               "when it is off or unsupported by the device (then IOMMU dirty tracking is used)."},
    "aw_bits": {"type": "int", "default": 48, "qemu": "intel-iommu aw-bits (48; 39 on machine types <= 9.1)",
                "doc": "Guest IOVA width of the Intel vIOMMU."},
    "caching_mode": {"type": "bool", "default": False, "qemu": "intel-iommu caching-mode (off)",
                     "doc": "Must be on for device assignment (QEMU refuses otherwise)."},
    "scalable_mode": {"type": "bool", "default": False,
                      "qemu": "intel-iommu scalable-mode (11.1+; x-scalable-mode before) (off)",
                      "doc": "Scalable-mode vIOMMU. x_scalable_mode is the spelling of QEMU 10.0-11.0."},
    "x_scalable_mode": {"type": "bool", "default": False, "qemu": "intel-iommu x-scalable-mode (10.0-11.0) (off)",
                        "doc": "Scalable-mode vIOMMU, QEMU 10.0-11.0 spelling of scalable_mode."},
    "fsts": {"type": "bool", "default": False, "qemu": "intel-iommu fsts (11.1+; x-flts before) (off)",
             "doc": "First-stage translation for the guest, nested on the host IOMMU (with assigned devices "
                    "since QEMU 11.0). x_flts is the spelling of QEMU 10.0-11.0."},
    "x_flts": {"type": "bool", "default": False, "qemu": "intel-iommu x-flts (10.0-11.0) (off)",
               "doc": "QEMU 10.0-11.0 spelling of fsts."},
    "svm": {"type": "bool", "default": False, "qemu": "intel-iommu svm (11.0+) (off)",
            "doc": "Shared virtual memory for the guest: needs fsts, device-iotlb, dma-translation and PASID."},
    "device_iotlb": {"type": "bool", "default": False, "qemu": "intel-iommu/amd-iommu device-iotlb (off)",
                     "doc": "Device IOTLB (ATS) in the vIOMMU."},
    "dma_translation": {"type": "bool", "default": True, "qemu": "x86-iommu dma-translation (on)",
                        "doc": "DMA translation of the x86 vIOMMU."},
    "fs1gp": {"type": "bool", "default": True, "qemu": "intel-iommu fs1gp (on)",
              "doc": "First-stage 1 GiB pages advertised to the guest (with x-flts)."},
    "x_pasid_mode": {"type": "bool", "default": False, "qemu": "intel-iommu x-pasid-mode (10.0-11.0) (off)",
                     "doc": "PASID support in the Intel vIOMMU (ECAP.PSS 7, 8-bit PASIDs, since QEMU 10.1; "
                            "PSS 0 in 10.0). QEMU 11.1 replaced it with pasid-bits (pasid_bits)."},
    "snoop_control": {"type": "bool", "default": False, "qemu": "intel-iommu snoop-control (off)",
                      "doc": "Snoop control; cannot be used with VFIO."},
    "accel": {"type": "bool", "default": True, "qemu": "arm-smmuv3 accel (11.0+) (off in QEMU; on in this profile)",
              "doc": "Accelerated vSMMU nested on the host SMMUv3. Without it QEMU's emulated SMMUv3 refuses "
                     "VFIO devices."},
    "stage": {"type": "str", "default": "1", "choices": ["1", "2", "nested"],
              "qemu": "arm-smmuv3 stage (1)", "doc": "Translation stage of the vSMMU."},
    # arm-smmuv3 accel properties: bool/uint in QEMU 11.0 (ril on, ats off, oas 44, ssidsize 0); OnOffAuto /
    # OasMode / SsidSizeMode defaulting to auto in QEMU 11.1 (`-device arm-smmuv3,help` of 11.1.3). None = the
    # release's default (releases.smmuv3_default).
    "ril": {"type": "onoffauto", "default": None, "qemu": "arm-smmuv3 ril (11.1: auto; 11.0: on)",
            "doc": "Range invalidation advertised to the guest. auto (QEMU 11.1+): the host SMMUv3's IDR3.RIL."},
    "ats": {"type": "onoffauto", "default": None, "qemu": "arm-smmuv3 ats (11.1: auto; 11.0: off)",
            "doc": "ATS advertised to the guest. auto (QEMU 11.1+): the host SMMUv3's IDR0.ATS; on: QEMU compares "
                   "it with IDR0.ATS (11.1) and does not verify the platform's ATS otherwise."},
    "oas": {"type": "intauto", "default": None, "qemu": "arm-smmuv3 oas (11.1: auto; 11.0: 44)",
            "doc": "Output address size, 44 or 48; auto (QEMU 11.1+): the host SMMUv3's IDR5.OAS."},
    "ssidsize": {"type": "intauto", "default": None, "qemu": "arm-smmuv3 ssidsize (11.1: auto; 11.0: 0)",
                 "doc": "Substream ID (PASID) bits of the vSMMU, 0..20; auto (QEMU 11.1+): the host SMMUv3's "
                        "IDR1.SSIDSIZE."},
    "dma_remap": {"type": "bool", "default": False, "qemu": "amd-iommu dma-remap (off)",
                  "doc": "DMA remapping of the AMD vIOMMU; required for VFIO since QEMU 10.2."},
    "pci_id": {"type": "str", "default": "", "qemu": "amd-iommu pci-id (unset)",
               "doc": "Id of a separately created AMDVI-PCI device; makes amd-iommu migratable (QEMU >= 10.1)."},
    "pasid_bits": {"type": "int", "default": None,
                   "qemu": "intel-iommu pasid-bits (11.1+) (0)",
                   "doc": "PASID width (bits) the VM needs from the host. Profile pasid: the minimum width the device "
                          "must get (default 1). Profile intel_viommu on QEMU 11.1+: intel-iommu's pasid-bits, which "
                          "QEMU compares with the host's (default 0 = no PASID)."},
    "granule": {"type": "str", "default": "host", "choices": ["4k", "8k", "16k", "64k", "host"],
                "qemu": "virtio-iommu granule (host)",
                "doc": "Page granule of virtio-iommu; its page-size mask must share a size with the host's."},
    "pasid_exec": {"type": "bool", "default": False, "doc": "The device must have PASID execute permission enabled."},
    "pasid_priv": {"type": "bool", "default": False, "doc": "The device must have PASID privileged mode enabled."},
    "require_ats": {"type": "bool", "default": True, "doc": "The device must be able to use ATS."},
    "guest_memory": {
        "type": "memory", "default": None,
        "doc": "The VM's memory: the memory dict of iommu.host.vm_requirements ({size, hugepages: [{size, "
               "nodeset}], numa: [{id, size, host_nodes, policy}], host_nodes, policy, locked, hard_limit}); "
               "sizes in bytes or with a binary unit ('4G'). check(vm=) and placement fill it from the VM "
               "definition (docs/memory.md)."},
}

_BASE = ("host.iommu_firmware", "host.iommu_enabled", "host.iommu_not_disabled", "host.default_domain",
         "host.iommufd", "host.vfio_cdev", "host.interrupt_remapping",
         "device.vfio_driver", "device.not_in_use", "device.group_viable", "device.hw_info",
         "host.acs_override", "device.acs_path", "device.vfio_ats")

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
        "checks": _BASE + ("migration.device", "migration.dirty_tracking", "migration.p2p", "migration.viommu"),
        "params": ("iommufd", "qemu_version", "viommu", "enable_migration", "x_device_dirty_page_tracking",
                   "pci_id"),
    },
    "intel_viommu": {
        "description": "passthrough + QEMU intel-iommu with assigned devices: caching-mode, aw-bits "
                       "against the host, x-flts nesting, first-stage 1 GiB pages, PASID.",
        "checks": _BASE + ("viommu.intel.config", "viommu.intel.caching_mode", "viommu.intel.aw_bits",
                           "viommu.intel.x_flts", "viommu.intel.nesting", "viommu.intel.fs1gp",
                           "viommu.intel.pasid"),
        "params": ("iommufd", "qemu_version", "aw_bits", "caching_mode", "scalable_mode", "x_scalable_mode",
                   "fsts", "x_flts", "fs1gp", "x_pasid_mode", "pasid_bits", "svm", "device_iotlb",
                   "dma_translation", "snoop_control"),
    },
    "smmuv3_accel": {
        "description": "passthrough + QEMU arm-smmuv3,accel=on: KVM on the host, the ten host IDR comparisons "
                       "of smmuv3_accel_check_hw_compatible, nesting and ATS (accel off: QEMU's refusal of VFIO "
                       "devices behind the emulated SMMUv3).",
        "checks": _BASE + ("viommu.smmuv3.config", "viommu.smmuv3.kvm", "viommu.smmuv3.hw_info_type") + _SMMU_IDR_CHECKS
        + ("viommu.smmuv3.nesting", "viommu.smmuv3.ats"),
        "params": ("iommufd", "qemu_version", "accel", "stage", "ril", "ats", "oas", "ssidsize"),
    },
    "amd_viommu": {
        "description": "passthrough + QEMU amd-iommu with assigned devices (QEMU checks no host "
                       "capability, only dma-remap).",
        "checks": _BASE + ("viommu.amd.dma_remap",),
        "params": ("iommufd", "qemu_version", "dma_remap", "pci_id"),
    },
    "virtio_viommu": {
        "description": "passthrough + QEMU virtio-iommu with assigned devices: its page-size mask "
                       "(granule) against the host's.",
        "checks": _BASE + ("viommu.virtio.granule",),
        "params": ("iommufd", "qemu_version", "granule"),
    },
    "memory": {
        "description": "passthrough + the VM's memory against the host: hugepage pools per size and NUMA node, "
                       "guest RAM against available memory (VFIO pins it), devices on the NUMA nodes of the "
                       "VM's memory (parameter guest_memory). check(vm=) and placement add both when the VM "
                       "definition gives its memory.",
        "checks": _BASE + ("memory.hugepages", "memory.size", "memory.numa_locality"),
        "params": ("iommufd", "guest_memory", "viommu"),
    },
    "pasid": {
        "description": "passthrough + PASID width and ATS for devices that need them.",
        "checks": _BASE + ("device.pasid", "device.ats"),
        "params": ("iommufd", "qemu_version", "pasid_bits", "pasid_exec", "pasid_priv", "require_ats"),
    },
}

# every profile runs the _BASE checks, so every profile takes their parameters
_BASE_PARAMS = ("qemu_version", "vfio_ats")
for _profile in PROFILES.values():
    _profile["params"] = tuple(_profile["params"]) + tuple(p for p in _BASE_PARAMS if p not in _profile["params"])
del _profile

_VIOMMU_OF_PROFILE = (("intel_viommu", "intel-iommu"), ("smmuv3_accel", "arm-smmuv3"),
                      ("amd_viommu", "amd-iommu"), ("virtio_viommu", "virtio-iommu"))

_TRUE = ("on", "true", "yes", "y", "1")
_FALSE = ("off", "false", "no", "n", "0")


def parse_qemu_version(value):
    """'11.1', '10.0.13', 'v10.1.0', 'master' -> (major, minor, micro); None when unparsable.

    The rules applied are those of :func:`releases.rules_series` of that version.
    """
    return releases.parse(value)[0]


def _version_text(v):
    return releases.text(v)


def _coerce_bool(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    return None


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
    if kind == "onoffauto":
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto", None
        if value is None:
            return None, None
        coerced = _coerce_bool(value)
        if coerced is None:
            return None, "%s must be on, off or auto, not %s" % (name, _text(value))
        return coerced, None
    if kind == "intauto":
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto", None
        if value is None:
            return None, None
        number = _int(value)
        if number is None:
            return None, "%s must be an integer or auto, not %s" % (name, _text(value))
        return number, None
    if kind == "int":
        number = _int(value)
        if number is None:
            return None, "%s must be an integer, not %s" % (name, _text(value))
        return number, None
    if kind == "memory":
        if value is None or isinstance(value, dict):
            # a whole iommu.host.vm_requirements result carries the memory under "memory"
            if isinstance(value, dict) and isinstance(value.get("memory"), dict) and "profiles" in value:
                value = value["memory"]
            return value, None
        return None, "%s must be the memory dict of iommu.host.vm_requirements, not %s" % (name, _text(value))
    if kind == "version":
        if parse_qemu_version(value) is None:
            return None, "%s must be a QEMU release like '11.1' or '10.0.13', not %s" % (name, _text(value))
        return str(value), None
    if value is None:
        value = ""
    if isinstance(value, bool) and spec.get("choices") and "on" in spec["choices"]:
        value = "on" if value else "off"   # an OnOffAuto property given as a boolean (a VM definition's on/off)
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
    values["_qemu"], values["_qemu_note"] = releases.parse(values["qemu_version"])
    if values["_qemu"] is None:
        values["_qemu"], values["_qemu_note"] = QEMU_DEFAULT, None
    # one setting, two spellings (QEMU 11.1 renamed intel-iommu's x- properties): the checks read the
    # new name; which spelling was given is kept in "given" for the property-existence check
    for new, olds in releases.SPELLINGS.items():
        for old in olds:
            if old in given and new not in given:
                values[new] = given[old]
    values["_given"] = sorted(given)
    values["_profiles"] = list(names)
    return names, values, given, problems
