# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""QEMU releases the rules know: how each was verified, which properties exist, QEMU's words.

The gate predicts what one QEMU release does when a VM with assigned devices starts.
Every rule that differs between releases asks this module, never a version comparison
spread through the checks. A release is ``(major, minor)``; micro releases of one
series share its rules (stable releases fix bugs, they do not rename properties).

Verification (``VERIFIED``):
- ``oracle``: the test bed starts that QEMU (Debian's package) with each configuration
  of ``tests/integration/test_oracle_*.py`` and compares its outcome and message with
  the gate's verdict (docs/qemu-matrix.md);
- ``source``: read from QEMU's source at that release tag.
"""

from __future__ import absolute_import, division, print_function

import re

__metaclass__ = type

# (major, minor) -> (how it was verified, against what)
VERIFIED = {
    (10, 0): ("oracle", "QEMU 10.0.13 (Debian trixie), test bed; source v10.0.0"),
    (10, 1): ("source", "QEMU v10.1.0 source"),
    (10, 2): ("source", "QEMU v10.2.0 source"),
    (11, 0): ("source", "QEMU master ece408818d (11.0 development tree, February 2026)"),
    (11, 1): ("oracle", "QEMU 11.1.3 (Debian trixie-backports), test bed"),
}
OLDEST = min(VERIFIED)
NEWEST = max(VERIFIED)
DEFAULT_VERSION = "%d.%d" % NEWEST
ALIASES = ("master", "latest", "git")


def parse(value):
    """'11.1', '10.0.13', 'v10.1.0', 'master' -> ((major, minor, micro), note); (None, why) when unparsable.

    ``note`` is None for a release whose rules were verified, else a sentence that says which
    rules are used instead (an older or a newer release, or master).
    """
    if value is None or (isinstance(value, str) and value.strip() == ""):
        value = DEFAULT_VERSION
    text = str(value).strip().lower()
    if text in ALIASES:
        return NEWEST + (0,), ("'%s' is not a QEMU release: evaluated with the rules of QEMU %d.%d, the newest "
                               "release they were verified for (%s); master may differ"
                               % (text, NEWEST[0], NEWEST[1], VERIFIED[NEWEST][1]))
    m = re.match(r"^v?(\d{1,3})\.(\d{1,3})(?:\.(\d{1,3}))?(?:[-+~.].*)?$", text)
    if not m:
        return None, "not a QEMU release like '11.1' or '10.0.13'"
    full = (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
    series = full[:2]
    if series in VERIFIED:
        return full, None
    if series > NEWEST:
        return full, ("QEMU %d.%d is newer than the rules: evaluated with the rules of %d.%d, the newest release "
                      "they were verified for (%s)" % (series + NEWEST + (VERIFIED[NEWEST][1],)))
    if series < OLDEST:
        return full, ("QEMU %d.%d is older than the rules: evaluated with the rules of %d.%d, the oldest release "
                      "they were verified for; older releases lack iommufd features and may refuse differently"
                      % (series + OLDEST))
    # a gap between known series (none today): the nearest older known series
    return full, ("QEMU %d.%d has no rules of its own: evaluated with those of %d.%d"
                  % (series + rules_series(full)))


def rules_series(version):
    """The (major, minor) whose rules apply to ``version`` (clamped to the verified range)."""
    series = tuple(version[:2])
    if series >= NEWEST:
        return NEWEST
    if series <= OLDEST:
        return OLDEST
    return max(s for s in VERIFIED if s <= series)


def verified_text():
    """'10.0 (oracle), 10.1 (source), ...' for messages and docs."""
    return ", ".join("%d.%d (%s)" % (v + (VERIFIED[v][0],)) for v in sorted(VERIFIED))


def text(version):
    return "%d.%d.%d" % tuple(version[:3])


def series(version):
    """(major, minor) of a parsed version."""
    return tuple(version[:2])


# ---------------------------------------------------------------------------
# Properties: which QEMU device property exists in which release series.
# Gate parameter name -> (device, QEMU property, first series, last series or None).
# Read off `-device <model>,help` of QEMU 10.0.13 and 11.1.3 (test bed oracles) and the
# release tags' source for the series between them.

PROPERTIES = {
    # intel-iommu (hw/i386/intel_iommu.c vtd_properties, x86-iommu.c)
    "x_scalable_mode": ("intel-iommu", "x-scalable-mode", (10, 0), (11, 0)),
    "scalable_mode": ("intel-iommu", "scalable-mode", (11, 1), None),
    "x_flts": ("intel-iommu", "x-flts", (10, 0), (11, 0)),
    "fsts": ("intel-iommu", "fsts", (11, 1), None),
    "x_pasid_mode": ("intel-iommu", "x-pasid-mode", (10, 0), (11, 0)),
    "intel_pasid_bits": ("intel-iommu", "pasid-bits", (11, 1), None),
    "svm": ("intel-iommu", "svm", (11, 0), None),
    "dma_drain": ("intel-iommu", "dma-drain", (10, 0), (11, 0)),
    "fs1gp": ("intel-iommu", "fs1gp", (10, 0), None),
    # amd-iommu (hw/i386/amd_iommu.c)
    "pci_id": ("amd-iommu", "pci-id", (10, 1), None),
    "dma_remap": ("amd-iommu", "dma-remap", (10, 2), None),
    # arm-smmuv3 accel (hw/arm/smmuv3.c), post-v10.2
    "accel": ("arm-smmuv3", "accel", (11, 0), None),
    "ril": ("arm-smmuv3", "ril", (11, 0), None),
    "ats": ("arm-smmuv3", "ats", (11, 0), None),
    "oas": ("arm-smmuv3", "oas", (11, 0), None),
    "ssidsize": ("arm-smmuv3", "ssidsize", (11, 0), None),
    # vfio-pci (hw/vfio/pci.c): ats is new in 11.1 (`-device vfio-pci,help` of 11.1.3; absent from 10.0.13)
    "vfio_ats": ("vfio-pci", "ats", (11, 1), None),
}

# Spellings of one setting across releases: the canonical (newest) name -> older spellings.
SPELLINGS = {
    "scalable_mode": ("x_scalable_mode",),
    "fsts": ("x_flts",),
}


# arm-smmuv3 accel properties whose default is auto (OnOffAuto / OasMode / SsidSizeMode) from this series on;
# before it: bool / uint8 with the defaults of SMMUV3_DEFAULTS (QEMU 11.0, master ece408818d).
SMMUV3_AUTO = (11, 1)
SMMUV3_DEFAULTS = {"ril": True, "ats": False, "oas": 44, "ssidsize": 0}


def smmuv3_auto(version):
    """True when ``version``'s arm-smmuv3 ril/ats/oas/ssidsize take (and default to) auto."""
    return rules_series(version) >= SMMUV3_AUTO


def smmuv3_value(param, value, version):
    """The arm-smmuv3 property ``param`` as ``version`` takes it: the given value, else the release's default
    ('auto' from 11.1 on, SMMUV3_DEFAULTS before)."""
    if value is None:
        return "auto" if smmuv3_auto(version) else SMMUV3_DEFAULTS[param]
    return value


def has_property(param, version):
    """True when the QEMU series of ``version`` has the property behind gate parameter ``param``."""
    entry = PROPERTIES.get(param)
    if entry is None:
        return True
    first, last = entry[2], entry[3]
    s = rules_series(version)
    return s >= first and (last is None or s <= last)


def property_name(param, version=None):
    """QEMU's spelling of a gate parameter in the given release (e.g. fsts -> x-flts on 10.x)."""
    for new, olds in SPELLINGS.items():
        if param == new or param in olds:
            for cand in (new,) + olds:
                if version is None or has_property(cand, version):
                    return PROPERTIES[cand][1]
    entry = PROPERTIES.get(param)
    return entry[1] if entry else param.replace("_", "-")


def missing_property(param, version):
    """QEMU's own refusal of a property its release lacks ('Property 'intel-iommu.x-flts' not found')."""
    device, prop = PROPERTIES[param][0], PROPERTIES[param][1]
    return "Property '%s.%s' not found" % (device, prop)


# ---------------------------------------------------------------------------
# QEMU's words, per series. Each key maps [(first series, text), ...] newest last; the text of
# the newest entry not after the asked series applies. Sources: the strings of Debian's
# QEMU 10.0.13 and 11.1.3 binaries (the oracles), QEMU's tags for 10.1/10.2/11.0.

_MESSAGES = {
    # intel-iommu caching-mode: machine-init-done exit before v10.2, set_iommu_device after
    "intel.caching_mode": [
        ((10, 0), "We need to set caching-mode=on for intel-iommu to enable device assignment with IOMMU "
                  "protection."),
        ((10, 2), "Device assignment is not allowed without enabling caching-mode=on for Intel IOMMU."),
    ],
    "intel.flts_needs_sm": [((10, 0), "x-flts is only available in scalable mode"),
                            ((11, 1), "fsts is only available in scalable mode")],
    "intel.flts_aw": [((10, 0), "Scalable mode(flts=on): supported value for aw-bits is: %d"),
                      ((11, 0), "Scalable mode(x-flts=on): supported value for aw-bits is: %d"),
                      ((11, 1), "Scalable mode(fsts=on): supported value for aw-bits is: %d")],
    "intel.sm_aw": [((10, 0), "Scalable mode(flts=off): supported values for aw-bits are: %d, %d"),
                    ((11, 1), "Scalable mode(fsts=off): supported values for aw-bits are: %d, %d")],
    "intel.flts_refused": [((10, 0), "host device is uncompatible with stage-1 translation"),
                           ((11, 0), None)],  # 11.0 accepts first-stage translation with devices
    "intel.flts_iommufd": [((11, 0), "Need IOMMUFD backend when x-flts=on"),
                           ((11, 1), "Need IOMMUFD backend when fsts=on")],
    "intel.flts_bridge": [((11, 0), "Host device downstream to a PCI bridge is unsupported when x-flts=on"),
                          ((11, 1), "Host device downstream to a PCI bridge is unsupported when fsts=on")],
    "intel.svm_flts": [((11, 0), "Need to set flts for svm"), ((11, 1), "Need to set fsts for svm")],
    # migration (hw/vfio/migration.c vfio_migration_realize)
    "migration.not_in_kernel": [((10, 0), "%s: VFIO migration is not supported in kernel"),
                                ((11, 1), "%s: VFIO migration init failed: migration is not supported in kernel")],
    # vfio_migration_init() failing otherwise: %s device, then errno and strerror / the reason
    "migration.init_failed": [
        ((10, 0), "%s: Migration couldn't be initialized for VFIO device, err: -%d (%s)"),
        ((11, 1), "%s: VFIO migration init failed: failed to query migration flags: %s")],
    "migration.no_stop_copy": [
        ((10, 0), "%s: Migration couldn't be initialized for VFIO device, err: -95 (Operation not supported)"),
        ((11, 1), "%s: VFIO migration init failed: VFIO_MIGRATION_STOP_COPY is not supported")],
    # arm-smmuv3 (qemu-system-aarch64 only: checked against tests/fixtures/qemu-strings/qemu-system-aarch64-*).
    # VFIO behind the emulated SMMUv3 (accel off): smmuv3_notify_flag_changed() refuses the MAP notifier, VFIO
    # reports it from its memory listener, prefixed with the container's group on the legacy backend
    # ("vfio <addr>: [failed to setup container for group <g>: ]memory listener initialization failed:
    # Region smmuv3-iommu-memory-region-<devfn>-<bus>: device <bus>.<slot>.<fn> requires ...").
    "smmuv3.map_notifier": [((10, 0), "device %02x.%02x.%x requires iommu MAP notifier which is not currently "
                                      "supported")],
    "smmuv3.listener_failed": [((10, 0), "memory listener initialization failed: ")],
    "smmuv3.listener_region": [((10, 0), "Region %s: ")],
    "smmuv3.container_failed": [((10, 0), "failed to setup container for group %d: ")],
    # accel=on: the virt machine's pre-plug check (hw/arm/virt.c, 5ec2700dcb) comes before every other
    # accel=on check, the host IDR comparisons included; under TCG it is all QEMU 11.1 says (test bed)
    "smmuv3.accel_kvm": [((11, 0), "SMMUv3 accel=on requires KVM with kernel-irqchip=on support")],
    # smmu_validate_property() with accel off (11.1.3: hw/arm/smmuv3.c:2001-2018, __LINE__ of the binary)
    "smmuv3.ril_accel_off": [((11, 0), "ril can only be disabled if accel=on")],
    "smmuv3.ats_accel_off": [((11, 0), "ats can only be enabled if accel=on")],
    "smmuv3.oas_accel_off": [((11, 0), "OAS must be 44 bits when accel=off"),
                             ((11, 1), "oas must be 44 bits when accel=off")],
    "smmuv3.ssidsize_accel_off": [((11, 0), "ssidsize can only be set if accel=on"),
                                  ((11, 1), "ssidsize can only be greater than 0 bits if accel=on")],
    # oas/ssidsize out of range: 11.0 checks the integers; 11.1 has enums (OasMode 32..56 and auto, of which
    # smmu_validate_property accepts auto, 44 and 48: hw/arm/smmuv3.c:1993; SsidSizeMode 0..20 and auto)
    "smmuv3.oas_values": [((11, 0), "OAS can only be set to 44 or 48 bits"),
                          ((11, 1), "QEMU SMMUv3 model only implements auto, 44 bit, or 48 bit OAS. Other OasMode "
                                    "values are not supported.")],
    "smmuv3.ssidsize_values": [((11, 0), "ssidsize must be in the range 0 to 20"), ((11, 1), None)],
    # hw/arm/smmuv3-accel.c machine-init-done notifier (11.1.3): auto is resolved from the first cold-plugged
    # VFIO device's host SMMUv3; none, and QEMU exits
    "smmuv3.auto_cold_plug": [((11, 1), "arm-smmuv3 accel=on with 'auto' properties requires at least one "
                                        "cold-plugged VFIO device")],
    # vfio-pci ats (11.1.3 hw/vfio/pci.c vfio_add_ext_cap, inlined in vfio_pci_add_capabilities): realize
    # fails (line 2617) / warnings (warn_report, no line)
    "vfio.ats_kernel": [((11, 1), "vfio-pci: ATS requested but not supported by kernel")],
    "vfio.ats_no_cap": [((11, 1), "vfio-pci: ats=on requested, but host device has no ATS extended capability")],
    "vfio.ats_masked": [((11, 1), "vfio-pci: host kernel reports ATS unsupported; ATS capability will be masked")],
}


def message(key, version):
    """QEMU's text for ``key`` in the series of ``version``; None when that series has none."""
    s = rules_series(version)
    found = None
    for first, words in _MESSAGES[key]:
        if s >= first:
            found = words
    return found
