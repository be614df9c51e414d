"""The arm64 test-bed guest's captured fixtures (Linux 7.3.4, QEMU 11.1.3 virt, emulated SMMUv3, GICv3 ITS)
and the SMMUv3 gate's verdicts on them, with QEMU's own words as golden vectors.

tests/fixtures/sysfs/arm64-smmuv3{,-vfio}.tar.xz and tests/fixtures/hw_info/arm64-smmuv3.json were written
by ``tests/testbed/capture_fixtures.py arm64-smmuv3`` (the e1000e 0000:00:09.0 on e1000e, then on
vfio-pci; its IOMMU_GET_HW_INFO answer, the arm-smmu-v3 driver's dmesg lines, the device tree's view).
The QEMU messages in GOLDEN are what qemu-system-aarch64 11.1.3 printed in that guest
(tests/integration/test_arm64_testbed.py::test_oracle_agrees_with_the_gate compares them live).
"""
import copy
import json
import os
import re

import pytest

from ansible_collections.iommu.host.plugins.module_utils import iommu_facts
from ansible_collections.iommu.host.plugins.module_utils.decode import smmuv3
from ansible_collections.iommu.host.plugins.module_utils.policy import api as policy
from tests.support import fixture_trees

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NIC = "0000:00:09.0"
SMMU = "smmu3.0x0000000009050000"
DMESG = re.compile(r"arm-smmu-v3 (\S+): oas (\d+)-bit \(features (0x[0-9a-f]+)\)")
# QEMU 11.1.3's emulated SMMUv3 (stage 1 + 2): IDR0-5, IIDR, AIDR
IDR_11_1 = ([0x0d44101b, 0x02730010, 0, 0x00001414, 0, 0x00000074], 0, 0x1)


def gather(name):
    return iommu_facts.gather(root=fixture_trees.root(name), sysfs_only=True)


@pytest.fixture(scope="module")
def captured():
    with open(os.path.join(REPO, "tests", "fixtures", "hw_info", "arm64-smmuv3.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def trees():
    return {"plain": gather("arm64-smmuv3"), "vfio": gather("arm64-smmuv3-vfio")}


def hw_info(captured):
    raw = captured["hw_info"]["raw"]
    hw = iommu_facts.hw_info_result({"type_id": captured["hw_info"]["type_id"], "data": bytes.fromhex(raw["data"]),
                                     "data_len": captured["hw_info"]["data_len"],
                                     "capabilities": int(raw["capabilities"], 16),
                                     "max_pasid_log2": raw["max_pasid_log2"]}, captured["kernel_release"])
    hw["device_reset"] = True
    hw["consistent_with_sysfs"] = None
    return hw


@pytest.fixture
def facts(trees, captured):
    """The vfio tree's facts with the captured hw_info, as iommu_facts returns them in the guest."""
    f = copy.deepcopy(trees["vfio"])
    f["devices"][NIC]["hw_info"] = hw_info(captured)
    f["queried"] = [NIC]
    return f


@pytest.mark.parametrize("name", ["plain", "vfio"])
def test_trees_read_as_the_guest(trees, name):
    f = trees[name]
    assert f["findings"] == [] and f["kernel"]["release"] == "7.3.4"
    assert f["kernel"]["config"]["CONFIG_IOMMUFD"] == "y" and f["kernel"]["config"]["CONFIG_ARM_SMMU_V3"] == "y"
    assert f["present"] is True and f["vendors"] == ["arm_smmuv3"] and list(f["units"]) == [SMMU]
    unit = f["units"][SMMU]
    # an SMMUv3 has no register files in sysfs: nothing to decode there, and the facts say why
    assert unit["registers"] == {} and unit["decoded"] is None
    assert "IOMMU_GET_HW_INFO" in unit["registers_note"] and unit["source"] == "sysfs:/sys/class/iommu/" + SMMU
    assert NIC in unit["devices"] and "0000:00:08.0" in unit["devices"]
    assert f["firmware"]["devicetree"] == {"present": True, "iommu_nodes": ["smmuv3@9050000"]}
    assert f["firmware"]["acpi"]["iort"]["present"] is False
    ir = f["kernel"]["interrupt_remapping"]
    assert (ir["enabled"], ir["mechanism"], ir["source"]) == (True, "gicv3_its", "/proc/interrupts")
    assert ir["its_nodes"] == ["/intc@8000000/its@8080000"]
    assert "ITS-PCI-MSIX-0000:00:02.0" in ir["evidence"] and all(e.startswith("ITS-PCI-MSI") for e in ir["evidence"])
    assert f["kernel"]["allow_unsafe_interrupts"] is False
    assert f["kernel"]["kvm"] == {"available": False, "source": "/dev/kvm"}     # an arm64 TCG guest: no KVM
    dev = f["devices"][NIC]
    assert dev["iommu_unit"] == SMMU and dev["iommu_group"] == "6"
    if name == "vfio":
        assert dev["driver"] == "vfio-pci" and dev["vfio_cdev"] == "vfio0" and dev["group_viable"] is True
        assert f["kernel"]["dev_nodes"]["vfio_groups"] == ["6"] and f["kernel"]["dev_nodes"]["vfio_container"]
    else:
        assert dev["driver"] == "e1000e" and dev["vfio_cdev"] is None


def test_hw_info_decoded(captured, facts):
    assert (captured["kernel_release"], captured["qemu"], captured["device"]) == ("7.3.4", "11.1.3", NIC)
    hw = facts["devices"][NIC]["hw_info"]
    assert (hw["type"], hw["type_id"], hw["data_len"]) == ("arm_smmuv3", 2, 40)
    assert hw["capabilities"]["raw"] == "0x8" and hw["capabilities"]["ats_not_supported"] is True
    v = hw["vendor"]
    raw = v["raw"]
    assert ([int(x, 16) for x in raw["idr"]], int(raw["iidr"], 16), int(raw["aidr"], 16)) == IDR_11_1
    assert v["idr0"]["s1p"] is True and v["idr0"]["s2p"] is True and v["idr0"]["vmid16"] is True
    assert v["idr0"]["httu"] == 0 and v["idr0"]["st_lvl"] == 1 and v["idr0"]["ttendian"] == 2
    assert v["idr1"]["sidsize"] == 16 and v["idr1"]["ssidsize"] == 0
    assert v["idr3"] == {"fwb": False, "ril": True, "bbm": 2}
    assert v["idr5"]["oas"] == 4 and v["idr5"]["gran4k"] and v["idr5"]["gran16k"] and v["idr5"]["gran64k"]
    d = v["derived"]
    assert d["architecture"] == "SMMUv3.1" and d["nesting"]["supported"] is True
    assert d["dirty_tracking"]["supported"] is False


def test_hw_info_agrees_with_the_driver(captured, facts):
    """The driver's `oas N-bit (features 0x...)` line of the same boot, predicted from the captured IDRs."""
    lines = [m for m in (DMESG.search(line) for line in captured["dmesg"]) if m]
    assert len(lines) == 1 and lines[0].group(1) == "9050000.smmuv3"
    oas, features = int(lines[0].group(2)), int(lines[0].group(3), 16)
    v = facts["devices"][NIC]["hw_info"]["vendor"]
    assert v["derived"]["output_address_width_bits"] == oas == 44
    idr = [int(x, 16) for x in v["raw"]["idr"]]
    got = smmuv3.kernel_features(idr, int(v["raw"]["iidr"], 16), coherent=captured["dma_coherent"]["smmuv3@9050000"],
                                 firmware="dt", pci_ats=True, pci_pri=True, vhe=False)
    assert got["bits"] == features == 0x01088705
    assert captured["interrupt_remapping"]["mechanism"] == "gicv3_its"
    assert captured["devicetree_smmu_nodes"] == ["smmuv3@9050000"] and captured["allow_unsafe_interrupts"] is False


# ---- the gate on the captured facts: QEMU 11.1.3's words (golden vectors) --------------------------------

MAP = ("memory listener initialization failed: Region smmuv3-iommu-memory-region-DEVFN-BUS: device BB.DD.F "
       "requires iommu MAP notifier which is not currently supported")
KVM = "SMMUv3 accel=on requires KVM with kernel-irqchip=on support"
# (name, profiles, params, kvm present, {check id: (status, qemu_effect, QEMU's words in the message or None)},
#  what QEMU 11.1.3 printed in the guest for that configuration, its guest address normalised)
GOLDEN = [
    ("no vIOMMU, iommufd", ["passthrough"], {}, False, {}, None),
    ("no vIOMMU, legacy", ["passthrough"], {"iommufd": False}, False, {}, None),
    ("arm-smmuv3 accel=off, iommufd", ["smmuv3_accel"], {"accel": False}, False,
     {"viommu.smmuv3.config": ("fail", "refuse", "vfio %s: %s" % (NIC, MAP))},
     "vfio 0000:00:09.0: memory listener initialization failed: Region smmuv3-iommu-memory-region-8-0: device "
     "00.01.0 requires iommu MAP notifier which is not currently supported"),
    ("arm-smmuv3 accel=off, legacy", ["smmuv3_accel"], {"accel": False, "iommufd": False}, False,
     {"viommu.smmuv3.config": ("fail", "refuse", "vfio %s: failed to setup container for group 6: %s" % (NIC, MAP))},
     "vfio 0000:00:09.0: failed to setup container for group 6: memory listener initialization failed: Region "
     "smmuv3-iommu-memory-region-8-0: device 00.01.0 requires iommu MAP notifier which is not currently supported"),
    ("arm-smmuv3 accel=on, iommufd, no KVM", ["smmuv3_accel"], {}, False,
     {"viommu.smmuv3.kvm": ("fail", "refuse", KVM),
      "viommu.smmuv3.nesting": ("fail", "refuse", None)}, KVM),
    ("arm-smmuv3 accel=on, legacy, no KVM", ["smmuv3_accel"], {"iommufd": False}, False,
     {"viommu.smmuv3.kvm": ("fail", "refuse", KVM), "viommu.smmuv3.config": ("fail", "refuse", None),
      "viommu.smmuv3.nesting": ("fail", "refuse", None)}, KVM),
    # with /dev/kvm (not the guest's case): the kvm check passes, the registers decide
    ("arm-smmuv3 accel=on, iommufd, KVM", ["smmuv3_accel"], {}, True,
     {"viommu.smmuv3.nesting": ("fail", "refuse", None)}, None),
    ("arm-smmuv3 accel=on, QEMU 10.2", ["smmuv3_accel"], {"qemu_version": "10.2"}, False,
     {"viommu.smmuv3.config": ("fail", "refuse", "Property 'arm-smmuv3.accel' not found"),
      "viommu.smmuv3.nesting": ("fail", "refuse", None)}, None),
]


def normalise(text):
    text = re.sub(r"\b[0-9a-f]{2}\.[0-9a-f]{2}\.[0-9a-f]\b", "BB.DD.F", text)
    return re.sub(r"smmuv3-iommu-memory-region-\d+-\d+", "smmuv3-iommu-memory-region-DEVFN-BUS", text)


@pytest.mark.parametrize("name,profiles,params,kvm,expected,qemu_said", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_gate_golden(facts, name, profiles, params, kvm, expected, qemu_said):
    facts["kernel"]["kvm"]["available"] = kvm
    if "smmuv3_accel" in profiles:               # passthrough takes no qemu_version
        params = dict({"qemu_version": "11.1"}, **params)
    verdict = policy.evaluate(facts, profiles, [NIC], host="arm64-smmuv3", params=params)
    fails = dict((f["id"], f) for f in verdict["findings"] if f["status"] == "fail")
    assert sorted(fails) == sorted(expected), (name, dict((k, v["message"]) for k, v in fails.items()))
    for check_id, (status, effect, words) in expected.items():
        f = fails[check_id]
        assert (f["status"], f["qemu_effect"]) == (status, effect), check_id
        if words:
            assert '"%s"' % words in f["message"], (check_id, f["message"])
    if qemu_said:          # QEMU's own line, normalised, is quoted by a refusal
        assert any('"%s"' % normalise(qemu_said) in normalise(f["message"])
                   for f in fails.values() if f["qemu_effect"] == "refuse"), qemu_said


def test_accel_off_reads_nothing_of_the_host(facts):
    verdict = policy.evaluate(facts, ["smmuv3_accel"], [NIC], params={"qemu_version": "11.1", "accel": False})
    by_id = dict((f["id"], f) for f in verdict["findings"])
    for check_id in ("viommu.smmuv3.kvm", "viommu.smmuv3.hw_info_type", "viommu.smmuv3.stlevel", "viommu.smmuv3.oas",
                     "viommu.smmuv3.nesting", "viommu.smmuv3.ats"):
        assert by_id[check_id]["status"] == "not_applicable", check_id
    assert by_id["viommu.smmuv3.config"]["message"].startswith(
        "arm-smmuv3 without accel=on emulates the SMMU and cannot translate VFIO devices")


def test_kvm_check_states(facts):
    def kvm(**params):
        v = policy.evaluate(facts, ["smmuv3_accel"], [NIC], params=dict({"qemu_version": "11.1"}, **params))
        return next(f for f in v["findings"] if f["id"] == "viommu.smmuv3.kvm")
    facts["kernel"]["kvm"]["available"] = True
    f = kvm()
    assert f["status"] == "pass" and f["message"].startswith("/dev/kvm exists")
    assert f["evidence"] == {"params.accel": True, "kernel.kvm.available": True, "source": "/dev/kvm"}
    facts["kernel"]["kvm"]["available"] = False
    f = kvm()
    assert (f["status"], f["qemu_effect"]) == ("fail", "refuse") and f["remedy"].startswith("Run the VM under KVM")
    assert f["rule"].startswith("QEMU hw/arm/virt.c virt_machine_device_pre_plug_cb()")
    del facts["kernel"]["kvm"]                       # facts of an older iommu.host
    f = kvm()
    assert f["status"] == "warn" and '"%s"' % KVM in f["message"]
    assert kvm(accel=False)["status"] == "not_applicable"
    assert kvm(qemu_version="10.0")["status"] == "not_applicable"


def test_kvm_fact_reads_dev_kvm(tmp_path):
    """kernel.kvm.available is /dev/kvm's existence under the gathered root."""
    root = fixture_trees.root("arm64-smmuv3")
    assert gather("arm64-smmuv3")["kernel"]["kvm"]["available"] is False
    import shutil
    copy_root = str(tmp_path / "root")
    shutil.copytree(root, copy_root, symlinks=True)
    open(os.path.join(copy_root, "dev", "kvm"), "w").close()
    f = iommu_facts.gather(root=copy_root, sysfs_only=True)
    assert f["kernel"]["kvm"] == {"available": True, "source": "/dev/kvm"}
