# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The gate per QEMU release (policy/releases.py): every rule that differs between 10.0 and 11.1.

Each rule is evaluated for every release the rules know (10.0, 10.1, 10.2, 11.0, 11.1) and the test
asserts the verdict (status), what QEMU does about it (``qemu_effect``) and QEMU's exact wording of
that release. The wording of the two oracle releases is also checked against the strings of their
Debian binaries (tests/fixtures/qemu-strings/). Besides: the setup-facts defect (unwrap_facts),
Ansible's unsafe and tagged types in custom checks, check(vm=...), the generated tables of
docs/preflight.md, and a property test over random inputs.
"""

import copy
import importlib.util
import json
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.iommu.host.plugins.filter import check as check_filter
from ansible_collections.iommu.host.plugins.module_utils.policy import api as P
from ansible_collections.iommu.host.plugins.module_utils.policy import releases as R
from ansible_collections.iommu.host.plugins.module_utils.policy.engine import unwrap_facts
# gathered and facts are pytest fixtures: importing them makes them available here
from tests.unit.test_policy import (  # noqa: F401  # pylint: disable=unused-import
    BUSY, DEV, MDEV, VTD_CAP_FULL, VTD_ECAP_FULL, add_mdev, amd_host, facts, find, gathered, migratable, run,
    scalable, set_vtd, status, vfio_features)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RELEASES = ("10.0", "10.1", "10.2", "11.0", "11.1")
EFFECTS = (None, "refuse", "block_migration", "warning", "requirement")
INTEL, AMD, LM, VIRTIO, SMMU = ("intel_viommu",), ("amd_viommu",), ("live_migration",), ("virtio_viommu",), \
    ("smmuv3_accel",)


def since(release, major, minor):
    return tuple(int(x) for x in release.split(".")) >= (major, minor)


def names(release):
    """intel-iommu parameters in the spelling the release has (x_* up to 11.0, the 11.1 names after)."""
    if since(release, 11, 1):
        return {"sm": "scalable_mode", "fl": "fsts", "fl_prop": "fsts"}
    return {"sm": "x_scalable_mode", "fl": "x_flts", "fl_prop": "x-flts"}


def verdict(f, check_id, device=DEV, profiles=INTEL, devices=DEV, **kw):
    """(status, qemu_effect, message) of one finding."""
    x = status(f, check_id, device, profiles, devices, **kw)[2]
    assert x["qemu_effect"] in EFFECTS
    return x["status"], x["qemu_effect"], x["message"]


def qemu_err(text, addr=DEV):
    return "\"vfio %s: Failed to set vIOMMU: %s\"" % (addr, text)


def test_releases_table():
    assert R.DEFAULT_VERSION == "11.1" and R.NEWEST == (11, 1) and R.OLDEST == (10, 0)
    assert sorted(R.VERIFIED) == [(10, 0), (10, 1), (10, 2), (11, 0), (11, 1)]
    assert [s for s in sorted(R.VERIFIED) if R.VERIFIED[s][0] == "oracle"] == [(10, 0), (11, 1)]
    assert P.QEMU_DEFAULT == (11, 1, 0) and P.PARAMS["qemu_version"]["default"] == "11.1"
    for rel in RELEASES:
        parsed, note = R.parse(rel)
        assert note is None and R.rules_series(parsed) == parsed[:2]
    assert R.parse("10.0.13") == ((10, 0, 13), None) and R.parse("v10.1.0")[0] == (10, 1, 0)


# ---------------------------------------------------------------------------
# QEMU's words: the gate's messages of 10.0 and 11.1 are made of the oracle binaries' strings

ORACLE_STRINGS = {(10, 0): "qemu-system-x86_64-10.0.13.txt", (11, 1): "qemu-system-x86_64-11.1.3.txt"}
# arm-smmuv3 exists in qemu-system-aarch64 only (Debian's qemu-system-arm of the same releases, arm64)
ARM_STRINGS = {(10, 0): "qemu-system-aarch64-10.0.13.txt", (11, 1): "qemu-system-aarch64-11.1.3.txt"}


def _strings(series, table=None):
    path = os.path.join(REPO, "tests", "fixtures", "qemu-strings", (table or ORACLE_STRINGS)[series])
    with open(path) as f:
        return f.read().split("\n")


def _fragments(message):
    """The pieces QEMU assembles a message from: error_prepend prefixes, error_setg_errno's ': %s'."""
    text = message.replace("err: -95 (Operation not supported)", "err: %d (%s)").replace("err: -%d", "err: %d")
    parts = []
    if "VFIO migration init failed: " in text:
        head, text = text.split("VFIO migration init failed: ", 1)
        parts.append(head + "VFIO migration init failed: ")
    if text.startswith("Scalable mode(") and "=off): " in text:    # "%s: supported values ..." with %s
        head, text = text.split(": ", 1)
        parts.append(head)
        text = "%s: " + text
    if text.endswith(": %s") and "err: %d (%s)" not in text:      # error_setg_errno appends strerror
        text = text[:-len(": %s")]
    return parts + [text]


@pytest.mark.parametrize("series", sorted(ORACLE_STRINGS), ids=["10.0", "11.1"])
def test_messages_are_qemus_own_strings(series):
    blob = "\n".join(_strings(series))
    arm = "\n".join(_strings(series, ARM_STRINGS))
    for key in R._MESSAGES:
        words = R.message(key, series + (0,))
        if words is None:
            continue
        for piece in _fragments(words):
            assert piece in (arm if key.startswith("smmuv3.") else blob), (key, piece)


@pytest.mark.parametrize("series", sorted(ORACLE_STRINGS), ids=["10.0", "11.1"])
def test_property_table_matches_the_binaries(series):
    lines = set(_strings(series))
    # property names whose presence in strings is conclusive (no other string ends with them)
    for param in ("x_scalable_mode", "x_flts", "x_pasid_mode", "dma_drain", "scalable_mode", "intel_pasid_bits",
                  "dma_remap", "pci_id"):
        prop = R.PROPERTIES[param][1]
        assert R.has_property(param, series + (0,)) == (prop in lines), (series, param)


# ---------------------------------------------------------------------------
# intel-iommu


CACHING_OLD = ("\"We need to set caching-mode=on for intel-iommu to enable device assignment with IOMMU "
               "protection.\"")
CACHING_NEW = qemu_err("Device assignment is not allowed without enabling caching-mode=on for Intel IOMMU.")


@pytest.mark.parametrize("release", RELEASES)
def test_caching_mode_per_release(facts, release):
    params = {"qemu_version": release}
    s, effect, m = verdict(facts, "viommu.intel.caching_mode", None, params=params)
    assert (s, effect) == (P.FAIL, "refuse")
    if since(release, 10, 2):
        assert CACHING_NEW in m and "We need to set" not in m
    else:
        assert CACHING_OLD in m and "vfio %s" % DEV not in m   # machine-init-done: no device prefix
    add_mdev(facts)
    s, effect, m = verdict(facts, "viommu.intel.caching_mode", None, devices=MDEV, params=params)
    assert (s, effect) == (P.FAIL, "refuse")
    if since(release, 10, 2):   # an mdev has no HostIOMMUDevice: its MAP notifier fails instead
        assert "device BB.DD.F requires caching mode (mdev %s" % MDEV in m and "Failed to set vIOMMU" not in m
    else:                       # the old check looked at every vfio-pci object, mdevs included
        assert CACHING_OLD in m
    assert verdict(facts, "viommu.intel.caching_mode", None, params=dict(params, caching_mode=True))[0] == P.PASS


@pytest.mark.parametrize("release", RELEASES)
def test_property_names_per_release(facts, release):
    new = since(release, 11, 1)
    # the release's own spelling is accepted
    n = names(release)
    ok = {"qemu_version": release, "caching_mode": True, n["sm"]: True, n["fl"]: True}
    s, effect, m = verdict(facts, "viommu.intel.config", None, params=ok)
    assert (s, effect) == (P.PASS, None), m
    assert "%s=on" % ("scalable-mode" if new else "x-scalable-mode") in m and "%s=on" % n["fl_prop"] in m
    # the other release family's spelling is QEMU's "Property ... not found"
    other = {"qemu_version": release, "caching_mode": True}
    other.update({"x_scalable_mode": True, "x_flts": True} if new else {"scalable_mode": True, "fsts": True})
    s, effect, m = verdict(facts, "viommu.intel.config", None, params=other)
    assert (s, effect) == (P.FAIL, "refuse")
    for prop in (("x-scalable-mode", "x-flts") if new else ("scalable-mode", "fsts")):
        assert "\"Property 'intel-iommu.%s' not found\" (QEMU %s.0)" % (prop, release) in m, m
    # both spellings reach the checks: x_flts on 11.1 is read as fsts
    assert find(run(facts, INTEL, params=other), "viommu.intel.x_flts", DEV)["status"] != P.NA
    # x-pasid-mode gave way to pasid-bits in 11.1
    s, effect, m = verdict(facts, "viommu.intel.config", None, params={"qemu_version": release, "x_pasid_mode": True})
    assert ("\"Property 'intel-iommu.x-pasid-mode' not found\"" in m) == new
    s, effect, m = verdict(facts, "viommu.intel.config", None, params={"qemu_version": release, "pasid_bits": 8})
    assert ("\"Property 'intel-iommu.pasid-bits' not found\"" in m) == (not new)
    # svm exists from 11.0; its prerequisites in the release's words
    s, effect, m = verdict(facts, "viommu.intel.config", None, params={"qemu_version": release, "svm": True})
    assert (s, effect) == (P.FAIL, "refuse")
    if since(release, 11, 0):
        assert "\"Need to set device IOTLB for svm\"" in m and "\"Need to set PASID support for svm\"" in m
        assert ("\"Need to set fsts for svm\"" if new else "\"Need to set flts for svm\"") in m
    else:
        assert m.count("not found") == 1 and "\"Property 'intel-iommu.svm' not found\"" in m


@pytest.mark.parametrize("release", RELEASES)
def test_first_stage_per_release(facts, release):
    n = names(release)
    nest = {"qemu_version": release, "caching_mode": True, n["sm"]: True, n["fl"]: True}
    s, effect, m = verdict(facts, "viommu.intel.x_flts", params=nest)
    if not since(release, 11, 0):
        assert (s, effect) == (P.FAIL, "refuse")
        assert qemu_err("host device is uncompatible with stage-1 translation") in m and "x-flts=on" in m
        for later in ("viommu.intel.nesting", "viommu.intel.fs1gp"):   # refused before those are reached
            assert verdict(facts, later, params=nest)[0] == P.NA
    else:
        assert (s, effect) == (P.PASS, None) and "%s=on is accepted" % n["fl_prop"] in m
        s, effect, m = verdict(facts, "viommu.intel.x_flts", params=dict(nest, iommufd=False))
        assert (s, effect) == (P.FAIL, "refuse")
        assert qemu_err("Need IOMMUFD backend when %s=on" % n["fl_prop"]) in m
        s, effect, m = verdict(facts, "viommu.intel.fs1gp", params=nest)   # the test-bed VT-d has no FS1GP
        assert (s, effect) == (P.FAIL, "refuse")
        assert qemu_err("First stage 1GB large page is unsupported by host IOMMU") in m
    assert verdict(facts, "viommu.intel.x_flts", params={"qemu_version": release})[0] == P.NA


AW_FIRST_STAGE = {"10.0": "flts=on", "10.1": "flts=on", "10.2": "flts=on", "11.0": "x-flts=on", "11.1": "fsts=on"}


@pytest.mark.parametrize("release", RELEASES)
def test_aw_bits_words_per_release(facts, release):
    n = names(release)
    base = {"qemu_version": release, "caching_mode": True}
    first_stage = dict(base, aw_bits=39, **{n["sm"]: True, n["fl"]: True})
    s, effect, m = verdict(facts, "viommu.intel.config", None, params=first_stage)
    assert (s, effect) == (P.FAIL, "refuse")
    assert "\"Scalable mode(%s): supported value for aw-bits is: 48\"" % AW_FIRST_STAGE[release] in m
    s, effect, m = verdict(facts, "viommu.intel.config", None, params=dict(base, aw_bits=57, **{n["sm"]: True}))
    assert (s, effect) == (P.FAIL, "refuse")
    off = "fsts=off" if since(release, 11, 1) else "flts=off"
    assert "\"Scalable mode(%s): supported values for aw-bits are: 39, 48\"" % off in m
    s, effect, m = verdict(facts, "viommu.intel.config", None, params=dict(base, aw_bits=57))
    assert "\"Legacy mode: supported values for aw-bits are: 39, 48\"" in m
    s, effect, m = verdict(facts, "viommu.intel.config", None, params=dict(base, **{n["fl"]: True}))
    assert "\"%s is only available in scalable mode\"" % ("fsts" if since(release, 11, 1) else "x-flts") in m
    # the host comparison itself does not change
    s, effect, m = verdict(facts, "viommu.intel.aw_bits", params=base)
    assert (s, effect) == (P.FAIL, "refuse") and qemu_err("aw-bits 48 > host aw-bits 39") in m


def _pasid_host(f, pss, pasid_log2):
    """A scalable-mode VT-d host whose ECAP.PSS is ``pss`` and whose device reports ``pasid_log2`` bits."""
    ecap = (VTD_ECAP_FULL & ~(0x1F << 35)) | (pss << 35)
    return scalable(set_vtd(copy.deepcopy(f), VTD_CAP_FULL, ecap, caps=0x1, pasid=pasid_log2))


@pytest.mark.parametrize("release", RELEASES)
def test_viommu_pasid_per_release(facts, release):
    n = names(release)
    host5 = _pasid_host(facts, 4, 5)     # 5-bit PASIDs on the host and the device
    host20 = _pasid_host(facts, 19, 20)
    if since(release, 11, 1):
        want = {"qemu_version": release, "scalable_mode": True, "pasid_bits": 8}
        s, effect, m = verdict(host20, "viommu.intel.pasid", params=dict(want, fsts=True))
        assert (s, effect) == (P.PASS, None) and "20-bit PASIDs, enough for pasid-bits=8" in m
        s, effect, m = verdict(host5, "viommu.intel.pasid", params=dict(want, fsts=True))
        assert (s, effect) == (P.FAIL, "refuse")
        assert qemu_err("PASID bits size 8 > host IOMMU PASID bits size 5") in m
        # compared in vtd_check_hiod_accel() only, i.e. with fsts=on
        s, effect, m = verdict(host5, "viommu.intel.pasid", params=want)
        assert (s, effect) == (P.WARN, None) and "does not compare them" in m
        s, effect, m = verdict(facts, "viommu.intel.config", None, params=dict(want, pasid_bits=21))
        assert (s, effect) == (P.FAIL, "refuse")
        assert "\"PASID width 21 exceeds Max PASID Width 20 allowed in PCI spec\"" in m
        assert verdict(facts, "viommu.intel.pasid", params={"qemu_version": release})[0] == P.NA
    else:
        want = {"qemu_version": release, n["sm"]: True, "x_pasid_mode": True}
        width = 8 if since(release, 10, 1) else 1       # ECAP.PSS 7 from 10.1, 0 in 10.0
        s, effect, m = verdict(facts, "viommu.intel.config", None, params=want)
        assert (s, effect) == (P.PASS, None) and "PASID %d bits" % width in m
        s, effect, m = verdict(host20, "viommu.intel.pasid", params=want)
        assert (s, effect) == (P.PASS, None) and "20-bit PASIDs" in m
        s, effect, m = verdict(host5, "viommu.intel.pasid", params=want)
        if width == 8:
            assert (s, effect) == (P.WARN, None)
            assert "5-bit PASIDs, fewer than the 8 bits QEMU's vIOMMU advertises" in m
        else:
            assert (s, effect) == (P.PASS, None)
    s, effect, m = verdict(facts, "viommu.intel.pasid", params=dict(want, **{n["sm"]: False}))
    assert (s, effect) == (P.FAIL, "refuse") and "\"Need to set scalable mode for PASID\"" in m


# ---------------------------------------------------------------------------
# amd-iommu


AMD_NOTIFIER = ("\"vfio %s: memory listener initialization failed: Region amd_iommu: device BB.DD.F requires iommu "
                "notifier which is not currently supported\"" % DEV)


@pytest.mark.parametrize("release", RELEASES)
def test_amd_dma_remap_and_pci_id_per_release(facts, release):
    f = amd_host(copy.deepcopy(facts))
    base = {"qemu_version": release}
    s, effect, m = verdict(f, "viommu.amd.dma_remap", None, AMD, params=base)
    if since(release, 10, 2):
        assert (s, effect) == (P.WARN, None)     # QEMU 11.1.3 starts it; the device stays untranslated
        assert "\"device BB.DD.F requires dma-remap=1\"" in m and "starts the VM" in m
    else:
        assert (s, effect) == (P.FAIL, "refuse") and AMD_NOTIFIER in m
    s, effect, m = verdict(f, "viommu.amd.dma_remap", None, AMD, params=dict(base, dma_remap=True))
    if since(release, 10, 2):
        assert (s, effect) == (P.PASS, None)
    else:
        assert (s, effect) == (P.FAIL, "refuse") and "\"Property 'amd-iommu.dma-remap' not found\"" in m
    s, effect, m = verdict(f, "viommu.amd.dma_remap", None, AMD, params=dict(base, pci_id="iommupci0"))
    assert ("\"Property 'amd-iommu.pci-id' not found\"" in m) == (not since(release, 10, 1))


# ---------------------------------------------------------------------------
# arm-smmuv3 and virtio-iommu


@pytest.mark.parametrize("release", RELEASES)
def test_smmuv3_accel_per_release(facts, release):
    s, effect, m = verdict(facts, "viommu.smmuv3.config", None, SMMU, params={"qemu_version": release})
    if since(release, 11, 0):
        assert (s, effect) == (P.PASS, None)
    else:
        assert (s, effect) == (P.FAIL, "refuse") and "\"Property 'arm-smmuv3.accel' not found\"" in m
    s, effect, m = verdict(facts, "viommu.smmuv3.config", None, SMMU, params={"qemu_version": release, "accel": False})
    assert (s, effect) == (P.FAIL, "refuse")
    assert "requires iommu MAP notifier which is not currently supported" in m


@pytest.mark.parametrize("release", RELEASES)
def test_virtio_granule_per_release(facts, release):
    base = {"qemu_version": release}
    for granule in ("4k", "host"):
        assert verdict(facts, "viommu.virtio.granule", profiles=VIRTIO, params=dict(base, granule=granule))[:2] == \
            (P.PASS, None)
    for granule, mask in (("64k", "0xffffffffffff0000"), ("16k", "0xffffffffffffc000"), ("8k", "0xffffffffffffe000")):
        s, effect, m = verdict(facts, "viommu.virtio.granule", profiles=VIRTIO, params=dict(base, granule=granule))
        assert (s, effect) == (P.FAIL, "refuse")
        assert qemu_err("%s: virtio-iommu reports a page size mask 0x1000 incompatible with currently supported "
                        "mask %s" % (DEV, mask)) in m
    s, effect, m = verdict(facts, "viommu.virtio.granule", profiles=VIRTIO,
                           params=dict(base, granule="64k", iommufd=False))
    assert (s, effect) == (P.WARN, None) and "VFIO_IOMMU_GET_INFO" in m
    add_mdev(facts)
    assert verdict(facts, "viommu.virtio.granule", MDEV, VIRTIO, MDEV, params=base)[0] == P.NA


# ---------------------------------------------------------------------------
# Live migration


NOT_IN_KERNEL = {True: "%s: VFIO migration init failed: migration is not supported in kernel: Inappropriate ioctl for "
                       "device",
                 False: "%s: VFIO migration is not supported in kernel"}
NO_STOP_COPY = {True: "%s: VFIO migration init failed: VFIO_MIGRATION_STOP_COPY is not supported",
                False: "%s: Migration couldn't be initialized for VFIO device, err: -95 (Operation not supported)"}


@pytest.mark.parametrize("release", RELEASES)
def test_migration_device_per_release(facts, release):
    new = since(release, 11, 1)
    base = {"qemu_version": release}
    f = vfio_features(copy.deepcopy(facts))                     # plain vfio-pci: ENOTTY
    s, effect, m = verdict(f, "migration.device", profiles=LM, params=base)
    assert (s, effect) == (P.FAIL, "block_migration")
    assert "QEMU blocks migration: \"%s\"" % (NOT_IN_KERNEL[new] % DEV) in m and "vfio-pci" in m
    assert NOT_IN_KERNEL[not new] % DEV not in m
    s, effect, m = verdict(f, "migration.device", profiles=LM, params=dict(base, enable_migration="on"))
    assert (s, effect) == (P.FAIL, "refuse") and "refuses the device when the VM starts: \"vfio %s: %s\"" % (
        DEV, NOT_IN_KERNEL[new] % DEV) in m
    s, effect, m = verdict(f, "migration.device", profiles=LM, params=dict(base, enable_migration="off"))
    assert (s, effect) == (P.FAIL, "block_migration") and "\"%s: Migration is disabled for VFIO device\"" % DEV in m
    # the GET succeeds, but without STOP_COPY (iommu_uapi reports supported=false with the flags)
    f = vfio_features(copy.deepcopy(facts), migration={"stop_copy": False, "p2p": True})
    s, effect, m = verdict(f, "migration.device", profiles=LM, params=base)
    assert (s, effect) == (P.FAIL, "block_migration") and "\"%s\"" % (NO_STOP_COPY[new] % DEV) in m
    # another errno: QEMU prints strerror, whether the facts hold the number or its name
    for number in (22, "EINVAL"):
        f = copy.deepcopy(facts)
        vfio_features(f)
        f["devices"][DEV]["vfio_features"]["migration"].update(errno=number)
        s, effect, m = verdict(f, "migration.device", profiles=LM, params=base)
        assert (s, effect) == (P.FAIL, "block_migration")
        assert ("\"%s: VFIO migration init failed: failed to query migration flags: Invalid argument\"" % DEV if new
                else "\"%s: Migration couldn't be initialized for VFIO device, err: -22 (Invalid argument)\"" % DEV) in m
    s, effect, m = verdict(migratable(copy.deepcopy(facts), p2p=True), "migration.device", profiles=LM, params=base)
    assert (s, effect) == (P.PASS, None) and "STOP_COPY, P2P" in m
    s, effect, m = verdict(facts, "migration.device", profiles=LM, params=base)   # not probed
    assert (s, effect) == (P.WARN, None) and "Unknown whether" in m
    # mdevs: the same uAPI through the mdev's cdev, QEMU names them by UUID
    add_mdev(facts)
    vfio_features(facts, MDEV, mdev=True)
    s, effect, m = verdict(facts, "migration.device", MDEV, LM, MDEV, params=base)
    assert (s, effect) == (P.FAIL, "block_migration") and "\"%s\"" % (NOT_IN_KERNEL[new] % MDEV) in m
    migratable(facts, MDEV, mdev=True)
    assert verdict(facts, "migration.device", MDEV, LM, MDEV, params=base)[:2] == (P.PASS, None)


DT_BLOCKER = "\"%s: VFIO device doesn't support device and IOMMU dirty tracking\""


@pytest.mark.parametrize("release", RELEASES)
def test_migration_dirty_tracking_device_iommu_mdev(facts, release):
    base = {"qemu_version": release}
    dt_host = set_vtd(copy.deepcopy(facts), VTD_CAP_FULL, VTD_ECAP_FULL, caps=0x9)   # IOMMU dirty tracking
    # device dirty tracking (DMA logging) suffices
    s, effect, m = verdict(migratable(copy.deepcopy(facts), dma_logging=True), "migration.dirty_tracking",
                           profiles=LM, params=base)
    assert (s, effect) == (P.PASS, None) and "DMA_LOGGING" in m
    # ... unless x-device-dirty-page-tracking=off and the IOMMU has none
    s, effect, m = verdict(migratable(copy.deepcopy(facts), dma_logging=True), "migration.dirty_tracking",
                           profiles=LM, params=dict(base, x_device_dirty_page_tracking=False))
    assert (s, effect) == (P.FAIL, "block_migration") and DT_BLOCKER % DEV in m
    # IOMMU dirty tracking suffices
    s, effect, m = verdict(migratable(copy.deepcopy(dt_host)), "migration.dirty_tracking", profiles=LM, params=base)
    assert (s, effect) == (P.PASS, None) and "IOMMU_HW_CAP_DIRTY_TRACKING" in m
    # ... on the iommufd backend only
    s, effect, m = verdict(migratable(copy.deepcopy(dt_host)), "migration.dirty_tracking", profiles=LM,
                           params=dict(base, iommufd=False))
    assert (s, effect) == (P.FAIL, "block_migration") and "needs the iommufd backend" in m
    # neither: a blocker, or with enable-migration=on a warning
    f = migratable(copy.deepcopy(facts))
    s, effect, m = verdict(f, "migration.dirty_tracking", profiles=LM, params=base)
    assert (s, effect) == (P.FAIL, "block_migration") and "QEMU blocks migration: %s" % (DT_BLOCKER % DEV) in m
    s, effect, m = verdict(f, "migration.dirty_tracking", profiles=LM, params=dict(base, enable_migration="on"))
    assert (s, effect) == (P.WARN, "warning") and "warns %s" % (DT_BLOCKER % DEV) in m
    assert verdict(f, "migration.dirty_tracking", profiles=LM, params=dict(base, enable_migration="off"))[0] == P.NA
    # an mdev never gets IOMMU dirty tracking, even on a host that has it
    add_mdev(dt_host)
    migratable(dt_host, MDEV, mdev=True)
    s, effect, m = verdict(dt_host, "migration.dirty_tracking", MDEV, LM, MDEV, params=base)
    assert (s, effect) == (P.FAIL, "block_migration") and DT_BLOCKER % MDEV in m and "an mdev gets no IOMMU" in m
    migratable(dt_host, MDEV, dma_logging=True, mdev=True)
    assert verdict(dt_host, "migration.dirty_tracking", MDEV, LM, MDEV, params=base)[:2] == (P.PASS, None)


@pytest.mark.parametrize("release", RELEASES)
def test_migration_p2p(facts, release):
    base = {"qemu_version": release}
    add_mdev(facts)
    both = [DEV, MDEV]
    p2p = "\"Multiple VFIO devices migration is supported only if all of them support P2P migration\""
    f = migratable(migratable(copy.deepcopy(facts), p2p=True), MDEV, p2p=True, mdev=True)
    assert verdict(f, "migration.p2p", None, LM, both, params=base)[:2] == (P.PASS, None)
    f = migratable(migratable(copy.deepcopy(facts), p2p=True), MDEV, p2p=False, mdev=True)
    s, effect, m = verdict(f, "migration.p2p", None, LM, both, params=base)
    assert (s, effect) == (P.FAIL, "block_migration") and p2p in m
    s, effect, m = verdict(f, "migration.p2p", None, LM, both, params=dict(base, enable_migration="on"))
    assert (s, effect) == (P.FAIL, "refuse") and p2p in m
    f = vfio_features(migratable(copy.deepcopy(facts)), MDEV, mdev=True)   # only one can migrate
    assert verdict(f, "migration.p2p", None, LM, both, params=base)[0] == P.NA


VIOMMU_BLOCKER = "\"%s: Migration is currently not supported with vIOMMU enabled\""


@pytest.mark.parametrize("release", RELEASES)
def test_migration_viommu_per_release(facts, release):
    base = {"qemu_version": release}
    relaxed = since(release, 11, 0)
    no_log = migratable(copy.deepcopy(facts))                  # migrates; no device dirty tracking
    with_log = migratable(copy.deepcopy(facts), dma_logging=True)
    # intel-iommu, a device without DMA logging: blocked up to 10.2, migrates from 11.0
    s, effect, m = verdict(no_log, "migration.viommu", None, LM + INTEL, params=base)
    if relaxed:
        assert (s, effect) == (P.PASS, None)
    else:
        assert (s, effect) == (P.FAIL, "block_migration") and VIOMMU_BLOCKER % DEV in m
    # with DMA logging: blocked everywhere, unless x-device-dirty-page-tracking=off from 11.0
    s, effect, m = verdict(with_log, "migration.viommu", None, LM + INTEL, params=base)
    assert (s, effect) == (P.FAIL, "block_migration") and VIOMMU_BLOCKER % DEV in m
    s, effect, m = verdict(with_log, "migration.viommu", None, LM + INTEL,
                           params=dict(base, x_device_dirty_page_tracking=False))
    assert (s, effect) == ((P.PASS, None) if relaxed else (P.FAIL, "block_migration"))
    s, effect, m = verdict(with_log, "migration.viommu", None, LM + INTEL, params=dict(base, enable_migration="on"))
    assert (s, effect) == (P.FAIL, "refuse") and VIOMMU_BLOCKER % DEV in m
    # the device's DMA logging unknown: 10.x blocks anyway, 11.0+ cannot tell
    s, effect, m = verdict(facts, "migration.viommu", None, LM + INTEL, params=base)
    assert (s, effect) == ((P.WARN, None) if relaxed else (P.FAIL, "block_migration"))
    # a device that cannot migrate has its own blocker first
    plain = vfio_features(copy.deepcopy(facts))
    s, effect, m = verdict(plain, "migration.viommu", None, LM + INTEL, params=base)
    assert s == P.NA and VIOMMU_BLOCKER % DEV not in m and "see migration.device" in m
    # amd-iommu: unmigratable without pci-id (10.1+)
    amd = "\"State blocked by non-migratable device 'amd-iommu'\""
    s, effect, m = verdict(no_log, "migration.viommu", None, LM + AMD, params=base)
    assert (s, effect) == (P.FAIL, "block_migration") and amd in m
    s, effect, m = verdict(no_log, "migration.viommu", None, LM + AMD, params=dict(base, pci_id="iommupci0"))
    assert (amd in m) == (not since(release, 10, 1))
    assert (s, effect) == ((P.PASS, None) if relaxed else (P.FAIL, "block_migration"))
    # arm-smmuv3: accel=on (11.0+) blocks migration by itself
    accel = "\"Migration not supported with SMMUv3 accelerator mode enabled\""
    s, effect, m = verdict(no_log, "migration.viommu", None, LM + SMMU, params=base)
    assert s == P.FAIL and (accel in m) == relaxed
    s, effect, m = verdict(no_log, "migration.viommu", None, LM + SMMU, params=dict(base, accel=False))
    assert accel not in m
    # no vIOMMU, or enable-migration=off: nothing to say
    assert verdict(no_log, "migration.viommu", None, LM, params=base)[0] == P.NA
    assert verdict(no_log, "migration.viommu", None, LM + INTEL, params=dict(base, enable_migration="off"))[0] == P.NA


# ---------------------------------------------------------------------------
# qemu_version outside the verified releases


@pytest.mark.parametrize("version,note,rules", [
    ("12.0", "QEMU 12.0 is newer than the rules: evaluated with the rules of 11.1", "11.1"),
    ("11.2.1", "QEMU 11.2 is newer than the rules: evaluated with the rules of 11.1", "11.1"),
    ("master", "'master' is not a QEMU release: evaluated with the rules of QEMU 11.1", "11.1"),
    ("9.2", "QEMU 9.2 is older than the rules: evaluated with the rules of 10.0", "10.0"),
    ("8.2.2", "QEMU 8.2 is older than the rules: evaluated with the rules of 10.0", "10.0"),
])
def test_qemu_version_outside_the_rules(facts, version, note, rules):
    r = run(facts, INTEL, params={"qemu_version": version})
    x = find(r, "config.qemu_version")
    assert x["status"] == P.WARN and x["qemu_effect"] is None and note in x["message"]
    assert "10.0 (oracle), 10.1 (source), 10.2 (source), 11.0 (source), 11.1 (oracle)" in x["remedy"]
    m = find(r, "viommu.intel.caching_mode")["message"]
    assert (CACHING_NEW in m) == (rules == "11.1") and (CACHING_OLD in m) == (rules == "10.0")


def test_qemu_version_verified_unparsable_and_default(facts):
    for version in RELEASES + ("10.0.13", "v11.1.3", None, ""):
        r = run(facts, INTEL, params={"qemu_version": version} if version is not None else None)
        assert not [x for x in r["findings"] if x["id"] == "config.qemu_version"], version
    r = run(facts, INTEL)                                      # default: 11.1's rules and words
    assert CACHING_NEW in find(r, "viommu.intel.caching_mode")["message"]
    r = run(facts, INTEL, params={"qemu_version": "next"})
    x = find(r, "config.profiles")
    assert x["status"] == P.FAIL and "qemu_version must be a QEMU release like '11.1' or '10.0.13'" in x["message"]
    assert not [x for x in r["findings"] if x["id"] == "config.qemu_version"]
    assert CACHING_NEW in find(r, "viommu.intel.caching_mode")["message"]
    # the warning belongs to the profiles that read qemu_version
    r = run(facts, ("passthrough",), params=None)
    assert not [x for x in r["findings"] if x["id"] == "config.qemu_version"]


# ---------------------------------------------------------------------------
# Defects found in real use: setup facts, Ansible's own types


SETUP_FACTS = {"devices": {"sda": {"model": "QEMU HARDDISK"}}, "cmdline": {"BOOT_IMAGE": "/vmlinuz", "quiet": True},
               "distribution": "Debian", "kernel": "6.12.0-amd64"}


def test_unwrap_facts_iommu_wins_over_setup_keys(facts):
    ansible_facts = dict(SETUP_FACTS, iommu=facts)
    assert unwrap_facts(ansible_facts) is facts
    assert unwrap_facts({"ansible_facts": ansible_facts}) is facts
    assert unwrap_facts(dict(SETUP_FACTS, ansible_iommu=facts)) is facts
    assert unwrap_facts(facts) is facts
    f = check_filter.FilterModule().filters()["check"]
    a = f(ansible_facts, profiles=["passthrough"], host="h1")
    b = f(facts, profiles=["passthrough"], host="h1")
    assert a == b and a["selected"]["pci"] == [DEV, BUSY]
    assert "no firmware section" not in json.dumps(a)


def _jmespath_checks():
    return [{"name": "groups", "expression": "length(keys(groups))", "operator": "ge", "expected": 2},
            {"name": "release", "expression": "starts_with(kernel.release, '7.')", "operator": "truthy"},
            {"name": "drivers", "scope": "device", "expression": "starts_with(driver, 'vfio')", "operator": "truthy"},
            {"name": "vendors", "expression": "contains(vendors, 'intel_vtd')", "expected": True},
            {"name": "widest", "expression": "max_by(values(groups), &to_number(id)).id", "operator": "truthy"}]


def _assert_custom_pass(r):
    for name in ("groups", "release", "vendors", "widest"):
        x = find(r, "custom.%s" % name)
        assert x["status"] == P.PASS, x
        assert x["qemu_effect"] is None
    assert find(r, "custom.drivers", DEV)["status"] == P.PASS


def _types(obj, acc):
    acc.add(type(obj))
    if isinstance(obj, dict):
        for k, v in obj.items():
            acc.add(type(k))
            _types(v, acc)
    elif isinstance(obj, list):
        for v in obj:
            _types(v, acc)
    return acc


def test_plain_facts_custom_checks(facts):
    pytest.importorskip("jmespath")
    assert facts["kernel"]["release"].startswith("7.")
    _assert_custom_pass(run(facts, custom=_jmespath_checks()))


def test_custom_checks_on_unsafe_types(facts):
    pytest.importorskip("jmespath")
    unsafe_proxy = pytest.importorskip("ansible.utils.unsafe_proxy")
    wrapped = unsafe_proxy.wrap_var(copy.deepcopy(facts))
    params = unsafe_proxy.wrap_var({"qemu_version": "10.0", "caching_mode": True})
    r = P.evaluate(wrapped, ["passthrough", "intel_viommu"], unsafe_proxy.wrap_var([DEV]), host="h1",
                   custom=unsafe_proxy.wrap_var(_jmespath_checks()), params=params)
    _assert_custom_pass(r)
    assert CACHING_OLD not in json.dumps(r) and r["params"]["qemu_version"] == "10.0"
    assert find(r, "viommu.intel.caching_mode")["status"] == P.PASS
    assert {x["message"].__class__ for x in r["findings"]} == {str}   # plain str, not Ansible's subclasses
    json.dumps(r)


def _tag(value, origin):
    """A deep copy made of ansible-core 2.19's tagged types (what templating hands a filter)."""
    if isinstance(value, dict):
        return origin.tag(dict((_tag(k, origin), _tag(v, origin)) for k, v in value.items()))
    if isinstance(value, list):
        return origin.tag([_tag(v, origin) for v in value])
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return origin.tag(value)
    return value


def test_custom_checks_on_tagged_types(facts):
    pytest.importorskip("jmespath")
    try:
        from ansible._internal._datatag._tags import Origin
    except ImportError:
        pytest.skip("ansible-core < 2.19 has no tagged types")
    origin = Origin(path="/etc/ansible/facts.d/iommu.json", line_num=1)
    tagged = _tag(copy.deepcopy(facts), origin)
    kinds = _types(tagged, set())
    assert dict not in kinds and str not in kinds and list not in kinds   # really not plain JSON types
    r = P.evaluate(tagged, _tag(["passthrough"], origin), _tag([DEV], origin), host="h1",
                   custom=_tag(_jmespath_checks(), origin))
    _assert_custom_pass(r)
    assert r["selected"]["pci"] == [DEV]
    json.dumps(r)


# ---------------------------------------------------------------------------
# check(vm=...)


def test_check_with_vm_requirements_dict(facts):
    f = check_filter.FilterModule().filters()["check"]
    vm = {"source": "libvirt", "name": "vm1", "profiles": ["passthrough", "intel_viommu"],
          "params": {"caching_mode": True, "aw_bits": 39, "qemu_version": "10.0", "memory": "ignored"},
          "devices": [DEV], "problems": [{"message": "a vhost-user device is not judged"}]}
    r = f({"iommu": facts}, vm=vm, host="h1")
    assert r["profiles"] == ["passthrough", "intel_viommu"] and r["selected"]["pci"] == [DEV]
    assert r["params"]["aw_bits"] == 39 and r["params"]["qemu_version"] == "10.0"
    assert find(r, "viommu.intel.caching_mode")["status"] == P.PASS
    assert find(r, "viommu.intel.aw_bits", DEV)["status"] == P.PASS
    x = find(r, "vm.definition")
    assert x["status"] == P.WARN and "a vhost-user device is not judged" in x["message"] and x["qemu_effect"] is None
    # explicit arguments win over the VM's
    r = f({"iommu": facts}, vm=vm, params={"caching_mode": False}, devices=[BUSY], host="h1")
    assert r["selected"]["pci"] == [BUSY] and find(r, "viommu.intel.caching_mode")["status"] == P.FAIL
    assert CACHING_OLD in find(r, "viommu.intel.caching_mode")["message"]     # still the VM's QEMU 10.0
    # a VM that assigns no device: every VFIO device, and a warning
    r = f({"iommu": facts}, vm=dict(vm, devices=[], problems=[]), host="h1")
    assert r["selected"]["pci"] == [DEV, BUSY] and "assigns no host device" in find(r, "vm.definition")["message"]
    for junk in ({"profiles": "intel_viommu"}, 42, "<domain"):
        r = f({"iommu": facts}, vm=junk, host="h1")
        assert find(r, "vm.definition")["status"] == P.WARN and r["status"] in (P.FAIL, P.WARN)


# ---------------------------------------------------------------------------
# Docs and catalogue


def _table_script():
    spec = importlib.util.spec_from_file_location("preflight_checks_table",
                                                  os.path.join(REPO, "scripts", "preflight-checks-table.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_docs_tables_match_the_catalogue():
    mod = _table_script()
    with open(os.path.join(REPO, "docs", "preflight.md")) as f:
        doc = f.read()
    assert mod.render(doc, P) == doc, "docs/preflight.md is stale: run python3 scripts/preflight-checks-table.py"
    table = mod.checks_table(P)
    for entry in P.catalogue():
        row = [line for line in table.split("\n") if line.startswith("| `%s` |" % entry["id"])]
        assert len(row) == 1
        for rel in entry["verified"]:
            assert "QEMU %s" % rel in row[0]
        assert ("QEMU 1" in row[0]) == bool(entry["verified"])
    assert "| 11.1 (default) | oracle" in mod.releases_table(P)


def test_role_accepts_every_profile():
    yaml = pytest.importorskip("yaml")
    with open(os.path.join(REPO, "roles", "preflight", "meta", "argument_specs.yml")) as f:
        spec = yaml.safe_load(f)
    choices = spec["argument_specs"]["main"]["options"]["preflight_profiles"]["choices"]
    assert sorted(choices) == sorted(P.PROFILES)


def test_catalogue_order_and_verified():
    from ansible_collections.iommu.host.plugins.module_utils.policy.checks import all as families
    ids = [c["id"] for c in P.catalogue()]
    rank = dict((fam.__name__, i) for i, fam in enumerate(families.FAMILIES))
    modules = [rank[P.CHECKS[i]["func"].__module__] for i in ids]
    assert modules == sorted(modules), ids       # registration order = family order, whatever was imported first
    assert ids[:2] == ["host.iommu_firmware", "host.iommu_enabled"] and ids[-2:] == ["device.pasid", "device.ats"]
    assert ids.index("device.hw_info") < ids.index("migration.device") < ids.index("viommu.intel.config")
    for c in P.catalogue():
        assert all(re.match(r"^\d+\.\d+$", v) for v in c["verified"])
        assert all(tuple(int(x) for x in v.split(".")) in R.VERIFIED for v in c["verified"])
        assert c["mdev"] == (P.CHECKS[c["id"]]["mdev"] is True)


# ---------------------------------------------------------------------------
# Random inputs: never an exception, qemu_effect always one of four values


VERSIONS = st.one_of(st.sampled_from(list(RELEASES) + ["10.0.13", "9.2", "12.0", "master", "next", "", None, 11.1]),
                     st.text(max_size=8))
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-3, 70), st.text(max_size=6),
                 st.sampled_from(["on", "off", "auto", "4k", "64k", "host", "intel-iommu", "arm-smmuv3"]))
FEATURE = st.one_of(
    st.none(), JUNK,
    st.fixed_dictionaries({"supported": st.one_of(st.booleans(), JUNK)}, optional={
        "flags": st.one_of(JUNK, st.fixed_dictionaries({}, optional={
            "stop_copy": st.booleans(), "p2p": st.booleans(), "pre_copy": st.booleans()})),
        "errno": st.one_of(st.integers(-2, 200), st.sampled_from(["ENOTTY", "EINVAL", "E2BIG", "EBOGUS", ""])),
        "raw": JUNK, "error": st.one_of(JUNK, st.fixed_dictionaries({}, optional={"message": JUNK, "errno": JUNK}))}))
PARAM_NAMES = sorted(P.PARAMS)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_inputs_never_raise(gathered, data):
    f = copy.deepcopy(gathered)
    add_mdev(f)
    for dev_id, where in ((DEV, "devices"), (BUSY, "devices"), (MDEV, "mdevs")):
        if data.draw(st.booleans()):
            f[where][dev_id]["vfio_features"] = data.draw(st.one_of(JUNK, st.fixed_dictionaries(
                {}, optional={"migration": FEATURE, "dma_logging": FEATURE, "skipped": JUNK})))
        if data.draw(st.booleans()):
            f[where][dev_id]["vfio"] = data.draw(st.one_of(JUNK, st.fixed_dictionaries(
                {}, optional={"bound": JUNK, "driver": JUNK, "variant": JUNK})))
    profiles = data.draw(st.lists(st.sampled_from(sorted(P.PROFILES)), min_size=0, max_size=4, unique=True))
    params = data.draw(st.dictionaries(st.sampled_from(PARAM_NAMES), JUNK, max_size=6))
    params["qemu_version"] = data.draw(VERSIONS)
    custom = data.draw(st.sampled_from([None, [{"name": "g", "expression": "length(keys(groups))"}], ["junk"]]))
    devices = data.draw(st.sampled_from(["all_vfio", DEV, [DEV, BUSY, MDEV], MDEV, None, 5, []]))
    r = P.evaluate(f, profiles, devices, host="h", params=params, custom=custom)
    assert r["status"] in (P.PASS, P.WARN, P.FAIL)
    bad = [x for x in r["findings"] if "Internal error" in x["message"]]
    assert not bad, bad
    for x in r["findings"]:
        assert x["qemu_effect"] in EFFECTS, x
        if x["qemu_effect"] is not None:
            assert x["status"] in (P.FAIL, P.WARN), x
    json.dumps(r)


@pytest.mark.parametrize("series", sorted(ORACLE_STRINGS), ids=["10.0", "11.1"])
def test_properties_without_host_requirement_exist_in_both_oracles(series):
    """vm_requirements drops no problem for these properties only because both releases have them."""
    from ansible_collections.iommu.host.plugins.module_utils.vmdef.common import NO_HOST_REQUIREMENT
    lines = set(_strings(series))
    for model, props in NO_HOST_REQUIREMENT.items():
        for prop in props:
            assert prop in lines, (model, prop)
