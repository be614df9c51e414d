"""Arm64 / SMMUv3 pieces (issue 13): GIC ITS MSI isolation in the facts and the gate, the SMMUv3 unit's
missing sysfs registers, and the prediction of the arm-smmu-v3 driver's feature word from IDR0-5.

The register values and feature words in REAL come from the arm64 test-bed guest (Linux 7.3.4 under
qemu-system-aarch64 -machine virt,iommu=smmuv3,gic-version=3): IOMMU_GET_HW_INFO of an e1000e on
vfio-pci and the driver's own `arm-smmu-v3 9050000.smmuv3: oas 44-bit (features 0x...)` line, with QEMU
7.2 (Debian 12) and 11.1.3 (trixie-backports). The guest's captured fixtures are tested in
test_fixtures_arm64.py.
"""
import copy
import os

import pytest

from ansible_collections.iommu.host.plugins.module_utils import iommu_facts
from ansible_collections.iommu.host.plugins.module_utils import iommu_sysfs as sysfs
from ansible_collections.iommu.host.plugins.module_utils.decode import smmuv3
from ansible_collections.iommu.host.plugins.module_utils.policy import api as policy
from tests.support import synthetic

# QEMU release -> (IDR0-5, IIDR, AIDR, dmesg oas, dmesg features)
REAL = {
    "7.2": ([0x0d40101a, 0x02730010, 0, 0x00001404, 0, 0x00000074], 0, 0x1, 44, 0x01008305),
    "11.1.3": ([0x0d44101b, 0x02730010, 0, 0x00001414, 0, 0x00000074], 0, 0x1, 44, 0x01088705),
}

SMMU = "smmu3.0x0000000009050000"
DT_ITS = "/sys/firmware/devicetree/base/intc@8000000/its@8080000"


def write(root, rel, data):
    path = os.path.join(root, rel.lstrip("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


INTERRUPTS = """           CPU0
 11:       1234     GICv3  27 Level     arch_timer
 13:          0     GICv3  33 Level     uart-pl011
 14:         17  ITS-PCI-MSIX-0000:00:02.0   0 Edge      virtio0-config
 15:        219  ITS-PCI-MSIX-0000:00:02.0   1 Edge      virtio0-input.0
 20:          3  ITS-PCI-MSIX-0000:00:08.0   0 Edge      eth1-rx-0
IPI0:        12       Rescheduling interrupts
"""


@pytest.mark.parametrize("rel", sorted(REAL))
def test_kernel_features_match_the_driver(rel):
    idr, iidr, aidr, oas, features = REAL[rel]
    got = smmuv3.kernel_features(idr, iidr, coherent=True)
    assert got["bits"] == features and got["hex"] == "0x%08x" % features
    assert got["names"] == smmuv3.kernel_feature_names(features)
    assert got["features"]["nesting"] is (rel != "7.2") and got["features"]["trans_s2"] is (rel != "7.2")
    decoded = smmuv3.decode_smmuv3(idr, iidr, aidr)
    assert decoded["derived"]["output_address_width_bits"] == oas
    assert decoded["derived"]["dirty_tracking"]["supported"] is False      # IDR0.HTTU 0: no HTTU
    assert decoded["derived"]["architecture"] == "SMMUv3.1"


def test_kernel_features_firmware_and_cpu_inputs():
    idr = list(REAL["11.1.3"][0])
    assert smmuv3.kernel_features(idr, coherent=False)["features"]["coherency"] is False
    # IDR0.COHACC(4) is set on QEMU's SMMU: without a firmware answer the register decides
    assert smmuv3.kernel_features(idr)["features"]["coherency"] is True
    httu = list(idr)
    httu[0] |= 2 << 6                                   # HTTU = access + dirty
    dt = smmuv3.kernel_features(httu, coherent=True)
    assert dt["features"]["ha"] and dt["features"]["hd"] and not dt["features"]["haft"]
    acpi = smmuv3.kernel_features(httu, coherent=True, firmware="acpi")
    assert not acpi["features"]["hd"] and "hd" in acpi["not_predicted"]
    hyp = list(idr)
    hyp[0] |= 1 << 9
    assert smmuv3.kernel_features(hyp, vhe=True)["features"]["e2h"] is True
    assert smmuv3.kernel_features(hyp, vhe=False)["features"]["e2h"] is False
    # Arm MMU-700 r0p0: the kernel drops nesting (errata 2268618, 2812531)
    mmu700 = (0x487 << 20) | 0x43b
    assert smmuv3.kernel_features(idr, mmu700)["features"]["nesting"] is False
    # a 256-entry stream table stays linear (sid_bits <= STRTAB_SPLIT)
    small = list(idr)
    small[1] = (small[1] & ~0x3f) | 8
    assert smmuv3.kernel_features(small)["features"]["2_lvl_strtab"] is False


@pytest.mark.parametrize("bad", [None, [], [1, 2, 3], ["x"] * 6, [True] * 6, "0x1"])
def test_kernel_features_odd_input(bad):
    assert smmuv3.kernel_features(bad) is None


@pytest.mark.parametrize("word,names", [("0x01088705", None), (0, []), ("zz", None), (-1, None), (True, None)])
def test_kernel_feature_names(word, names):
    got = smmuv3.kernel_feature_names(word)
    if word == "0x01088705":
        assert got == ["2_lvl_strtab", "tt_le", "coherency", "trans_s1", "trans_s2", "range_inv", "nesting", "bbml2"]
    else:
        assert got == names


def its_tree(root, interrupts=INTERRUPTS, pre_its=False, its=True):
    write(root, "/proc/interrupts", interrupts)
    write(root, "/sys/firmware/devicetree/base/intc@8000000/compatible", b"arm,gic-v3\0")
    if its:
        write(root, DT_ITS + "/compatible", b"arm,gic-v3-its\0")
        write(root, DT_ITS + "/msi-controller", b"")
    if pre_its:
        write(root, DT_ITS + "/socionext,synquacer-pre-its", b"\0\0\0\0")
    os.makedirs(os.path.join(root, "sys/class/iommu", SMMU, "devices"), exist_ok=True)


def test_its_isolates_msis(tmp_path):
    its_tree(str(tmp_path))
    got = sysfs.SysfsReader(str(tmp_path)).interrupt_remapping()
    assert got["enabled"] is True and got["mechanism"] == "gicv3_its"
    assert got["evidence"] == ["ITS-PCI-MSIX-0000:00:02.0", "ITS-PCI-MSIX-0000:00:08.0"]
    assert got["its_nodes"] == ["/intc@8000000/its@8080000"] and "pre_its" not in got


def test_pre_its_breaks_isolation(tmp_path):
    its_tree(str(tmp_path), pre_its=True)
    got = sysfs.SysfsReader(str(tmp_path)).interrupt_remapping()
    assert got["enabled"] is False and got["mechanism"] == "gicv3_its"
    assert got["pre_its"] == ["/intc@8000000/its@8080000"]


def test_gicv2m_does_not_isolate(tmp_path):
    its_tree(str(tmp_path), its=False, interrupts=INTERRUPTS.replace("ITS-", "GICv2m-"))
    got = sysfs.SysfsReader(str(tmp_path)).interrupt_remapping()
    assert got["enabled"] is False and got["mechanism"] is None
    assert got["evidence"][0] == "GICv2m-PCI-MSIX-0000:00:02.0" and got["its_nodes"] == []


def test_x86_view_unchanged(tmp_path):
    on = str(tmp_path / "on")
    synthetic.build(on, interrupt_remapping=True)
    got = sysfs.SysfsReader(on).interrupt_remapping()
    assert got["enabled"] is True and got["mechanism"] == "interrupt_remapping" and got["its_nodes"] == []


def test_smmu_unit_has_no_sysfs_registers(tmp_path):
    its_tree(str(tmp_path))
    unit = sysfs.SysfsReader(str(tmp_path)).units()[SMMU]
    assert unit["vendor"] == "arm_smmuv3" and unit["registers"] == {}
    assert "IOMMU_GET_HW_INFO" in unit["registers_note"]
    assert iommu_facts.decode_unit_registers(unit) is None


# ---- the gate ------------------------------------------------------------------------------------

def arm_facts(tmp_path, **kw):
    its_tree(str(tmp_path), **kw)
    return iommu_facts.gather(root=str(tmp_path), sysfs_only=True)


def ir_finding(facts):
    verdict = policy.evaluate(facts, ["passthrough"], [], params={})
    return [f for f in verdict["findings"] if f["id"] == "host.interrupt_remapping"][0]


def test_gate_passes_its(tmp_path):
    f = ir_finding(arm_facts(tmp_path))
    assert f["status"] == "pass"
    assert f["message"] == ("MSIs are isolated by the GIC ITS (ITS-PCI-MSIX-0000:00:02.0, ITS-PCI-MSIX-0000:00:08.0): "
                            "the ITS MSI domain is IRQ_DOMAIN_FLAG_ISOLATED_MSI, which iommufd requires (an SMMU "
                            "itself remaps no interrupts).")
    assert f["evidence"]["kernel.interrupt_remapping.mechanism"] == "gicv3_its"


def test_gate_fails_pre_its(tmp_path):
    f = ir_finding(arm_facts(tmp_path, pre_its=True))
    assert f["status"] == "fail" and "Socionext pre-ITS (/intc@8000000/its@8080000)" in f["message"]
    assert "gic-version=3" in f["remedy"]


def test_gate_fails_gicv2m(tmp_path):
    f = ir_finding(arm_facts(tmp_path, its=False, interrupts=INTERRUPTS.replace("ITS-", "GICv2m-")))
    assert f["status"] == "fail"
    assert f["message"].startswith("MSIs are not isolated: /proc/interrupts shows GICv2m-PCI-MSIX-0000:00:02.0")
    assert "not GICv2m or MBI frames" in f["remedy"]


def test_gate_x86_wording_unchanged(tmp_path):
    root = str(tmp_path / "off")
    synthetic.build(root, interrupt_remapping=False)
    f = ir_finding(iommu_facts.gather(root=root, sysfs_only=True))
    assert f["status"] == "fail" and f["message"].startswith("Interrupt remapping is off")
    assert "intremap=on" in f["remedy"]


def test_gate_unknown_mechanism_keeps_old_facts_working(tmp_path):
    facts = copy.deepcopy(arm_facts(tmp_path))
    facts["kernel"]["interrupt_remapping"] = {"enabled": True, "source": "/proc/interrupts",
                                              "evidence": ["IR-PCI-MSIX-0000:00:09.0"]}   # schema before 13
    assert ir_finding(facts)["status"] == "pass"


# ---- a real arm64 kernel's tree ---------------------------------------------------------------------
# tests/fixtures/sysfs/arm64-debian-6.12.tar.xz: the arm64 test-bed root and machine (virt, iommu=smmuv3,
# gic-version=3, QEMU 11.1.3) booted with Debian trixie's generic arm64 kernel 6.12.117 (SMMUv3 and ITS
# built in, no IOMMUFD), captured by tests/testbed/capture_fixtures.capture(). Its dmesg said
# "arm-smmu-v3 9050000.smmuv3: ias 44-bit, oas 44-bit (features 0x00088705)" (6.12 has no BBML2 bit).

def test_real_arm64_kernel_tree():
    from tests.support import fixture_trees
    f = iommu_facts.gather(root=fixture_trees.root("arm64-debian-6.12"), sysfs_only=True)
    assert f["findings"] == [] and f["kernel"]["release"] == "6.12.117+deb13-arm64"
    assert f["present"] is True and f["vendors"] == ["arm_smmuv3"]
    unit = f["units"][SMMU]
    assert unit["registers"] == {} and unit["decoded"] is None and "IOMMU_GET_HW_INFO" in unit["registers_note"]
    assert unit["devices"] == ["0000:00:02.0", "0000:00:03.0", "0000:00:04.0", "0000:00:05.0", "0000:00:0a.0",
                               "0000:01:00.0"]
    assert f["firmware"]["devicetree"] == {"present": True, "iommu_nodes": ["smmuv3@9050000"]}
    assert f["firmware"]["acpi"]["iort"]["present"] is False
    ir = f["kernel"]["interrupt_remapping"]
    assert ir == {"enabled": True, "source": "/proc/interrupts", "mechanism": "gicv3_its",
                  "evidence": ["ITS-PCI-MSI-0000:01:00.0", "ITS-PCI-MSIX-0000:00:02.0", "ITS-PCI-MSIX-0000:00:03.0",
                               "ITS-PCI-MSIX-0000:00:04.0", "ITS-PCI-MSIX-0000:00:05.0",
                               "ITS-PCI-MSIX-0000:00:0a.0"],
                  "its_nodes": ["/intc@8000000/its@8080000"]}
    verdict = policy.evaluate(f, ["passthrough"], [], params={})
    by_id = dict((x["id"], x) for x in verdict["findings"])
    assert by_id["host.interrupt_remapping"]["status"] == "pass"
    assert by_id["host.interrupt_remapping"]["message"].startswith(
        "MSIs are isolated by the GIC ITS (ITS-PCI-MSI-0000:01:00.0, ITS-PCI-MSIX-0000:00:02.0, ")
    assert by_id["host.iommu_firmware"]["message"] == "Firmware describes an IOMMU: device tree: smmuv3@9050000."
    assert by_id["host.iommu_not_disabled"]["status"] == "not_applicable"
    # this kernel has no IOMMUFD: the gate says so, whatever the interrupts
    assert by_id["host.iommufd"]["status"] == "fail"


def test_kernel_612_feature_word():
    """Linux 6.12 predates ARM_SMMU_FEAT_BBML2 (bit 24): its word for QEMU 11.1's SMMU is 7.3's minus BBML2."""
    idr, iidr, _aidr, _oas, features = REAL["11.1.3"]
    got = smmuv3.kernel_features(idr, iidr, coherent=True)
    assert got["bits"] & ~(1 << 24) == 0x00088705


# ---- the smmuv3_accel gate on the emulated SMMUv3's real registers (what test_arm64_testbed.py asserts) -----

@pytest.fixture(scope="module")
def intel_like(tmp_path_factory):
    from tests.unit.test_policy import Recorder
    root = str(tmp_path_factory.mktemp("tree"))
    synthetic.build(root, n_devices=3, vfio=(0, 2), bridge_groups=1)
    return iommu_facts.gather(root=root, query=Recorder())


@pytest.mark.parametrize("rel", sorted(REAL))
def test_smmuv3_accel_on_the_emulated_smmu(intel_like, rel):
    from tests.unit.test_policy import DEV, smmu_host
    idr, iidr, aidr = REAL[rel][:3]
    f = smmu_host(copy.deepcopy(intel_like), caps=0x8, pasid=0, **dict(
        ("idr%d" % i, v) for i, v in enumerate(idr)), iidr=iidr, aidr=aidr)
    f["firmware"]["acpi"]["iort"]["present"] = False          # QEMU's virt machine: a device tree
    assert f["kernel"]["kvm"] == {"available": False, "source": "/dev/kvm"}
    no_kvm = policy.evaluate(f, ["smmuv3_accel"], [DEV], params={"qemu_version": "11.1"})
    assert [x["message"] for x in no_kvm["findings"] if x["id"] == "viommu.smmuv3.kvm"] == [
        "QEMU refuses arm-smmuv3,accel=on without KVM: \"SMMUv3 accel=on requires KVM with kernel-irqchip=on "
        "support\" (/dev/kvm does not exist on this host; QEMU checks this before it reads the host SMMUv3's ID "
        "registers)."]
    f["kernel"]["kvm"]["available"] = True                  # the registers' own verdicts, on a KVM host
    verdict = policy.evaluate(f, ["smmuv3_accel"], [DEV], params={"qemu_version": "11.1"})
    fails = dict((x["id"], x["message"]) for x in verdict["findings"] if x["status"] == "fail"
                 and x["id"].startswith("viommu."))
    if rel == "7.2":
        assert fails == {"viommu.smmuv3.nesting": (
            "The host SMMUv3 cannot nest (IDR0 S2P clear): QEMU does not check this itself, and the nesting-parent "
            "allocation fails: \"vfio %s: Failed to allocate hwpt: Operation not supported\"." % DEV)}
    else:
        assert list(fails) == ["viommu.smmuv3.nesting"]
        assert fails["viommu.smmuv3.nesting"].startswith(
            "The host SMMUv3 can nest (S1P, S2P) but has no stage-2 forced write-back (IDR3.FWB clear)")
    asked = dict((x["id"], x["message"]) for x in policy.evaluate(
        f, ["smmuv3_accel"], [DEV], params={"qemu_version": "11.1", "oas": 48, "ssidsize": 8, "ats": True}
    )["findings"] if x["status"] == "fail")
    assert asked["viommu.smmuv3.oas"] == ("QEMU refuses the device: \"vfio %s: Failed to set vIOMMU: Host SMMUv3 "
                                          "supports only 44-bit IPA, but the vSMMU OAS implies 48-bit IPA\"." % DEV)
    assert asked["viommu.smmuv3.ssidsize"] == ("QEMU refuses the device: \"vfio %s: Failed to set vIOMMU: Host "
                                               "SMMUv3 SSIDSIZE not compatible (host=0, QEMU=8)\"." % DEV)
    # QEMU 11.1.3 compares IDR0.ATS itself (hw/arm/smmuv3-accel.c:151, __LINE__ in Debian's binary)
    assert asked["viommu.smmuv3.ats"] == ("QEMU refuses the device: \"vfio %s: Failed to set vIOMMU: Host SMMUv3 "
                                          "doesn't support Address Translation Services\"." % DEV)
