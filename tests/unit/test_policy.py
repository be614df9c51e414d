# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The preflight requirement engine (module_utils/policy/) and the iommu.host.check filter.

Facts come from synthetic sysfs trees gathered with a fake iommufd query (as in test_facts.py),
then varied by hand: hw_info answers are built with the real decoders from packed vendor
structs, so the engine sees exactly what iommu_facts produces. Every check id has a pass, a
fail (or warn) and a not-applicable case, and QEMU's wording is asserted verbatim
(qemu-checks.md, QEMU master ece408818d).
"""

import copy
import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.iommu.host.plugins.filter import check as check_filter
from ansible_collections.iommu.host.plugins.module_utils.decode import api as D
from ansible_collections.iommu.host.plugins.module_utils import iommu_facts
from ansible_collections.iommu.host.plugins.module_utils.policy import api as P
from ansible_collections.iommu.host.plugins.module_utils.policy import custom as policy_custom
from ansible_collections.iommu.host.plugins.module_utils.policy import releases as R
from ansible_collections.iommu.host.plugins.module_utils.policy.engine import _RANK
from ansible_collections.iommu.host.plugins.module_utils.policy.facts import _dev_path
from tests.support import synthetic
from tests.unit.test_facts import Recorder

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEV = "0000:01:00.0"        # vfio-pci, idle, queried through iommufd
DEV2 = "0000:01:01.0"       # e1000e
BUSY = "0000:01:02.0"       # vfio-pci, held by pid 777
SHARED = "0000:81:01.0"     # e1000e, in a group with a bridge and another e1000e
MDEV = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"

# QEMU's emulated VT-d (test bed): 39-bit, legacy mode, no nesting
VTD_CAP_39 = synthetic.VTD_CAP
VTD_ECAP_LEGACY = synthetic.VTD_ECAP
# QEMU intel-iommu,x-scalable-mode=on,aw-bits=48 (testbed.md)
VTD_CAP_48 = 0xD2008C222F0686
# A full-featured host VT-d: 48-bit, FS1GP; ECAP SMTS SLADS SLTS FLTS SMPWC NEST PASID PSS=19 DT IR
VTD_CAP_FULL = VTD_CAP_48 | (1 << 56)
VTD_ECAP_FULL = (0xF00F4A | (1 << 43) | (1 << 45) | (1 << 46) | (1 << 47) | (1 << 48) | (1 << 26)
                 | (1 << 40) | (19 << 35) | (1 << 2))

# A host SMMUv3 compatible with QEMU's accel=on values (smmuv3_accel_check_hw_compatible)
SMMU_IDR = {
    "idr0": (1 << 27) | (2 << 21) | (2 << 2) | (1 << 1) | (1 << 0) | (1 << 10) | (2 << 6) | (1 << 4),
    "idr1": 16 | (20 << 6),
    "idr3": 1 << 10,
    "idr5": 5 | (1 << 4) | (1 << 5) | (1 << 6),
}

PROFILE_NAMES = sorted(P.PROFILES)


# ---------------------------------------------------------------------------
# Fact builders


@pytest.fixture(scope="module")
def gathered(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tree"))
    addrs = synthetic.build(root, n_devices=3, vfio=(0, 2), bridge_groups=1,
                            holders={777: ["/dev/vfio/devices/vfio1", "/dev/iommu"]})
    assert addrs[:3] == [DEV, DEV2, BUSY] and SHARED in addrs
    return iommu_facts.gather(root=root, query=Recorder())


@pytest.fixture
def facts(gathered):
    """Intel host (QEMU-like VT-d), DEV on vfio-pci with hw_info, BUSY in use, scalable mode unknown."""
    return copy.deepcopy(gathered)


def hw(type_id, caps=0x8, pasid=0, release="7.3.4", **regs):
    data = D.pack_hw_info_data(type_id, **regs)
    out = iommu_facts.hw_info_result({"type_id": type_id, "data": data, "data_len": len(data),
                                      "capabilities": caps, "max_pasid_log2": pasid}, release)
    out["device_reset"] = True
    out["consistent_with_sysfs"] = None
    return out


def set_vtd(f, cap, ecap, caps=0x8, pasid=0, sysfs_too=True, flags=1):
    f["devices"][DEV]["hw_info"] = hw(1, caps, pasid, cap_reg=cap, ecap_reg=ecap, flags=flags)
    if sysfs_too:
        unit = f["units"]["dmar0"]
        unit["registers"].update(cap="%x" % cap, ecap="%x" % ecap)
        unit["decoded"] = D.decode_vtd(cap, ecap)
    return f


def sysfs_only(f, addr=DEV):
    f["devices"][addr]["hw_info"] = {"source": "none", "skipped": "sysfs_only: device not opened"}
    return f


def scalable(f, on=True):
    f["cmdline"]["effects"]["scalable_mode"] = on
    return f


def smmu_host(f, caps=0x0, pasid=20, **idr):
    regs = dict(SMMU_IDR, **idr)
    f["vendors"] = ["arm_smmuv3"]
    f["firmware"]["acpi"]["dmar"]["present"] = False
    f["firmware"]["acpi"]["iort"]["present"] = True
    f["units"] = {"smmu3.0x0000000009050000": {"name": "smmu3.0x0000000009050000", "vendor": "arm_smmuv3",
                                               "registers": None, "decoded": None, "devices": [DEV],
                                               "source": "sysfs:/sys/class/iommu/smmu3.0x0000000009050000"}}
    for dev in f["devices"].values():
        dev["iommu_unit"] = "smmu3.0x0000000009050000"
        dev["iommu_vendor"] = "arm_smmuv3"
    f["devices"][DEV]["hw_info"] = hw(2, caps, pasid, **regs)
    return f


def amd_host(f, efr=synthetic.AMD_EFR, efr2=0, caps=0x8, with_hw=True):
    f["vendors"] = ["amd"]
    f["firmware"]["acpi"]["dmar"]["present"] = False
    f["firmware"]["acpi"]["ivrs"]["present"] = True
    f["units"] = {"ivhd0": {"name": "ivhd0", "vendor": "amd", "registers": {"efr": efr, "efr2": efr2},
                            "decoded": D.decode_amd(efr, efr2), "devices": [DEV], "source": "sysfs:/sys/class/iommu/ivhd0"}}
    for dev in f["devices"].values():
        dev["iommu_unit"] = "ivhd0"
        dev["iommu_vendor"] = "amd"
    if with_hw:
        f["devices"][DEV]["hw_info"] = hw(4, caps, 0, efr=efr, efr2=efr2)
    else:
        sysfs_only(f)
    return f


def add_mdev(f):
    f["mdevs"][MDEV] = {"uuid": MDEV, "parent": DEV2, "mdev_type": "i915-GVTg_V5_4", "driver": "vfio_mdev",
                        "iommu_group": "9", "vfio_cdev": "vfio5", "has_iommu": False, "note": "mediated"}
    return f


def _feature_errno(request, number, name):
    """A failed VFIO_DEVICE_FEATURE probe as iommu_uapi reports it (supported false, errno, error)."""
    return {"supported": False, "errno": number, "request": request,
            "error": {"code": "feature_not_supported", "errno": name, "message": "%s: %s" % (request, name),
                      "remedy": None, "step": "VFIO_DEVICE_FEATURE(%s)" % request, "device": None}}


def vfio_features(f, addr=DEV, migration=None, dma_logging=False, mdev=False):
    """Set a device's VFIO_DEVICE_FEATURE answers (iommu_uapi.probe_features shape).

    migration: None = plain vfio-pci (ENOTTY), else the flags {stop_copy, p2p, pre_copy}.
    """
    if migration is None:
        mig = _feature_errno("GET|MIGRATION", 25, "ENOTTY")
    else:
        flags = dict({"stop_copy": False, "p2p": False, "pre_copy": False}, **migration)
        mig = {"supported": bool(flags["stop_copy"]), "flags": flags, "request": "GET|MIGRATION",
               "raw": (1 if flags["stop_copy"] else 0) | (2 if flags["p2p"] else 0) | (4 if flags["pre_copy"] else 0)}
    log = {"supported": True, "request": "PROBE|DMA_LOGGING_START"} if dma_logging else _feature_errno(
        "PROBE|DMA_LOGGING_START", 25, "ENOTTY")
    (f["mdevs"] if mdev else f["devices"])[addr]["vfio_features"] = {
        "source": "vfio:VFIO_DEVICE_FEATURE", "migration": mig, "dma_logging": log}
    return f


def migratable(f, addr=DEV, dma_logging=False, p2p=False, mdev=False):
    """A device on a VFIO variant driver with migration (STOP_COPY), with or without DMA logging."""
    return vfio_features(f, addr, {"stop_copy": True, "p2p": p2p}, dma_logging, mdev)


def run(f, profiles=("passthrough",), devices=DEV, **kw):
    return P.evaluate(f, list(profiles), devices, host="h1", **kw)


def find(result, check_id, device=None):
    hits = [x for x in result["findings"] if x["id"] == check_id and x["device"] == device]
    assert len(hits) == 1, "%s/%s: %s" % (check_id, device, [(x["id"], x["device"]) for x in result["findings"]])
    return hits[0]


def status(f, check_id, device=DEV, profiles=("passthrough",), devices=DEV, **kw):
    x = find(run(f, profiles, devices, **kw), check_id, device)
    return x["status"], x["message"], x


def status2(*args, **kw):
    return status(*args, **kw)[:2]


def no_internal_errors(result):
    bad = [x for x in result["findings"] if "Internal error" in x["message"]]
    assert not bad, bad


# ---------------------------------------------------------------------------
# Shape of a result and of a finding


def test_result_and_finding_shape(facts):
    vfio_features(facts)   # plain vfio-pci: QEMU blocks its migration
    r = run(facts, ["passthrough", "live_migration"])
    assert set(r) >= {"host", "status", "findings", "summary", "failed", "counts", "profiles", "params",
                      "selected", "engine_version"}
    assert r["host"] == "h1" and r["selected"] == {"pci": [DEV], "mdev": []}
    for x in r["findings"]:
        assert set(x) >= {"id", "host", "device", "status", "message", "evidence", "remedy", "rule", "qemu_effect"}
        assert x["status"] in P.STATUSES and x["host"] == "h1"
        assert x["qemu_effect"] in (None, "refuse", "block_migration", "warning", "requirement")
        assert x["qemu_effect"] is None or x["status"] in (P.FAIL, P.WARN)
        assert isinstance(x["evidence"], dict) and "source" in x["evidence"]
        assert x["rule"]
        if x["status"] in (P.FAIL, P.WARN):
            assert x["remedy"], x
        json.dumps(x)  # plain data
    ranks = [_RANK[x["status"]] for x in r["findings"]]
    assert ranks == sorted(ranks)  # failures first
    assert r["summary"][0].startswith("h1: FAIL - ")
    assert len(r["summary"]) == len(r["findings"]) + 1
    assert r["failed"] == [line for line in r["summary"][1:] if line.startswith("FAIL")]
    assert r["counts"][P.FAIL] == len(r["failed"])


def test_every_profile_check_is_registered_and_documented():
    docs = open(os.path.join(REPO, "docs", "preflight.md")).read()
    for name, prof in P.PROFILES.items():
        assert set(prof["checks"]) <= set(P.CHECKS), name
        assert set(P.PROFILES["passthrough"]["checks"]) <= set(prof["checks"])
        assert set(prof["params"]) <= set(P.PARAMS)
        assert "`%s`" % name in docs
    for cid in P.CHECKS:
        assert "`%s`" % cid in docs, cid
    for name in P.PARAMS:
        assert "`%s`" % name in docs, name
    ids = [c["id"] for c in P.catalogue()]
    assert len(ids) == len(set(ids)) == len(P.CHECKS)


def test_evidence_paths_resolve_in_the_facts(facts):
    jmespath = pytest.importorskip("jmespath")
    r = run(facts, PROFILE_NAMES, [DEV, BUSY], params={"x_flts": True, "x_scalable_mode": True, "ats": True})
    checked = 0
    for x in r["findings"]:
        for key, value in x["evidence"].items():
            if key.startswith(("devices.", "units.", "kernel.", "cmdline.", "firmware.", "groups.")):
                assert jmespath.search(key, facts) == value, (x["id"], key)
                checked += 1
    assert checked > 50


# ---------------------------------------------------------------------------
# Host checks


def test_host_iommu_firmware(facts):
    s, m = status2(facts, "host.iommu_firmware", None)
    assert s == P.PASS and "ACPI DMAR (Intel VT-d)" in m
    f = copy.deepcopy(facts)
    f["firmware"]["acpi"]["dmar"]["present"] = False
    s, m, x = status(f, "host.iommu_firmware", None)
    assert s == P.WARN  # units active, table not visible
    f["present"] = False
    s, m, x = status(f, "host.iommu_firmware", None)
    assert s == P.FAIL and "no ACPI DMAR, IVRS or IORT table" in m and "VT-d" in x["remedy"]
    f["vendors"] = ["virtio"]
    assert status(f, "host.iommu_firmware", None)[0] == P.NA
    f = copy.deepcopy(facts)
    f["firmware"] = {"acpi": {}, "devicetree": {"present": True, "iommu_nodes": ["smmu@9050000"]}}
    s, m = status2(f, "host.iommu_firmware", None)
    assert s == P.PASS and "smmu@9050000" in m


def test_host_iommu_enabled(facts):
    s, m = status2(facts, "host.iommu_enabled", None)
    assert s == P.PASS and "dmar0 (intel_vtd)" in m
    f = copy.deepcopy(facts)
    f["present"], f["units"], f["vendors"] = False, {}, []
    f["cmdline"]["effects"]["intel_iommu"] = None
    s, m, x = status(f, "host.iommu_enabled", None)
    assert s == P.FAIL and "not booted with intel_iommu=on" in m and "intel_iommu=on" in x["remedy"]
    del f["present"]
    assert status(f, "host.iommu_enabled", None)[0] == P.FAIL
    add_mdev(facts)
    s, m = status2(facts, "host.iommu_enabled", None, devices=MDEV)
    assert s == P.NA and "mediated" in m


def test_host_iommu_not_disabled(facts):
    s, m = status2(facts, "host.iommu_not_disabled", None)
    assert s == P.PASS and "iommu=pt" in m
    f = copy.deepcopy(facts)
    f["cmdline"]["effects"]["intel_iommu"] = "off"
    s, m, x = status(f, "host.iommu_not_disabled", None)
    assert s == P.FAIL and "intel_iommu=off" in m and "Remove intel_iommu=off" in x["remedy"]
    f["cmdline"]["effects"].update(intel_iommu=None, iommu_off=True)
    assert "iommu=off" in status(f, "host.iommu_not_disabled", None)[1]
    f["cmdline"]["effects"].update(iommu_off=False, amd_iommu="off")   # irrelevant on an Intel host
    s, m = status2(f, "host.iommu_not_disabled", None)
    assert s == P.PASS and "amd_iommu=off is set but does not concern" in m
    smmu_host(f)
    f["cmdline"]["effects"]["amd_iommu"] = None
    assert status(f, "host.iommu_not_disabled", None)[0] == P.NA
    f["cmdline"] = {}
    assert status(f, "host.iommu_not_disabled", None)[0] == P.FAIL


def test_host_default_domain(facts):
    s, m = status2(facts, "host.default_domain", None)
    assert s == P.PASS and "DMA-FQ" in m and "assigned devices' groups" in m
    f = copy.deepcopy(facts)
    f["groups"][f["devices"][DEV]["iommu_group"]]["type"] = "identity"
    assert "passthrough" in status(f, "host.default_domain", None)[1]
    f["groups"][f["devices"][DEV]["iommu_group"]]["type"] = "unknown"
    assert status(f, "host.default_domain", None)[0] == P.WARN
    for g in f["groups"].values():
        g["type"] = None
    s, m = status2(f, "host.default_domain", None)
    assert s == P.NA and "5.11" in m
    f["groups"] = {}
    s, m = status2(f, "host.default_domain", None)
    assert s == P.FAIL and "no IOMMU groups" in m


def test_host_iommufd(facts):
    s, m = status2(facts, "host.iommufd", None)
    assert s == P.PASS and "/dev/iommu exists" in m
    f = copy.deepcopy(facts)
    f["kernel"]["iommufd"].update(available=False, supported=False, config="n", module=None)
    s, m, x = status(f, "host.iommufd", None)
    assert s == P.FAIL and "Could not open '/dev/iommu': No such file or directory" in m
    assert "CONFIG_IOMMUFD=y" in x["remedy"]
    f["kernel"]["iommufd"].update(supported=True, config="m")
    s, m, x = status(f, "host.iommufd", None)
    assert s == P.FAIL and "not loaded" in m and "modprobe iommufd" in x["remedy"]
    s, m = status2(f, "host.iommufd", None, params={"iommufd": False})
    assert s == P.NA and "legacy VFIO container" in m


def test_host_vfio_cdev(facts):
    assert status(facts, "host.vfio_cdev", None)[0] == P.PASS
    f = copy.deepcopy(facts)
    f["kernel"]["vfio_device_cdev"].update(available=False, supported=True, config="y")
    assert status(f, "host.vfio_cdev", None)[0] == P.PASS
    f["kernel"]["vfio_device_cdev"].update(supported=False, config="n")
    s, m = status2(f, "host.vfio_cdev", None)
    assert s == P.FAIL and "failed to find vfio-dev/vfioX/dev" in m
    f["kernel"]["vfio_device_cdev"].update(supported=None, config=None)
    f["kernel"]["config"] = {"CONFIG_VFIO": "n"}
    s, m = status2(f, "host.vfio_cdev", None)
    assert s == P.FAIL and "CONFIG_VFIO is not set" in m
    f["kernel"]["config"] = {}
    assert status(f, "host.vfio_cdev", None)[0] == P.WARN
    assert status(f, "host.vfio_cdev", None, params={"iommufd": "off"})[0] == P.NA


def test_host_interrupt_remapping(facts):
    s, m = status2(facts, "host.interrupt_remapping", None)
    assert s == P.PASS and "IR-PCI-MSIX" in m
    f = copy.deepcopy(facts)
    f["kernel"]["interrupt_remapping"].update(enabled=False, evidence=["PCI-MSIX-0000:00:09.0"])
    s, m, x = status(f, "host.interrupt_remapping", None)
    assert s == P.FAIL and "error bind device fd=N to iommufd=M" in m and "intremap=on" in x["remedy"]
    f["kernel"]["allow_unsafe_interrupts"] = True
    s, m = status2(f, "host.interrupt_remapping", None)
    assert s == P.WARN and "allow_unsafe_interrupts" in m
    f["cmdline"]["effects"]["intremap_off"] = True
    assert "intremap=off" in status(f, "host.interrupt_remapping", None)[1]
    f = copy.deepcopy(facts)
    f["kernel"]["interrupt_remapping"]["enabled"] = None
    assert status(f, "host.interrupt_remapping", None)[0] == P.WARN
    add_mdev(f)
    assert status(f, "host.interrupt_remapping", None, devices=[MDEV])[0] == P.NA


# ---------------------------------------------------------------------------
# Device checks


def test_device_vfio_pci(facts):
    s, m = status2(facts, "device.vfio_driver")
    assert s == P.PASS and "vfio0" in m
    s, m, x = status(facts, "device.vfio_driver", DEV2, devices=DEV2)
    assert s == P.FAIL and "Bound to e1000e, not a VFIO driver" in m and x["qemu_effect"] == "refuse"
    assert "couldn't open directory /sys/bus/pci/devices/%s/vfio-dev" % DEV2 in m
    assert "driver_override" in x["remedy"] and DEV2 in x["remedy"]
    f = copy.deepcopy(facts)
    f["devices"][DEV2]["driver_override"] = "vfio-pci"
    assert "not been re-probed" in status(f, "device.vfio_driver", DEV2, devices=DEV2)[1]
    # a VFIO variant driver (the kernel's vfio-dev/ entry says so, not a list of names) passes
    f["devices"][DEV]["driver"] = "mlx5_vfio_pci"
    f["devices"][DEV]["vfio"].update(driver="mlx5_vfio_pci", variant=True)
    s, m = status2(f, "device.vfio_driver")
    assert s == P.PASS and "Bound to mlx5_vfio_pci, a VFIO variant driver" in m
    f["devices"][DEV]["vfio"]["bound"] = False
    assert status(f, "device.vfio_driver")[0] == P.FAIL
    del f["devices"][DEV]["vfio"]   # facts of iommu.host 0.1: driver == vfio-pci decides
    assert status(f, "device.vfio_driver")[0] == P.FAIL
    f["devices"][DEV]["driver"] = "vfio-pci"
    assert status(f, "device.vfio_driver")[0] == P.PASS
    add_mdev(f)
    s, m = status2(f, "device.vfio_driver", MDEV, devices=MDEV)
    assert s == P.NA and "mediated device" in m


def test_device_not_in_use(facts):
    assert status(facts, "device.not_in_use")[0] == P.PASS
    s, m, x = status(facts, "device.not_in_use", BUSY, devices=BUSY)
    assert s == P.FAIL and "777 (qemu-system-x86)" in m and "error bind device fd=N to iommufd=M" in m
    # merely open(2)ed, not bound to an iommufd: QEMU still starts (oracle, test_oracle_matrix.py)
    held = copy.deepcopy(facts)
    held["devices"][BUSY]["in_use_bound_by"] = []
    s, m, x = status(held, "device.not_in_use", BUSY, devices=BUSY)
    assert s == P.WARN and "777 (qemu-system-x86)" in m and x["qemu_effect"] is None
    add_mdev(facts)
    assert status(facts, "device.not_in_use", MDEV, devices=MDEV)[0] == P.NA
    del facts["devices"][DEV]["in_use_by"]
    assert status(facts, "device.not_in_use")[0] == P.FAIL


def test_device_group_viable(facts):
    s, m = status2(facts, "device.group_viable")
    assert s == P.PASS and "viable" in m
    s, m, x = status(facts, "device.group_viable", SHARED, devices=SHARED)
    other = "0000:81:02.0"
    assert s == P.FAIL and "%s (e1000e) is bound to host drivers" % other in m
    assert "Bind every endpoint of group" in x["remedy"]
    f = copy.deepcopy(facts)
    f["devices"][DEV]["iommu_group"] = None
    assert "no IOMMU group" in status(f, "device.group_viable")[1]
    add_mdev(f)
    assert status(f, "device.group_viable", MDEV, devices=MDEV)[0] == P.NA


def test_device_hw_info(facts):
    s, m = status2(facts, "device.hw_info")
    assert s == P.PASS and "type intel_vtd (1)" in m and "ats_not_supported" in m
    s, m = status2(facts, "device.hw_info", BUSY, devices=BUSY)
    assert s == P.WARN and "Not queried" in m
    s, m, x = status(facts, "device.hw_info", DEV2, devices=DEV2)
    assert s == P.FAIL and "not bound to vfio-pci" in m
    f = copy.deepcopy(facts)
    f["devices"][DEV]["hw_info"] = {"source": "iommufd", "error": {
        "code": "no_interrupt_remapping", "message": "iommufd refused the device: MSI interrupts are not isolated.",
        "remedy": "Enable interrupt remapping.", "errno": "EPERM", "step": "VFIO_DEVICE_BIND_IOMMUFD", "device": DEV}}
    s, m, x = status(f, "device.hw_info")
    assert s == P.FAIL and "VFIO_DEVICE_BIND_IOMMUFD" in m and x["remedy"] == "Enable interrupt remapping."
    f = copy.deepcopy(facts)
    f["devices"][DEV]["hw_info"]["consistent_with_sysfs"] = {"equal": False, "mismatches": ["cap"]}
    assert status(f, "device.hw_info")[0] == P.WARN
    assert status(facts, "device.hw_info", params={"iommufd": False})[0] == P.NA
    add_mdev(facts)
    s, m = status2(facts, "device.hw_info", MDEV, devices=MDEV)
    assert s == P.NA and "mdevs aren't physical devices" in m


# ---------------------------------------------------------------------------
# Live migration


LM = ("live_migration",)


def test_migration_dirty_tracking_from_hw_info(facts):
    f = set_vtd(copy.deepcopy(facts), VTD_CAP_FULL, VTD_ECAP_FULL, caps=0x9)
    s, m, x = status(f, "migration.dirty_tracking", profiles=LM)
    assert s == P.PASS and "IOMMU_HW_CAP_DIRTY_TRACKING" in m
    assert x["evidence"][_dev_path(DEV, "hw_info", "capabilities", "dirty_tracking")] is True
    s, m = status2(facts, "migration.dirty_tracking", profiles=LM)   # the device's DMA logging is unknown
    assert s == P.WARN and "whether the device has DMA logging is unknown" in m
    migratable(facts)                                                 # migrates, no DMA logging
    s, m, x = status(facts, "migration.dirty_tracking", profiles=LM)
    assert s == P.FAIL and x["qemu_effect"] == "block_migration"
    assert "\"%s: VFIO device doesn't support device and IOMMU dirty tracking\"" % DEV in m
    s, m, x = status(facts, "migration.dirty_tracking", profiles=LM, params={"enable_migration": "on"})
    assert s == P.WARN and x["qemu_effect"] == "warning" and "treats all guest memory as dirty" in m
    f = copy.deepcopy(facts)
    f["devices"][DEV]["hw_info"]["capabilities"]["reported_by_kernel"]["dirty_tracking"] = False
    assert "predates IOMMU dirty tracking" in status(f, "migration.dirty_tracking", profiles=LM)[1]
    s, m = status2(facts, "migration.dirty_tracking", profiles=LM, params={"iommufd": False})
    assert s == P.FAIL and "needs the iommufd backend" in m
    assert status(migratable(copy.deepcopy(facts), dma_logging=True), "migration.dirty_tracking",
                  profiles=LM)[0] == P.PASS
    s, m = status2(vfio_features(copy.deepcopy(facts)), "migration.dirty_tracking", profiles=LM)
    assert s == P.NA and "see migration.device" in m   # QEMU stops at the device's own blocker
    add_mdev(facts)
    s, m = status2(facts, "migration.dirty_tracking", MDEV, profiles=LM, devices=MDEV)
    assert s == P.WARN and "an mdev gets no IOMMU dirty tracking" in m
    migratable(facts, MDEV, mdev=True)
    s, m, x = status(facts, "migration.dirty_tracking", MDEV, profiles=LM, devices=MDEV)
    assert s == P.FAIL and "no IOMMU dirty tracking" in m and x["qemu_effect"] == "block_migration"


def test_migration_dirty_tracking_mixed_container_warning(facts):
    f = set_vtd(copy.deepcopy(facts), VTD_CAP_FULL, VTD_ECAP_FULL, caps=0x9, sysfs_too=False)
    f["devices"][BUSY]["hw_info"] = hw(1, 0x8, 0, cap_reg=VTD_CAP_39, ecap_reg=VTD_ECAP_LEGACY)
    migratable(f, BUSY)
    x = find(run(f, LM, [DEV, BUSY]), "migration.dirty_tracking", BUSY)
    assert x["status"] == P.FAIL
    assert "\"IOMMU instance for device %s doesn't support dirty tracking\"" % BUSY in x["message"]


def test_migration_dirty_tracking_derived_per_vendor(facts):
    migratable(facts)   # the device migrates without DMA logging: IOMMU dirty tracking decides
    f = scalable(sysfs_only(set_vtd(copy.deepcopy(facts), VTD_CAP_FULL, VTD_ECAP_FULL)))
    s, m, x = status(f, "migration.dirty_tracking", profiles=LM)
    assert s == P.PASS and "ssads_supported" in m and "derived from dmar0 registers via sysfs" in m
    assert "derived per vendor" in x["evidence"]["basis"]
    assert x["evidence"]["units.dmar0.decoded.ecap.slads"] is True
    scalable(f, False)
    s, m = status2(f, "migration.dirty_tracking", profiles=LM)
    assert s == P.FAIL and "legacy mode" in m
    f["cmdline"]["effects"]["scalable_mode"] = None
    assert status(f, "migration.dirty_tracking", profiles=LM)[0] == P.WARN
    f["kernel"]["config"]["CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON"] = "y"
    assert status(f, "migration.dirty_tracking", profiles=LM)[0] == P.PASS
    s, m = status2(sysfs_only(copy.deepcopy(facts)), "migration.dirty_tracking", profiles=LM)
    assert s == P.FAIL and "ECAP lacks SMTS, SLADS, SMPWC, SLTS" in m
    a = amd_host(copy.deepcopy(facts), efr=synthetic.AMD_EFR | (1 << 52), with_hw=False)
    s, m = status2(a, "migration.dirty_tracking", profiles=LM)
    assert s == P.PASS and "EFR.HDSup" in m and "derived" in m
    a = amd_host(copy.deepcopy(facts), with_hw=False)
    assert status(a, "migration.dirty_tracking", profiles=LM)[0] == P.FAIL
    sm = smmu_host(copy.deepcopy(facts))
    sysfs_only(sm)
    assert status(sm, "migration.dirty_tracking", profiles=LM)[0] == P.WARN


def test_migration_viommu(facts):
    s, m = status2(facts, "migration.viommu", None, profiles=LM)
    assert s == P.NA and "no vIOMMU" in m
    s, m = status2(facts, "migration.viommu", None, profiles=LM + ("smmuv3_accel",))
    assert s == P.FAIL and "\"Migration not supported with SMMUv3 accelerator mode enabled\"" in m
    s, m = status2(facts, "migration.viommu", None, profiles=LM, params={"viommu": "intel-iommu", "qemu_version": "10.2"})
    assert s == P.FAIL and "\"%s: Migration is currently not supported with vIOMMU enabled\"" % DEV in m
    s, m, x = status(facts, "migration.viommu", None, profiles=LM + ("intel_viommu",))
    assert s == P.WARN and "x-device-dirty-page-tracking=off" in x["remedy"]
    assert status(facts, "migration.viommu", None, profiles=LM + ("intel_viommu",),
                  params={"x-device-dirty-page-tracking": "off"})[0] == P.PASS
    s, m = status2(facts, "migration.viommu", None, profiles=LM + ("amd_viommu",))
    assert s == P.FAIL and "unmigratable" in m
    assert status(facts, "migration.viommu", None, profiles=LM + ("amd_viommu",),
                  params={"pci_id": "iommupci0"})[0] == P.WARN      # the device's DMA logging is unknown
    assert status(migratable(facts), "migration.viommu", None, profiles=LM + ("amd_viommu",),
                  params={"pci_id": "iommupci0"})[0] == P.PASS


# ---------------------------------------------------------------------------
# Intel vIOMMU


INTEL = ("intel_viommu",)
GOOD_INTEL = {"caching_mode": True}
NEST = {"caching_mode": True, "x_scalable_mode": True, "x_flts": True}          # QEMU 10.0-11.0 spelling
NEST11 = {"caching_mode": True, "scalable_mode": True, "fsts": True}            # QEMU 11.1 (the default)


def test_intel_config(facts):
    assert status(facts, "viommu.intel.config", None, profiles=INTEL)[0] == P.PASS
    cases = [   # QEMU 11.1's names and words (the default release); per release: test_policy_releases.py
        ({"fsts": True}, "\"fsts is only available in scalable mode\""),
        ({"fsts": True, "scalable_mode": True, "aw_bits": 39},
         "\"Scalable mode(fsts=on): supported value for aw-bits is: 48\""),
        ({"aw_bits": 57}, "\"Legacy mode: supported values for aw-bits are: 39, 48\""),
        ({"aw_bits": 57, "scalable_mode": True}, "\"Scalable mode(fsts=off): supported values for aw-bits are: 39, 48\""),
        ({"pasid_bits": 8}, "\"Need to set scalable mode for PASID\""),
        ({"x_flts": True, "x_scalable_mode": True}, "\"Property 'intel-iommu.x-flts' not found\""),
    ]
    for params, wording in cases:
        s, m = status2(facts, "viommu.intel.config", None, profiles=INTEL, params=params)
        assert s == P.FAIL and wording in m, (params, m)
    # QEMU starts with snoop-control=on (oracle 10.0/11.1): it refuses the notifiers only when the guest enables
    # DMA remapping, so the gate warns and predicts no refusal
    s, m, x = status(facts, "viommu.intel.config", None, profiles=INTEL, params={"snoop_control": True})
    assert s == P.WARN and x["qemu_effect"] is None and "\"Snoop Control with vhost or VFIO is not supported\"" in m
    r = run(facts, INTEL, [])
    assert find(r, "viommu.intel.config")["status"] == P.NA


def test_intel_caching_mode(facts):
    assert status(facts, "viommu.intel.caching_mode", None, profiles=INTEL, params=GOOD_INTEL)[0] == P.PASS
    s, m = status2(facts, "viommu.intel.caching_mode", None, profiles=INTEL)
    assert s == P.FAIL
    assert ("\"vfio %s: Failed to set vIOMMU: Device assignment is not allowed without enabling caching-mode=on "
            "for Intel IOMMU.\"" % DEV) in m
    s, m = status2(facts, "viommu.intel.caching_mode", None, profiles=INTEL, params={"qemu_version": "10.1"})
    assert ("We need to set caching-mode=on for intel-iommu to enable device assignment with IOMMU "
            "protection.") in m
    assert find(run(facts, INTEL, "all-vfio, 0000:ff:00.0"), "viommu.intel.caching_mode")["status"] == P.FAIL
    assert find(run(facts, INTEL, []), "viommu.intel.caching_mode")["status"] == P.NA


def test_intel_aw_bits(facts):
    s, m, x = status(facts, "viommu.intel.aw_bits", profiles=INTEL, params=GOOD_INTEL)
    assert s == P.FAIL and "\"vfio %s: Failed to set vIOMMU: aw-bits 48 > host aw-bits 39\"" % DEV in m
    assert "aw-bits=39" in x["remedy"] and "compute_vasz_lg2_ss" in x["evidence"]["basis"]
    assert x["evidence"][_dev_path(DEV, "hw_info", "vendor") + ".derived.second_stage_iova_bits"] == 39
    assert status(facts, "viommu.intel.aw_bits", profiles=INTEL, params={"aw_bits": 39})[0] == P.PASS
    f = set_vtd(copy.deepcopy(facts), VTD_CAP_48, VTD_ECAP_LEGACY)
    assert status(f, "viommu.intel.aw_bits", profiles=INTEL)[0] == P.PASS
    s, m, x = status(sysfs_only(copy.deepcopy(facts)), "viommu.intel.aw_bits", profiles=INTEL)
    assert s == P.FAIL and "sysfs registers of dmar0" in x["evidence"]["basis"]
    assert x["evidence"]["source"].startswith("sysfs: registers of IOMMU unit dmar0")
    assert status(amd_host(copy.deepcopy(facts)), "viommu.intel.aw_bits", profiles=INTEL)[0] == P.WARN
    add_mdev(facts)
    s, m = status2(facts, "viommu.intel.aw_bits", MDEV, profiles=INTEL, devices=MDEV)
    assert s == P.NA and "HostIOMMUDevice" in m


def test_intel_x_flts(facts):
    assert status(facts, "viommu.intel.x_flts", profiles=INTEL)[0] == P.NA
    s, m = status2(facts, "viommu.intel.x_flts", profiles=INTEL, params=NEST11)
    assert s == P.PASS and "ERRATA_772415_SPR17" in m and "\"intel_iommu=on,sm_off\" is unsupported" in m
    s, m = status2(facts, "viommu.intel.x_flts", profiles=INTEL, params=dict(NEST11, iommufd=False))
    assert s == P.FAIL and "\"vfio %s: Failed to set vIOMMU: Need IOMMUFD backend when fsts=on\"" % DEV in m
    s, m = status2(facts, "viommu.intel.x_flts", profiles=INTEL, params=dict(NEST, qemu_version="10.1"))
    assert s == P.FAIL and "Failed to set vIOMMU: host device is uncompatible with stage-1 translation" in m
    r = run(facts, INTEL, params=dict(NEST, qemu_version="9.2"))   # older than the rules: 10.0's, and a warning
    assert find(r, "config.qemu_version")["status"] == P.WARN
    assert "host device is uncompatible with stage-1 translation" in find(r, "viommu.intel.x_flts", DEV)["message"]
    a = amd_host(copy.deepcopy(facts))
    s, m = status2(a, "viommu.intel.x_flts", profiles=INTEL, params=NEST)
    assert s == P.FAIL and "\"vfio %s: Failed to set vIOMMU: Incompatible host platform IOMMU type 4\"" % DEV in m
    a = amd_host(copy.deepcopy(facts), with_hw=False)
    s, m, x = status(a, "viommu.intel.x_flts", profiles=INTEL, params=NEST)
    assert s == P.FAIL and "Incompatible host platform IOMMU type 0" in m and "inferred" in x["evidence"]["basis"]


def test_intel_nesting(facts):
    assert status(facts, "viommu.intel.nesting", profiles=INTEL)[0] == P.NA
    s, m = status2(facts, "viommu.intel.nesting", profiles=INTEL, params=NEST)
    assert s == P.FAIL and "ECAP lacks SMTS, NEST, SLTS" in m
    assert "\"vfio %s: Failed to allocate hwpt: Operation not supported\"" % DEV in m
    f = set_vtd(copy.deepcopy(facts), VTD_CAP_FULL, VTD_ECAP_FULL)
    assert status(f, "viommu.intel.nesting", profiles=INTEL, params=NEST)[0] == P.WARN   # sm unknown
    assert status(scalable(f), "viommu.intel.nesting", profiles=INTEL, params=NEST)[0] == P.PASS
    s, m, x = status(scalable(f, False), "viommu.intel.nesting", profiles=INTEL, params=NEST)
    assert s == P.FAIL and "legacy mode" in m and "sm_on" in x["remedy"]


def test_intel_fs1gp(facts):
    assert status(facts, "viommu.intel.fs1gp", profiles=INTEL)[0] == P.NA
    assert status(facts, "viommu.intel.fs1gp", profiles=INTEL, params=dict(NEST, fs1gp="off"))[0] == P.NA
    s, m, x = status(facts, "viommu.intel.fs1gp", profiles=INTEL, params=NEST)
    assert s == P.FAIL
    assert "\"vfio %s: Failed to set vIOMMU: First stage 1GB large page is unsupported by host IOMMU\"" % DEV in m
    assert x["remedy"] == "Set fs1gp=off on intel-iommu."
    f = set_vtd(copy.deepcopy(facts), VTD_CAP_FULL, VTD_ECAP_FULL)
    assert status(f, "viommu.intel.fs1gp", profiles=INTEL, params=NEST)[0] == P.PASS


def test_intel_pasid(facts):
    assert status(facts, "viommu.intel.pasid", profiles=INTEL)[0] == P.NA
    s, m = status2(facts, "viommu.intel.pasid", profiles=INTEL, params={"x_pasid_mode": True, "qemu_version": "10.1"})
    assert s == P.FAIL and "\"Need to set scalable mode for PASID\"" in m
    pm = {"x_pasid_mode": True, "x_scalable_mode": True, "qemu_version": "10.1"}
    s, m = status2(facts, "viommu.intel.pasid", profiles=INTEL, params=pm)
    assert s == P.WARN and "no PASIDs" in m and "QEMU does not compare this" in m
    f = scalable(set_vtd(copy.deepcopy(facts), VTD_CAP_FULL, VTD_ECAP_FULL, caps=0x1, pasid=20))
    s, m = status2(f, "viommu.intel.pasid", profiles=INTEL, params=pm)
    assert s == P.PASS and "20-bit PASIDs" in m
    f = scalable(set_vtd(copy.deepcopy(facts), VTD_CAP_FULL, VTD_ECAP_FULL, caps=0x1, pasid=0))
    assert status(f, "viommu.intel.pasid", profiles=INTEL, params=pm)[0] == P.WARN


# ---------------------------------------------------------------------------
# ARM SMMUv3 accel


SMMU = ("smmuv3_accel",)


def test_smmu_config(facts):
    assert status(facts, "viommu.smmuv3.config", None, profiles=SMMU)[0] == P.PASS
    cases = [
        ({"stage": "nested"}, "\"Only stage1 is supported for SMMUv3 with accel=on\""),
        # QEMU 11.0 (master ece408818d): integer properties checked by smmu_validate_property
        ({"oas": 52, "qemu_version": "11.0"}, "\"OAS can only be set to 44 or 48 bits\""),
        ({"ssidsize": 21, "qemu_version": "11.0"}, "\"ssidsize must be in the range 0 to 20\""),
        ({"ril": "auto", "qemu_version": "11.0"}, "ril=auto does not exist in QEMU 11.0.0"),
        # QEMU 11.1.3: OasMode 32..56 parse, smmu_validate_property keeps auto/44/48 (hw/arm/smmuv3.c:1993)
        ({"oas": 52}, "\"QEMU SMMUv3 model only implements auto, 44 bit, or 48 bit OAS. Other OasMode values are "
                      "not supported.\""),
        ({"oas": 50}, "oas=50 is not an OasMode value of QEMU 11.1.0"),
        ({"ssidsize": 21}, "ssidsize=21 is not a SsidSizeMode value of QEMU 11.1.0"),
        ({"iommufd": False}, "\"vfio-pci endpoint devices without an iommufd backend not allowed when using "
                             "arm-smmuv3,accel=on\""),
        ({"qemu_version": "10.2.0"}, "accel=on does not exist in QEMU 10.2.0"),
    ]
    for params, wording in cases:
        s, m = status2(facts, "viommu.smmuv3.config", None, profiles=SMMU, params=params)
        assert s == P.FAIL and wording in m, (params, m)
    assert find(run(facts, SMMU, []), "viommu.smmuv3.config")["status"] == P.NA


def test_smmu_hw_info_type(facts):
    f = smmu_host(copy.deepcopy(facts))
    assert status(f, "viommu.smmuv3.hw_info_type", profiles=SMMU)[0] == P.PASS
    s, m = status2(facts, "viommu.smmuv3.hw_info_type", profiles=SMMU)
    assert s == P.FAIL and "\"vfio %s: Failed to set vIOMMU: Wrong data type (1) for Host SMMUv3 device info\"" % DEV in m
    s, m = status2(sysfs_only(f), "viommu.smmuv3.hw_info_type", profiles=SMMU)
    assert s == P.FAIL and "no sysfs equivalent" in m
    s, m = status2(sysfs_only(copy.deepcopy(facts)), "viommu.smmuv3.hw_info_type", profiles=SMMU)
    assert s == P.FAIL and "Wrong data type (1)" in m
    add_mdev(f)
    assert status(f, "viommu.smmuv3.hw_info_type", MDEV, profiles=SMMU, devices=MDEV)[0] == P.NA


IDR_CASES = [
    # check id, register overrides, params, QEMU's wording
    ("viommu.smmuv3.stlevel", {"idr0": SMMU_IDR["idr0"] & ~(3 << 27)}, {},
     "Host SMMUv3 Stream Table format mismatch (host STLEVEL=0, QEMU STLEVEL=1)"),
    ("viommu.smmuv3.ttendian", {"idr0": SMMU_IDR["idr0"] | (3 << 21)}, {},
     "Host SMMUv3 doesn't support Little-endian translation table"),
    ("viommu.smmuv3.ttf", {"idr0": (SMMU_IDR["idr0"] & ~(3 << 2)) | (1 << 2)}, {},
     "Host SMMUv3 doesn't support AArch64 translation table format"),
    ("viommu.smmuv3.sidsize", {"idr1": 8 | (20 << 6)}, {}, "Host SMMUv3 SIDSIZE not compatible (host=8, QEMU=16)"),
    ("viommu.smmuv3.ssidsize", {"idr1": 16}, {"ssidsize": 20},
     "Host SMMUv3 SSIDSIZE not compatible (host=0, QEMU=20)"),
    # QEMU 11.0 defaults to ril=on; 11.1 to auto (test_smmu_auto_properties)
    ("viommu.smmuv3.ril", {"idr3": 0}, {"qemu_version": "11.0"}, "Host SMMUv3 doesn't support Range Invalidation"),
    ("viommu.smmuv3.oas", {"idr5": SMMU_IDR["idr5"] & ~7 | 4}, {"oas": 48},
     "Host SMMUv3 supports only 44-bit IPA, but the vSMMU OAS implies 48-bit IPA"),
    ("viommu.smmuv3.gran4k", {"idr5": SMMU_IDR["idr5"] & ~(1 << 4)}, {}, "Host SMMUv3 doesn't support 4K translation granule"),
    ("viommu.smmuv3.gran16k", {"idr5": SMMU_IDR["idr5"] & ~(1 << 5)}, {},
     "Host SMMUv3 doesn't support 16K translation granule"),
    ("viommu.smmuv3.gran64k", {"idr5": SMMU_IDR["idr5"] & ~(1 << 6)}, {},
     "Host SMMUv3 doesn't support 64K translation granule"),
]


@pytest.mark.parametrize("check_id,regs,params,wording", IDR_CASES, ids=[c[0] for c in IDR_CASES])
def test_smmu_idr_checks(facts, check_id, regs, params, wording):
    good = smmu_host(copy.deepcopy(facts))
    s, m, x = status(good, check_id, profiles=SMMU, params=params)
    assert s == P.PASS, m
    assert x["evidence"]["source"] == "iommufd: IOMMU_GET_HW_INFO of %s" % DEV
    bad = smmu_host(copy.deepcopy(facts), **regs)
    s, m, x = status(bad, check_id, profiles=SMMU, params=params)
    assert s == P.FAIL and "\"vfio %s: Failed to set vIOMMU: %s\"" % (DEV, wording) in m, m
    assert x["remedy"]
    s, m = status2(facts, check_id, profiles=SMMU, params=params)   # Intel host: nothing to compare
    assert s == P.NA and "viommu.smmuv3.hw_info_type" in m


def test_smmu_param_relaxes_checks(facts):
    f = smmu_host(copy.deepcopy(facts), idr3=0, idr1=16)
    assert status(f, "viommu.smmuv3.ril", profiles=SMMU, params={"ril": "off"})[0] == P.PASS
    assert status(f, "viommu.smmuv3.ssidsize", profiles=SMMU)[0] == P.PASS   # ssidsize 0 (QEMU default)
    f = smmu_host(copy.deepcopy(facts), idr0=SMMU_IDR["idr0"] & ~(3 << 21))  # mixed endianness is fine
    assert status(f, "viommu.smmuv3.ttendian", profiles=SMMU)[0] == P.PASS


def test_smmu_nesting(facts):
    fwb = SMMU_IDR["idr3"] | (1 << 8)
    assert status(smmu_host(copy.deepcopy(facts), idr3=fwb), "viommu.smmuv3.nesting", profiles=SMMU)[0] == P.PASS
    # S1P + S2P without S2FWB: a vSMMU needs S2FWB or an IORT CANWBS root complex (not in the facts: warn) ...
    s, m = status2(smmu_host(copy.deepcopy(facts)), "viommu.smmuv3.nesting", profiles=SMMU)
    assert s == P.WARN and "IDR3.FWB clear" in m and "CANWBS" in m
    # ... and a device-tree host has no CANWBS at all (the arm64 test-bed guest under QEMU 11.1)
    f = smmu_host(copy.deepcopy(facts))
    f["firmware"]["acpi"]["iort"]["present"] = False
    s, m = status2(f, "viommu.smmuv3.nesting", profiles=SMMU)
    assert s == P.FAIL and "cannot create its vSMMU" in m and "EOPNOTSUPP" in m
    f = smmu_host(copy.deepcopy(facts), idr0=SMMU_IDR["idr0"] & ~1)
    s, m = status2(f, "viommu.smmuv3.nesting", profiles=SMMU)
    assert s == P.FAIL and "S2P clear" in m and "Failed to allocate hwpt" in m
    assert status(facts, "viommu.smmuv3.nesting", profiles=SMMU)[0] == P.NA


def test_smmu_ats(facts):
    v11 = {"qemu_version": "11.0"}   # master ece408818d: ats is a bool, off by default, never compared by QEMU
    on11 = dict(v11, ats=True)
    f = smmu_host(copy.deepcopy(facts), caps=0x0)
    assert status(f, "viommu.smmuv3.ats", profiles=SMMU, params=v11)[0] == P.NA
    s, m = status2(f, "viommu.smmuv3.ats", profiles=SMMU, params=on11)
    assert s == P.PASS
    f = smmu_host(copy.deepcopy(facts), caps=0x8)
    s, m = status2(f, "viommu.smmuv3.ats", profiles=SMMU, params=on11)
    assert s == P.FAIL and "\"Please ensure host platform has ATS support before enabling this\"" in m
    f = smmu_host(copy.deepcopy(facts), idr0=SMMU_IDR["idr0"] & ~(1 << 10))
    assert "IDR0.ATS clear" in status(f, "viommu.smmuv3.ats", profiles=SMMU, params=on11)[1]
    f = smmu_host(copy.deepcopy(facts), caps=0x0)
    f["devices"][DEV]["hw_info"]["capabilities"]["reported_by_kernel"]["ats_not_supported"] = False
    assert status(f, "viommu.smmuv3.ats", profiles=SMMU, params=on11)[0] == P.WARN


def test_smmu_ats_11_1(facts):
    """QEMU 11.1.3: ats is OnOffAuto (auto); smmuv3_accel_check_hw_compatible compares IDR0.ATS
    (hw/arm/smmuv3-accel.c:151, __LINE__ in Debian's binary) after auto copied the host's bit."""
    no_ats = smmu_host(copy.deepcopy(facts), idr0=SMMU_IDR["idr0"] & ~(1 << 10))
    s, m = status2(no_ats, "viommu.smmuv3.ats", profiles=SMMU)               # auto: mirrors the host (0)
    assert s == P.PASS and "ats=auto" in m and "IDR0.ATS=0" in m
    s, m = status2(no_ats, "viommu.smmuv3.ats", profiles=SMMU, params={"ats": "on"})
    assert s == P.FAIL and m == ("QEMU refuses the device: \"vfio %s: Failed to set vIOMMU: Host SMMUv3 doesn't "
                                 "support Address Translation Services\"." % DEV)
    assert status(no_ats, "viommu.smmuv3.ats", profiles=SMMU, params={"ats": "off"})[0] == P.NA
    with_ats = smmu_host(copy.deepcopy(facts), idr0=SMMU_IDR["idr0"] | (1 << 10), caps=0x0)
    assert status(with_ats, "viommu.smmuv3.ats", profiles=SMMU)[0] == P.PASS


def test_smmu_auto_properties(facts):
    """QEMU 11.1.3 smmuv3_accel_auto_finalise(): ril, oas, ssidsize (and ats) left at auto take the host
    SMMUv3's IDR3.RIL, IDR5.OAS, IDR1.SSIDSIZE, so those comparisons cannot fail; explicit values are compared
    as in 11.0 (hw/arm/smmuv3-accel.c:126 SSIDSIZE, :136 RIL, :142 OAS)."""
    f = smmu_host(copy.deepcopy(facts), idr3=0, idr1=16 | (0 << 6), idr5=SMMU_IDR["idr5"] & ~7 | 3)  # 42-bit OAS
    for check_id in ("viommu.smmuv3.ril", "viommu.smmuv3.ssidsize", "viommu.smmuv3.oas"):
        s, m = status2(f, check_id, profiles=SMMU)
        assert s == P.PASS and "auto: the host value of %s" % DEV in m, (check_id, m)
    cases = [("viommu.smmuv3.ril", {"ril": "on"}, "Host SMMUv3 doesn't support Range Invalidation"),
             ("viommu.smmuv3.ssidsize", {"ssidsize": 4}, "Host SMMUv3 SSIDSIZE not compatible (host=0, QEMU=4)"),
             ("viommu.smmuv3.oas", {"oas": 44},
              "Host SMMUv3 supports only 42-bit IPA, but the vSMMU OAS implies 44-bit IPA")]
    for check_id, params, wording in cases:
        s, m = status2(f, check_id, profiles=SMMU, params=params)
        assert s == P.FAIL and "\"vfio %s: Failed to set vIOMMU: %s\"" % (DEV, wording) in m, (check_id, m)
    # the same host under QEMU 11.0's defaults (ril on, oas 44) is refused
    assert status(f, "viommu.smmuv3.ril", profiles=SMMU, params={"qemu_version": "11.0"})[0] == P.FAIL
    assert status(f, "viommu.smmuv3.oas", profiles=SMMU, params={"qemu_version": "11.0"})[0] == P.FAIL
    assert status(f, "viommu.smmuv3.config", None, profiles=SMMU)[0] == P.PASS
    assert "cold-plugged VFIO device" in status2(f, "viommu.smmuv3.config", None, profiles=SMMU)[1]


# ---------------------------------------------------------------------------
# AMD vIOMMU


def test_amd_dma_remap(facts):
    # QEMU 11.1.3 (test bed) starts a VM with dma-remap off; the device stays untranslated
    s, m, x = status(facts, "viommu.amd.dma_remap", None, profiles=("amd_viommu",))
    assert s == P.WARN and "\"device BB.DD.F requires dma-remap=1\"" in m and "dma-remap=on" in x["remedy"]
    assert "starts the VM" in m and x["qemu_effect"] is None
    assert status(facts, "viommu.amd.dma_remap", None, profiles=("amd_viommu",), params={"dma-remap": "on"})[0] == P.PASS
    s, m, x = status(facts, "viommu.amd.dma_remap", None, profiles=("amd_viommu",), params={"qemu_version": "10.1"})
    assert s == P.FAIL and "requires iommu notifier which is not currently supported" in m
    assert x["qemu_effect"] == "refuse"
    s, m = status2(facts, "viommu.amd.dma_remap", None, profiles=("amd_viommu",),
                   params={"dma_remap": True, "qemu_version": "10.1"})
    assert s == P.FAIL and "\"Property 'amd-iommu.dma-remap' not found\"" in m
    assert find(run(facts, ("amd_viommu",), []), "viommu.amd.dma_remap")["status"] == P.NA


# ---------------------------------------------------------------------------
# PASID and ATS


PASID = ("pasid",)


def test_device_pasid(facts):
    f = set_vtd(copy.deepcopy(facts), VTD_CAP_FULL, VTD_ECAP_FULL, caps=0x1 | 0x2, pasid=20)
    s, m = status2(f, "device.pasid", profiles=PASID, params={"pasid_bits": 16, "pasid_exec": True})
    # the host gives 20 bits, but vfio-pci shows the guest no PASID capability without arm-smmuv3 accel
    assert s == P.WARN and "20-bit PASIDs" in m and "only behind arm-smmuv3,accel=on" in m
    s, m = status2(f, "device.pasid", profiles=PASID, params={"pasid_bits": 16, "qemu_version": "10.2"})
    assert s == P.WARN and "only from 11.0" in m
    r = run(f, ["pasid", "smmuv3_accel"], params={"pasid_bits": 16, "ssidsize": 20})
    x = [y for y in r["findings"] if y["id"] == "device.pasid"][0]
    assert x["status"] == P.PASS and "synthesizes a PASID capability" in x["message"], x
    s, m, x = status(f, "device.pasid", profiles=PASID, params={"pasid_bits": 21})
    assert x["qemu_effect"] == "requirement"
    s, m = status2(f, "device.pasid", profiles=PASID, params={"pasid_priv": True})
    assert s == P.FAIL and "privileged mode" in m
    s, m = status2(f, "device.pasid", profiles=PASID, params={"pasid_bits": 21})
    assert s == P.FAIL and "fewer than the 21 required" in m
    s, m = status2(facts, "device.pasid", profiles=PASID)
    assert s == P.FAIL and "synthesizes no PASID capability" in m
    f = copy.deepcopy(facts)
    f["devices"][DEV]["hw_info"]["capabilities"]["reported_by_kernel"]["pasid"] = False
    assert "Linux >= 6.15" in status(f, "device.pasid", profiles=PASID)[1]
    f = scalable(sysfs_only(set_vtd(copy.deepcopy(facts), VTD_CAP_FULL, VTD_ECAP_FULL)))
    s, m, x = status(f, "device.pasid", profiles=PASID)
    assert s == P.WARN and "20-bit PASIDs (derived" in m and "sysfs" in x["evidence"]["basis"]
    s, m = status2(sysfs_only(copy.deepcopy(facts)), "device.pasid", profiles=PASID)
    assert s == P.FAIL and "has no PASID support" in m
    add_mdev(facts)
    assert status(facts, "device.pasid", MDEV, profiles=PASID, devices=MDEV)[0] == P.NA


def test_device_ats(facts):
    s, m = status2(facts, "device.ats", profiles=PASID)
    assert s == P.FAIL and "IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED" in m
    f = set_vtd(copy.deepcopy(facts), VTD_CAP_FULL, VTD_ECAP_FULL, caps=0x0)
    assert status(f, "device.ats", profiles=PASID)[0] == P.PASS
    f["devices"][DEV]["hw_info"]["capabilities"]["reported_by_kernel"]["ats_not_supported"] = False
    assert status(f, "device.ats", profiles=PASID)[0] == P.WARN
    assert status(facts, "device.ats", profiles=PASID, params={"require_ats": False})[0] == P.NA
    s, m = status2(sysfs_only(copy.deepcopy(facts)), "device.ats", profiles=PASID)
    assert s == P.FAIL and "no device-TLB/ATS support" in m
    add_mdev(facts)
    assert status(facts, "device.ats", MDEV, profiles=PASID, devices=MDEV)[0] == P.NA


# ---------------------------------------------------------------------------
# Selection, profiles, parameters


def test_selection_forms(facts):
    add_mdev(facts)
    cases = [
        ("all_vfio", [DEV, BUSY], []),
        (None, [DEV, BUSY], []),
        ("01:00.0", [DEV], []),
        ("0000:01:00.0, 0000:01:02.0", [DEV, BUSY], []),
        (["8086:10d3"], sorted(a for a in facts["devices"] if facts["devices"][a]["vendor_id"] == "0x8086"), []),
        (["8086:*", MDEV.upper()], sorted(facts["devices"]), [MDEV]),
    ]
    for spec, pci, mdevs in cases:
        got_pci, got_mdev, problems = P.select_devices(facts, spec)[:3]
        assert (sorted(got_pci), got_mdev, problems) == (sorted(pci), mdevs, []), spec
    x = find(run(facts, devices="01:00.0"), "selection.devices")
    assert x["status"] == P.PASS and "01:00.0 -> %s" % DEV in x["message"]


def test_selection_problems(facts):
    x = find(run(facts, devices=["0000:ff:00.0", DEV]), "selection.devices")
    assert x["status"] == P.FAIL and "no PCI device 0000:ff:00.0" in x["message"]
    for spec, text in (("1234:5678", "no PCI device with vendor:device 1234:5678"), ("eth0", "not a PCI address"),
                       ("00000000-0000-0000-0000-000000000000", "no mediated device"), ([7], "not a PCI address")):
        r = run(facts, devices=spec)
        x = find(r, "selection.devices")
        assert x["status"] == P.FAIL and "nothing to gate" in x["message"] and text in x["message"]
        assert find(r, "device.vfio_driver")["status"] == P.NA
    f = copy.deepcopy(facts)
    for dev in f["devices"].values():
        dev["driver"] = "e1000e"
        dev["vfio"] = dict(dev["vfio"], bound=False, driver=None, cdev=None)
    x = find(run(f, devices="all_vfio"), "selection.devices")
    assert x["status"] == P.FAIL and "no PCI device is bound to a VFIO driver" in x["message"]


def test_mdevs_are_never_failed(facts):
    add_mdev(facts)
    r = run(facts, PROFILE_NAMES, MDEV, params={"caching_mode": True, "dma_remap": True, "viommu": "none"})
    for x in r["findings"]:
        if x["device"] == MDEV and x["id"] == "memory.numa_locality":   # judged on the parent's node
            assert x["status"] == P.NA and "guest_memory" in x["message"], x   # no VM memory given
        elif x["device"] == MDEV and P.CHECKS[x["id"]]["mdev"] is True:   # the migration checks apply to mdevs
            assert x["status"] == P.WARN and "unknown" in x["message"].lower(), x   # no VFIO feature facts
        elif x["device"] == MDEV:
            assert x["status"] == P.NA and "mediated device" in x["message"], x
    assert find(r, "selection.devices")["status"] == P.PASS


def test_profiles_and_params(facts):
    names, values, given, problems = P.resolve_profiles(
        [{"name": "intel_viommu", "aw-bits": "39"}, {"live_migration": {"x-device-dirty-page-tracking": "off"}}],
        {"intel_viommu": {"x_flts": "on"}, "caching-mode": "yes"})
    assert problems == [] and names == ["intel_viommu", "live_migration"]
    assert values["aw_bits"] == 39 and values["x_flts"] is True and values["caching_mode"] is True
    assert values["x_device_dirty_page_tracking"] is False and values["viommu"] == "intel-iommu"
    assert given == {"aw_bits": 39, "x_flts": True, "caching_mode": True, "x_device_dirty_page_tracking": False}
    assert values["fs1gp"] is True and values["oas"] is None   # QEMU defaults (oas: the release's, below)
    assert [R.smmuv3_value("oas", values["oas"], v) for v in ((11, 1, 3), (11, 0, 0))] == ["auto", 44]
    assert values["vfio_ats"] == "auto"
    for profiles, params, text in (
            (["nope"], None, "unknown profile"),
            (["passthrough"], {"aw_bits": 39}, "not used by the selected profiles"),
            (["passthrough"], {"bogus": 1}, "unknown parameter"),
            (["intel_viommu"], {"aw_bits": "wide"}, "aw_bits must be an integer"),
            (["intel_viommu"], {"x_flts": "maybe"}, "x_flts must be a boolean"),
            (["intel_viommu"], {"qemu_version": "next"}, "qemu_version must be a QEMU release"),
            (["live_migration"], {"viommu": "virtio"}, "viommu must be one of"),
            (["intel_viommu"], {"intel_viommu": {"ril": False}}, "parameter ril does not belong"),
            (["intel_viommu"], {"smmuv3_accel": {"ril": False}}, "parameter ril is not used by the selected"),
            ("passthrough", [1], "params must be a dict"),
            ([3], None, "is not a name")):
        r = run(facts, profiles, params=params)
        x = find(r, "config.profiles")
        assert x["status"] == P.FAIL and text in x["message"], (profiles, params, x["message"])
    assert P.parse_qemu_version("v10.1.2") == (10, 1, 2) and P.parse_qemu_version("master") == P.QEMU_MASTER


def test_default_profile_is_passthrough(facts):
    r = P.evaluate(facts)
    assert r["profiles"] == ["passthrough"] and r["selected"]["pci"] == [DEV, BUSY]
    assert {x["id"] for x in r["findings"]} == set(P.PROFILES["passthrough"]["checks"]) | {"selection.devices"}


def test_no_profile_no_device_requirement(facts):
    r = P.evaluate(facts, [], [], custom=[{"name": "x", "expression": "present"}])
    assert find(r, "selection.devices")["status"] == P.NA and r["status"] == P.PASS


# ---------------------------------------------------------------------------
# Custom checks


def test_custom_checks(facts):
    pytest.importorskip("jmespath")
    custom = [
        {"name": "pt", "expression": "cmdline.effects.passthrough", "expected": True},
        {"name": "strict", "expression": "cmdline.effects.strict", "expected": True, "severity": "warn",
         "message": "strict invalidation wanted", "remedy": "Boot with iommu.strict=1."},
        {"name": "dt", "expression": "hw_info.capabilities.dirty_tracking", "scope": "device", "operator": "truthy"},
        {"name": "groups", "expression": "length(keys(groups))", "operator": "ge", "expected": 2},
        {"name": "vendor", "expression": "vendors[0]", "operator": "in", "expected": ["intel_vtd", "amd"]},
        {"name": "release", "expression": "kernel.release", "operator": "contains", "expected": "iommu"},
        {"name": "noiommu", "expression": "kernel.vfio_noiommu_mode", "operator": "eq", "expected": None},
        {"name": "bad", "expression": "devices.[", "expected": 1},
        {"name": "types", "expression": "kernel.release", "operator": "lt", "expected": 7},
        {"name": "", "expression": "x"},
        "not a dict",
    ]
    r = run(facts, custom=custom, devices=[DEV, BUSY])
    assert find(r, "custom.pt")["status"] == P.PASS
    x = find(r, "custom.strict")
    assert x["status"] == P.WARN and x["message"].startswith("strict invalidation wanted") and x["remedy"]
    assert x["evidence"]["actual"] is None and x["evidence"]["expected"] is True
    assert find(r, "custom.dt", DEV)["status"] == P.FAIL and find(r, "custom.dt", BUSY)["status"] == P.FAIL
    assert find(r, "custom.groups")["status"] == P.PASS
    assert find(r, "custom.vendor")["status"] == P.PASS
    assert find(r, "custom.release")["status"] == P.PASS
    assert find(r, "custom.noiommu")["status"] == P.PASS
    assert "Invalid JMESPath expression" in find(r, "custom.bad")["message"]
    assert "cannot compare" in find(r, "custom.types")["message"]
    invalid = [x for x in r["findings"] if x["id"] == "custom.invalid"]
    assert len(invalid) == 2 and all(x["status"] == P.FAIL for x in invalid)


def test_custom_without_jmespath(facts, monkeypatch):
    monkeypatch.setattr(policy_custom, "HAS_JMESPATH", False)
    r = run(facts, custom=[{"name": "pt", "expression": "cmdline.effects.passthrough", "expected": True,
                            "severity": "warn"}])
    x = find(r, "custom.pt")
    assert x["status"] == P.WARN and "jmespath is not installed" in x["message"]


# ---------------------------------------------------------------------------
# The filter


def test_filter_accepts_ansible_facts_or_iommu(facts):
    f = check_filter.FilterModule().filters()["check"]
    a = f({"iommu": facts, "distribution": "Debian"}, host="h1")
    b = f(facts, profiles=["passthrough"], devices="all_vfio", params={}, custom=[], host="h1")
    assert a == b and a["profiles"] == ["passthrough"] and a["selected"]["pci"] == [DEV, BUSY]
    c = f({"ansible_facts": {"iommu": facts}}, devices=[DEV])
    assert c["host"] == "localhost" and c["selected"]["pci"] == [DEV]
    for junk in ({}, None, "text", {"distribution": "Debian"}):
        r = f(junk)
        assert r["status"] == P.FAIL and r["findings"][0]["id"] == "facts.iommu"


def test_filter_in_ansible_over_cached_facts(facts, tmp_path):
    """The role over a jsonfile fact cache: no facts are gathered, the filter runs in real Jinja."""
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    if not os.path.exists(playbook):
        pytest.skip("ansible-playbook not installed next to the test interpreter")
    cache = tmp_path / "cache"
    cache.mkdir()
    # ansible-core < 2.19 stores plain JSON; 2.19 an envelope in "s1_<host>"
    (cache / "cachedhost").write_text(json.dumps({"iommu": facts}))
    (cache / "s1_cachedhost").write_text(json.dumps({"__payload__": json.dumps({"iommu": facts})}))
    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: cachedhost\n  gather_facts: false\n  connection: local\n"
        "  vars:\n    ansible_python_interpreter: '{{ ansible_playbook_python }}'\n"
        "    iommu_preflight_devices: ['%s', '8086:10d3']\n" % DEV +
        "    iommu_preflight_mode: enforce\n"
        "  roles:\n    - iommu.host.preflight\n")
    env = dict(os.environ, ANSIBLE_CACHE_PLUGIN="jsonfile", ANSIBLE_CACHE_PLUGIN_CONNECTION=str(cache),
               ANSIBLE_CACHE_PLUGIN_TIMEOUT="0", ANSIBLE_CONFIG=os.path.join(REPO, "tests", "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, "build", "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_CALLBACK_RESULT_FORMAT="yaml")
    proc = subprocess.run([playbook, "-i", "cachedhost,", str(play)], env=env, cwd=str(tmp_path),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=300,
                          check=False)
    out = proc.stdout
    assert proc.returncode == 2, out
    assert "Gather the IOMMU facts] *" in out and "skipping: [cachedhost]" in out   # cached facts used
    assert "cachedhost: FAIL - " in out
    assert "requirement(s) failed on cachedhost:" in out
    assert "- FAIL device.vfio_driver [%s]" % DEV2 in out          # 8086:10d3 also selects the e1000e NICs
    assert "- FAIL device.not_in_use [%s]" % BUSY in out        # every failure listed at once


# ---------------------------------------------------------------------------
# Partial and odd facts never raise


def test_partial_facts_give_findings_not_exceptions(facts):
    for key in list(facts):
        f = copy.deepcopy(facts)
        del f[key]
        params = {"x_flts": True, "x_scalable_mode": True, "ats": True, "x_pasid_mode": True}
        r = run(f, PROFILE_NAMES, [DEV, BUSY], params=params)
        no_internal_errors(r)
    for key in list(facts["devices"][DEV]):
        f = copy.deepcopy(facts)
        del f["devices"][DEV][key]
        no_internal_errors(run(f, PROFILE_NAMES, DEV, params={"x_flts": True, "x_scalable_mode": True}))
    f = copy.deepcopy(facts)
    del f["schema_version"]
    x = find(run(f), "facts.iommu")
    assert x["status"] == P.WARN


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-3, 70), st.text(max_size=6),
                 st.lists(st.integers(0, 3), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _paths(obj, prefix=(), depth=0):
    if isinstance(obj, dict) and depth < 6:
        for k, v in obj.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,), depth + 1)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_facts_never_raise(gathered, data):
    f = copy.deepcopy(gathered)
    f["devices"] = dict((a, d) for a, d in f["devices"].items() if a in (DEV, BUSY, SHARED))
    paths = list(_paths(f))
    for _step in range(data.draw(st.integers(1, 6))):
        p = data.draw(st.sampled_from(paths))
        parent = f
        for k in p[:-1]:
            parent = parent.get(k) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            if data.draw(st.booleans()):
                parent.pop(p[-1], None)
            else:
                parent[p[-1]] = data.draw(JUNK)
    profiles = data.draw(st.lists(st.sampled_from(PROFILE_NAMES), min_size=1, max_size=3, unique=True))
    params = data.draw(st.fixed_dictionaries({}, optional={
        "x_flts": st.booleans(), "x_scalable_mode": st.booleans(), "ats": st.booleans(), "aw_bits": JUNK,
        "ssidsize": st.integers(-1, 30), "qemu_version": st.sampled_from(["9.2", "10.1", "master", "x"])}))
    r = P.evaluate(f, profiles, data.draw(st.sampled_from(["all_vfio", DEV, [SHARED, "8086:*"], None, 5])),
                   host="h", params=params)
    assert r["status"] in (P.PASS, P.WARN, P.FAIL)
    no_internal_errors(r)
    json.dumps(r, default=str)


@settings(max_examples=40, deadline=None)
@given(junk=st.recursive(JUNK, lambda c: st.dictionaries(st.sampled_from(
    ["devices", "kernel", "units", "groups", "cmdline", "firmware", "mdevs", "present", "vendors", DEV, "hw_info",
     "effects", "iommufd", "driver"]), c, max_size=4), max_leaves=12))
def test_arbitrary_input_never_raises(junk):
    r = P.evaluate(junk, PROFILE_NAMES, ["all_vfio", DEV], params={"x_flts": True, "x_scalable_mode": True})
    assert r["status"] == P.FAIL or r["findings"]
    no_internal_errors(r)


# ---------------------------------------------------------------------------
# vfio-pci ats (QEMU 11.1+)


def test_vfio_ats(facts):
    """QEMU 11.1.3 hw/vfio/pci.c (vfio_add_ext_cap inlined in vfio_pci_add_capabilities; the iommufd
    HostIOMMUDevice answers !(hw_caps & IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED), backends/iommufd.c): ats=on is refused
    at line 2617 when the kernel reports ATS unusable; auto masks; off always masks; the legacy container has no
    answer. The test bed confirms it with the e1000e (tests/integration/test_oracle_testbed.py)."""
    cid = "device.vfio_ats"
    f = set_vtd(copy.deepcopy(facts), VTD_CAP_FULL, VTD_ECAP_FULL, caps=0x8)      # Linux 7.3.4 reports the bit
    s, m, x = status(f, cid, params={"vfio_ats": "on"})
    assert s == P.FAIL and m.startswith("QEMU refuses the device: \"vfio %s: vfio-pci: ATS requested but not "
                                        "supported by kernel\"" % DEV), m
    assert x["qemu_effect"] == "refuse" and "ats=auto" in x["remedy"]
    s, m = status2(f, cid)                                                          # default auto
    assert s == P.PASS and "masks the device's ATS capability" in m
    assert status(f, cid, params={"vfio_ats": "off"})[0] == P.PASS
    assert status(f, cid, params={"vfio_ats": "on", "iommufd": False})[0] == P.PASS   # legacy: no answer
    ok = set_vtd(copy.deepcopy(facts), VTD_CAP_FULL, VTD_ECAP_FULL, caps=0x0)
    assert status(ok, cid, params={"vfio_ats": "on"})[0] == P.PASS
    old = copy.deepcopy(ok)
    old["devices"][DEV]["hw_info"] = hw(1, 0x0, 0, release="6.12", cap_reg=VTD_CAP_FULL, ecap_reg=VTD_ECAP_FULL,
                                        flags=1)
    assert status(old, cid, params={"vfio_ats": "on"})[0] == P.WARN   # the bit is not reported before Linux 7.1
    # QEMU 10.0-11.0 have no vfio-pci ats: QEMU's own refusal when it is set, nothing otherwise
    s, m = status2(f, cid, params={"vfio_ats": "auto", "qemu_version": "10.0"})
    assert s == P.FAIL and "\"Property 'vfio-pci.ats' not found\"" in m
    assert status(f, cid, params={"qemu_version": "11.0"})[0] == P.NA
    nohw = copy.deepcopy(f)
    nohw["devices"][DEV]["hw_info"] = None
    assert status(nohw, cid, params={"vfio_ats": "on"})[0] == P.FAIL
    assert status(nohw, cid)[0] == P.WARN


def test_smmu_accel_off_property_refusals(facts):
    """smmu_validate_property() with accel off refuses the accel-only properties before any VFIO device: QEMU 11.1.3
    hw/arm/smmuv3.c:2001 (ril), :2005 (ats), :2009 (oas), :2013 (ssidsize), __LINE__ in Debian's binary."""
    for params, words in (({"ril": "off"}, "ril can only be disabled if accel=on"),
                          ({"ats": "on"}, "ats can only be enabled if accel=on"),
                          ({"oas": 48}, "oas must be 44 bits when accel=off"),
                          ({"ssidsize": 8}, "ssidsize can only be greater than 0 bits if accel=on"),
                          ({"oas": 48, "qemu_version": "11.0"}, "OAS must be 44 bits when accel=off"),
                          ({"ssidsize": 8, "qemu_version": "11.0"}, "ssidsize can only be set if accel=on")):
        s, m = status2(facts, "viommu.smmuv3.config", None, profiles=SMMU, params=dict(params, accel=False))
        assert s == P.FAIL and "\"%s\"" % words in m, (params, m)
    # auto and the defaults are what accel off accepts: the emulated SMMUv3's refusal of VFIO devices remains
    for params in ({}, {"ril": "auto", "ats": "auto", "oas": "auto", "ssidsize": "auto"}, {"oas": 44, "ssidsize": 0}):
        s, m = status2(facts, "viommu.smmuv3.config", None, profiles=SMMU, params=dict(params, accel=False))
        assert s == P.FAIL and "requires iommu MAP notifier" in m, (params, m)
