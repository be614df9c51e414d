"""The arm64 test-bed guest (issue 13): a real SMMUv3 path, end to end.

Profile ``arm64-smmuv3``: Linux 7.3.4 cross-built for arm64 (tests/testbed/build-kernel-arm64.sh) on QEMU's
virt machine with an emulated SMMUv3 in front of the PCIe root complex and a GICv3 with its ITS
(``-machine virt,iommu=smmuv3,gic-version=3 -cpu max``, TCG), the arm64 Debian root of
build-root-arm64.sh; the outer QEMU is qemu-system-aarch64 11.1.3 (trixie-backports) unless
TESTBED_QEMU_AARCH64 names another. Ansible reaches it over SSH like the x86 guests.

What is proven here, against the kernel's own view:
- iommu_facts / iommu_hw_info (after iommu.host.vfio_pci bound the e1000e at 00:09.0) return hw_info
  type arm_smmuv3 with the real IDR0-5/IIDR/AIDR, decoded field by field;
- the decoded values agree with what the arm-smmu-v3 driver derived: its `oas N-bit (features 0x...)` line,
  each ARM_SMMU_FEAT_* bit predicted from the registers (decode.smmuv3.kernel_features, the firmware input
  being the device tree's dma-coherent);
- the SMMUv3 unit has no register files in sysfs, and the facts say where each value came from;
- MSI isolation by the GICv3 ITS is recognised (ITS-PCI-MSIX chips, the ITS node), iommufd's
  allow_unsafe_interrupts is off and the iommufd bind succeeded;
- the smmuv3_accel gate fails on this emulated SMMU in the documented ways;
- the oracle (marker ``oracle``): the guest's own qemu-system-aarch64 11.1 (build-root-arm64.sh puts it in the
  arm64 root as /usr/local/bin/qemu-11.1) is started on the e1000e bound to vfio-pci for each configuration of
  ORACLE_CONFIGS (no vIOMMU, QEMU's emulated SMMUv3, arm-smmuv3,accel=on; iommufd and the legacy container),
  and whether it starts, and its words when it refuses, must agree with the gate's verdict on the facts
  gathered in the same guest.
"""
import json
import os
import re
import socket
import sys
import time
from pathlib import Path

import pytest

from guestops import NIC, bind_vfio

from ansible_collections.iommu.host.plugins.module_utils import qemu_probe
from ansible_collections.iommu.host.plugins.module_utils.decode import smmuv3
from ansible_collections.iommu.host.plugins.module_utils.policy import api as policy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testbed"))
import oracle  # noqa: E402
import probe_batch  # noqa: E402

GUEST = "arm64-smmuv3"
pytestmark = [pytest.mark.testbed(GUEST), pytest.mark.arm64]

SMMU = "smmu3.0x0000000009050000"          # the virt machine's SMMUv3 at 0x09050000 (device tree)
OTHER_NIC = "0000:00:08.0"
# outer QEMU release -> IDR0-5, IIDR, AIDR of its emulated SMMUv3 (testbed.md, second round)
EXPECTED = {
    "7.2": ([0x0d40101a, 0x02730010, 0, 0x00001404, 0, 0x00000074], 0, 0x1),
    "11.1": ([0x0d44101b, 0x02730010, 0, 0x00001414, 0, 0x00000074], 0, 0x1),
}
DMESG_FEATURES = re.compile(r"arm-smmu-v3 (\S+): oas (\d+)-bit \(features (0x[0-9a-f]+)\)")

PLAY = {"name": "arm64", "hosts": GUEST, "gather_facts": False, "tasks": [
    {"name": "bind", "iommu.host.vfio_pci": {"devices": [NIC], "persistent": False}},
    {"name": "gather", "iommu.host.iommu_facts": {}},
    {"name": "query", "iommu.host.iommu_hw_info": {"devices": [NIC]}},
    {"name": "release", "iommu.host.vfio_pci": {"devices": [NIC], "state": "absent", "persistent": False}},
]}


def outer_release(guest):
    """('11.1', '11.1.3') / ('7.2', ...) of the QEMU running the guest (its QMP greeting)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(guest.qmp_socket))
        greeting = json.loads(s.makefile("rb").readline())
    v = greeting["QMP"]["version"]["qemu"]
    return "%d.%d" % (v["major"], v["minor"]), "%d.%d.%d" % (v["major"], v["minor"], v["micro"])


@pytest.fixture(scope="module")
def arm(testbed):
    return testbed[GUEST]


@pytest.fixture(scope="module")
def kernel_view(arm):
    """What the guest kernel itself says: dmesg, /proc/interrupts, the device tree, sysfs."""
    script = r"""
import json, os, subprocess
dt = "/sys/firmware/devicetree/base"
unit = "/sys/class/iommu/SMMU"
print(json.dumps({
    "machine": os.uname().machine,
    "dmesg": subprocess.run(["dmesg"], stdout=subprocess.PIPE, universal_newlines=True).stdout,
    "interrupts": open("/proc/interrupts").read(),
    "smmu_nodes": sorted(n for n in os.listdir(dt) if "smmu" in n),
    # of_dma_is_coherent(): the node or an ancestor (QEMU's virt puts it on both) has dma-coherent
    "dma_coherent": {n: os.path.exists(os.path.join(dt, n, "dma-coherent")) or os.path.exists(dt + "/dma-coherent")
                     for n in os.listdir(dt) if "smmu" in n},
    "unit_entries": sorted(os.listdir(unit)) if os.path.isdir(unit) else None,
    "allow_unsafe": open("/sys/module/iommufd/parameters/allow_unsafe_interrupts").read().strip(),
    "iort": os.path.exists("/sys/firmware/acpi/tables/IORT"),
}))
"""
    res = arm.run(["python3", "-c", script.replace("SMMU", SMMU)], timeout=120)
    assert res.rc == 0, res
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def played(request, arm, testbed):
    conftest = next(p for p in request.config.pluginmanager.get_plugins()
                    if str(getattr(p, "__file__", "")).endswith(os.path.join("integration", "conftest.py")))
    inventory = testbed.inventory([GUEST])
    result = conftest.run_playbook(PLAY, inventory, workdir=testbed.run_dir)
    assert result.rc == 0, result
    return result


@pytest.fixture(scope="module")
def facts(played):
    return played.result(GUEST, "gather")["ansible_facts"]["iommu"]


def test_guest_is_arm64_with_smmuv3_probed(kernel_view):
    assert kernel_view["machine"] == "aarch64"
    assert kernel_view["iort"] is False and kernel_view["smmu_nodes"] == ["smmuv3@9050000"]
    m = DMESG_FEATURES.search(kernel_view["dmesg"])
    assert m and m.group(1) == "9050000.smmuv3", kernel_view["dmesg"][-3000:]
    # an SMMUv3 unit has no register files in sysfs: nothing but the generic class attributes
    assert set(kernel_view["unit_entries"]) <= {"devices", "power", "subsystem", "uevent", "device"}
    assert "ITS-PCI-MSIX-0000:00:02.0" in kernel_view["interrupts"]
    assert kernel_view["allow_unsafe"] == "N"


def test_facts_hw_info_is_the_real_smmuv3(arm, facts, played):
    assert facts["mode"] == "iommufd" and facts["queried"] == [NIC]
    assert facts["present"] is True and facts["vendors"] == ["arm_smmuv3"]
    hw = facts["devices"][NIC]["hw_info"]
    assert (hw["source"], hw["type"], hw["type_id"], hw["data_len"]) == ("iommufd", "arm_smmuv3", 2, 40)
    assert hw["device_reset"] is True and hw["capabilities"]["raw"] == "0x8"     # ATS_NOT_SUPPORTED
    raw = hw["vendor"]["raw"]
    idr = [int(v, 16) for v in raw["idr"]]
    series, version = outer_release(arm)
    if series in EXPECTED:
        assert (idr, int(raw["iidr"], 16), int(raw["aidr"], 16)) == EXPECTED[series], version
    # iommu_hw_info answers the same registers
    out = played.result(GUEST, "query")
    assert out["failures"] == [] and out["devices"][NIC]["vendor"]["raw"] == raw
    # the unit: no sysfs registers, its values labelled by source
    unit = facts["units"][SMMU]
    assert unit["vendor"] == "arm_smmuv3" and unit["registers"] == {} and unit["decoded"] is None
    assert "IOMMU_GET_HW_INFO" in unit["registers_note"]
    assert unit["source"] == "sysfs:/sys/class/iommu/%s" % SMMU
    assert unit["iommufd"]["via"] == NIC and unit["iommufd"]["source"] == "iommufd:IOMMU_GET_HW_INFO(%s)" % NIC
    assert unit["iommufd"]["vendor"]["raw"] == raw
    assert hw["consistent_with_sysfs"] is None                                  # nothing in sysfs to compare
    assert NIC in unit["devices"] and facts["devices"][OTHER_NIC]["driver"] == "e1000e"


def test_decoded_fields(arm, facts):
    v = facts["devices"][NIC]["hw_info"]["vendor"]
    series, version = outer_release(arm)
    s2 = series != "7.2"                        # QEMU 11 added stage 2 (and 16-bit VMIDs)
    assert v["idr0"] == {"st_lvl": 1, "term_model": True, "stall_model": 1, "ttendian": 2, "cd2l": False,
                         "vmid16": s2, "pri": False, "sev": False, "msi": False, "asid16": True, "ats": False,
                         "hyp": False, "httu": 0, "btm": False, "cohacc": True, "ttf": 2, "s1p": True,
                         "s2p": s2}, version
    assert v["idr1"] == {"tables_preset": False, "queues_preset": False, "rel": False, "attr_types_ovr": False,
                         "cmdqs": 19, "evtqs": 19, "priqs": 0, "ssidsize": 0, "sidsize": 16}
    assert v["idr3"] == {"fwb": False, "ril": True, "bbm": 2}
    assert v["idr5"] == {"stall_max": 0, "ds": False, "gran64k": True, "gran16k": True, "gran4k": True,
                         "oas": 4, "vax": 0}
    assert v["iidr"] == {"productid": 0, "variant": 0, "revision": 0, "implementer": 0}
    assert v["aidr"] == {"archminorrev": 1, "archmajorrev": 0}
    d = v["derived"]
    assert d["output_address_width_bits"] == 44 and d["architecture"] == "SMMUv3.1"
    assert d["nesting"]["supported"] is s2 and d["second_stage"]["supported"] is s2
    assert d["dirty_tracking"]["supported"] is False and d["hardware_table_update"] == "none"
    assert d["stream_id_bits"] == 16 and d["pasid_width"] == 0 and d["asid_bits"] == 16
    assert d["page_sizes"] == ["4KiB", "16KiB", "64KiB", "2MiB", "32MiB", "512MiB", "1GiB"]
    assert d["max_pasids"] == 1 and d["vmid_bits"] == (16 if s2 else 8)
    # IDR3 bits 2 (HAD) and, from QEMU 11, 4 have no macro in arm-smmu-v3.h: reported, not decoded
    assert d["undecoded_bits_set"] == {"idr0": "0x0", "idr1": "0x0", "idr3": "0x14" if s2 else "0x4",
                                       "idr5": "0x0", "iidr": "0x0", "aidr": "0x0"}


def test_decoded_values_agree_with_the_driver(facts, kernel_view):
    """Every ARM_SMMU_FEAT_* bit of the driver's features word, predicted from the IDRs we decoded."""
    m = DMESG_FEATURES.search(kernel_view["dmesg"])
    oas, features = int(m.group(2)), int(m.group(3), 16)
    v = facts["devices"][NIC]["hw_info"]["vendor"]
    assert v["derived"]["output_address_width_bits"] == oas
    idr = [int(x, 16) for x in v["raw"]["idr"]]
    coherent = kernel_view["dma_coherent"]["smmuv3@9050000"]        # the firmware's word (DT dma-coherent)
    predicted = smmuv3.kernel_features(idr, int(v["raw"]["iidr"], 16), coherent=coherent, firmware="dt",
                                       pci_ats=True, pci_pri=True, vhe=False)
    names = smmuv3.kernel_feature_names(features)
    # SVA depends on CPU features (and CONFIG_ARM_SMMU_V3_SVA, off here): not predicted, and not set
    assert "sva" not in names
    assert predicted["names"] == names, (predicted["hex"], "0x%08x" % features)
    assert predicted["bits"] == features
    # and field by field, the decoded names for the same facts
    f = predicted["features"]
    assert f["trans_s1"] is v["idr0"]["s1p"] and f["trans_s2"] is v["idr0"]["s2p"]
    assert f["nesting"] is v["derived"]["nesting"]["supported"]
    assert f["range_inv"] is v["idr3"]["ril"] and f["bbml2"] is (v["idr3"]["bbm"] == 2)
    assert f["2_lvl_strtab"] is (v["idr0"]["st_lvl"] == 1) and f["tt_le"] is (v["idr0"]["ttendian"] == 2)
    assert f["hd"] is v["derived"]["dirty_tracking"]["supported"]


def test_its_msi_isolation_recognised(facts, kernel_view):
    ir = facts["kernel"]["interrupt_remapping"]
    assert ir["enabled"] is True and ir["mechanism"] == "gicv3_its" and ir["source"] == "/proc/interrupts"
    assert ir["evidence"] and all(e.startswith("ITS-PCI-MSI") for e in ir["evidence"])
    assert "ITS-PCI-MSIX-0000:00:02.0" in ir["evidence"]                  # the management virtio-net
    assert ir["its_nodes"] == ["/intc@8000000/its@8080000"]
    assert facts["kernel"]["allow_unsafe_interrupts"] is False
    # iommufd bound the device without allow_unsafe_interrupts: the ITS isolation is real
    assert facts["queried"] == [NIC]
    verdict = policy.evaluate(facts, ["passthrough"], [NIC], host=GUEST)
    by_id = dict((f["id"], f) for f in verdict["findings"] if f.get("device") in (None, NIC))
    assert by_id["host.interrupt_remapping"]["status"] == "pass"
    assert by_id["host.interrupt_remapping"]["message"].startswith("MSIs are isolated by the GIC ITS (ITS-PCI-MSI")
    assert by_id["host.iommu_firmware"]["message"] == "Firmware describes an IOMMU: device tree: smmuv3@9050000."
    assert [f for f in verdict["findings"] if f["status"] == "fail"] == []


def failing(verdict):
    return dict((f["id"], f["message"]) for f in verdict["findings"] if f["status"] == "fail")


def test_smmuv3_accel_gate_fails_as_documented(arm, facts):
    series, version = outer_release(arm)
    prefix = "vfio %s: " % NIC
    viommu = prefix + "Failed to set vIOMMU: "
    base = policy.evaluate(facts, ["smmuv3_accel"], [NIC], host=GUEST, params={"qemu_version": "11.1"})
    got = failing(base)
    # a TCG guest has no /dev/kvm, which arm-smmuv3,accel=on requires before anything else
    assert facts["kernel"]["kvm"] == {"available": False, "source": "/dev/kvm"}
    assert got.pop("viommu.smmuv3.kvm") == (
        "QEMU refuses arm-smmuv3,accel=on without KVM: \"SMMUv3 accel=on requires KVM with kernel-irqchip=on "
        "support\" (/dev/kvm does not exist on this host; QEMU checks this before it reads the host SMMUv3's ID "
        "registers).")
    if series == "7.2":
        assert got == {"viommu.smmuv3.nesting": (
            "The host SMMUv3 cannot nest (IDR0 S2P clear): QEMU does not check this itself, and the nesting-parent "
            "allocation fails: \"%sFailed to allocate hwpt: Operation not supported\"." % prefix)}, version
    else:
        assert list(got) == ["viommu.smmuv3.nesting"], (version, got)
        assert got["viommu.smmuv3.nesting"].startswith(
            "The host SMMUv3 can nest (S1P, S2P) but has no stage-2 forced write-back (IDR3.FWB clear)")
    # every IDR comparison of smmuv3_accel_check_hw_compatible passes with QEMU's defaults
    ok = dict((f["id"], f["status"]) for f in base["findings"] if f["id"].startswith("viommu.smmuv3."))
    for check in ("stlevel", "ttendian", "ttf", "sidsize", "ssidsize", "ril", "oas", "gran4k", "gran16k", "gran64k"):
        assert ok["viommu.smmuv3." + check] == "pass", check
    # QEMU 11.1's ats=auto copies the first device's IDR0.ATS (0 here) into the vSMMU, and compares it (11.1.3
    # smmuv3_accel_check_hw_compatible, hw/arm/smmuv3-accel.c:151): a pass
    assert ok["viommu.smmuv3.hw_info_type"] == "pass" and ok["viommu.smmuv3.ats"] == "pass"
    ats = next(f for f in base["findings"] if f["id"] == "viommu.smmuv3.ats")
    assert ats["message"].startswith("ats=auto: the vSMMU advertises ATS as the host SMMUv3 of the first device does "
                                     "(IDR0.ATS=0 here"), ats
    # what this SMMU lacks, asked for: 48-bit OAS, PASIDs, ATS
    asked = failing(policy.evaluate(facts, ["smmuv3_accel"], [NIC], host=GUEST,
                                    params={"qemu_version": "11.1", "oas": 48, "ssidsize": 8, "ats": True}))
    assert asked["viommu.smmuv3.oas"] == ("QEMU refuses the device: \"%sHost SMMUv3 supports only 44-bit IPA, but "
                                          "the vSMMU OAS implies 48-bit IPA\"." % viommu)
    assert asked["viommu.smmuv3.ssidsize"] == ("QEMU refuses the device: \"%sHost SMMUv3 SSIDSIZE not compatible "
                                               "(host=0, QEMU=8)\"." % viommu)
    assert asked["viommu.smmuv3.ats"] == ("QEMU refuses the device: \"%sHost SMMUv3 doesn't support Address "
                                          "Translation Services\"." % viommu)
    # the emulated vSMMU (accel off) cannot take a VFIO device at all
    off = failing(policy.evaluate(facts, ["smmuv3_accel"], [NIC], host=GUEST,
                                  params={"qemu_version": "11.1", "accel": False}))
    assert off["viommu.smmuv3.config"].startswith("arm-smmuv3 without accel=on emulates the SMMU")
    # dirty tracking: no HTTU, so no IOMMU dirty tracking for migration
    hw = facts["devices"][NIC]["hw_info"]
    assert hw["capabilities"]["dirty_tracking"] is False and hw["vendor"]["idr0"]["httu"] == 0


# ---- the oracle: the guest's own qemu-system-aarch64 against the gate -------------------------------------

RELEASE = "11.1"
FIRMWARE = "/run/testbed-oracle-fw.bin"     # any file makes -bios load "firmware": the virt machine then does ACPI
# name, profiles, params, machine options added to build_argv's virt machine, QEMU starts?
# ",iommu=smmuv3" replaces build_argv's -device arm-smmuv3 (both are QEMU's emulated SMMUv3); "-bios" loads
# FIRMWARE. build_argv asks for accel=kvm:tcg, as iommu.host.qemu_probe does: TCG here (no /dev/kvm).
ORACLE_CONFIGS = [
    ("virt, no vIOMMU, iommufd", ["passthrough"], {}, "", True),
    ("virt, no vIOMMU, legacy container", ["passthrough"], {"iommufd": False}, "", True),
    ("virt,iommu=smmuv3 (emulated), iommufd", ["smmuv3_accel"], {"accel": False}, ",iommu=smmuv3", False),
    ("virt,iommu=smmuv3 (emulated), legacy container", ["smmuv3_accel"], {"accel": False, "iommufd": False},
     ",iommu=smmuv3", False),
    ("-device arm-smmuv3,accel=off, iommufd", ["smmuv3_accel"], {"accel": False}, "", False),
    ("-device arm-smmuv3,accel=off, legacy container", ["smmuv3_accel"], {"accel": False, "iommufd": False}, "",
     False),
    ("-device arm-smmuv3,accel=on, iommufd (device tree)", ["smmuv3_accel"], {}, "", False),
    ("-device arm-smmuv3,accel=on, iommufd, firmware + acpi=on", ["smmuv3_accel"], {}, ",acpi=on -bios", False),
    ("-device arm-smmuv3,accel=on, legacy container", ["smmuv3_accel"], {"iommufd": False}, "", False),
    ("-device arm-smmuv3,accel=on,oas=48,ssidsize=8, iommufd", ["smmuv3_accel"], {"oas": 48, "ssidsize": 8}, "",
     False),
]
# what QEMU prints when accel=kvm:tcg finds no KVM (errors on stderr, not warnings), before the real answer
KVM_FALLBACK = ["Could not access KVM kernel module: No such file or directory",
                "failed to initialize kvm: No such file or directory", "falling back to tcg"]
_BDF = re.compile(r"\b[0-9a-f]{2}\.[0-9a-f]{2}\.[0-9a-f]\b")


def normalise(text):
    """Only the device's place in the nested guest varies: its guest address and its SMMU region's devfn-bus."""
    text = _BDF.sub("BB.DD.F", text)
    return re.sub(r"smmuv3-iommu-memory-region-\d+-\d+", "smmuv3-iommu-memory-region-DEVFN-BUS", text)


def oracle_argv(profiles, params, options):
    """build_argv's arguments for the arm64 binary (what iommu.host.qemu_probe runs), with ``options``."""
    values = policy.resolve_profiles(profiles, params)[1]
    argv = qemu_probe.build_argv(values, [NIC], arch="aarch64")
    assert argv[:4] == ["-machine", qemu_probe.ARM_MACHINE, "-cpu", "max"], argv
    extra = []
    if options.endswith(" -bios"):
        options, extra = options[:-len(" -bios")], ["-bios", FIRMWARE]
    if ",iommu=" in options:                    # the machine's own SMMUv3 instead of -device arm-smmuv3
        i = next(i for i, a in enumerate(argv) if a.startswith("arm-smmuv3,"))
        del argv[i - 1:i + 1]
    argv[1] += options
    return argv + extra


def disagreements(verdict, res, qemu_starts):
    """Where the gate's verdict and QEMU's outcome differ (empty: they agree)."""
    fails = [f for f in verdict["findings"] if f["status"] == "fail"]
    refuse = [f for f in fails if f["qemu_effect"] == "refuse"]
    problems = []
    if res.get("timed_out"):
        problems.append("QEMU timed out")
    if res["started"] != qemu_starts:
        problems.append("QEMU %s, the test bed expected otherwise" % ("started" if res["started"] else "refused"))
    if res["started"] and refuse:
        problems.append("QEMU started; the gate predicts a refusal: %s" % "; ".join(
            "%s: %s" % (f["id"], f["message"]) for f in refuse))
    if not res["started"]:
        if not refuse:
            problems.append("QEMU refused (%s); the gate predicts it starts" % " | ".join(res["errors"]))
        elif not res["errors"]:
            problems.append("QEMU refused without a message")
        else:
            # QEMU's refusal is its last error line (11.1 prints "KVM VFIO device isn't created yet" before some)
            said = normalise(res["errors"][-1])
            if not any('"%s"' % said in normalise(f["message"]) for f in refuse):
                problems.append("QEMU's words %r are quoted by no refusal of the gate (%s)" % (
                    res["errors"][-1], "; ".join("%s: %s" % (f["id"], f["message"]) for f in refuse)))
    return problems


@pytest.fixture(scope="module")
def oracle_runs(arm, facts):
    """Every ORACLE_CONFIGS row: (argv, gate verdict, qemu_probe result), probed in one SSH call."""
    bind_vfio(arm)
    arm.run("head -c 65536 /dev/zero > %s" % FIRMWARE, timeout=60, check=True)
    binary = oracle.oracles(arm)[RELEASE].wrapper
    rows = []
    for name, profiles, params, machine, _starts in ORACLE_CONFIGS:
        if "smmuv3_accel" in profiles:
            params = dict(params, qemu_version=RELEASE)
        verdict = policy.evaluate(facts, profiles, [NIC], host=GUEST, params=params)
        rows.append((oracle_argv(profiles, params, machine), verdict))
    t0 = time.time()
    results = probe_batch.run_batch(arm, [{"binary": binary, "argv": row[0], "migrate": False} for row in rows])
    sys.stderr.write("\narm64 oracle: %d probes in %.1fs (%s)\n" % (
        len(rows), time.time() - t0, ", ".join("%.1fs" % r["seconds"] for r in results)))
    return dict((cfg[0], (argv, verdict, res)) for cfg, (argv, verdict), res in zip(ORACLE_CONFIGS, rows, results))


@pytest.mark.oracle
def test_root_has_the_arm64_oracle(arm):
    found = oracle.oracles(arm)
    assert sorted(found) == [RELEASE], found
    orc = found[RELEASE]
    assert orc.version.startswith(RELEASE + ".") and orc.suite == "trixie-backports"
    assert orc.wrapper == "/usr/local/bin/qemu-%s" % RELEASE
    res = arm.run([orc.wrapper, "--version"], timeout=60)
    assert res.rc == 0 and res.stdout.startswith("QEMU emulator version %s (Debian %s)" % (orc.version, orc.debian)), res
    res = arm.run(["sh", "-c", "od -An -tx1 -j18 -N2 $(readlink -f /usr/bin/qemu-system-aarch64)"], timeout=60)
    assert res.stdout.split() == ["b7", "00"], res          # an arm64 binary, run natively in the guest


@pytest.mark.oracle
@pytest.mark.parametrize("config", [c[0] for c in ORACLE_CONFIGS])
def test_oracle_agrees_with_the_gate(oracle_runs, config):
    argv, verdict, res = oracle_runs[config]
    starts = next(c[4] for c in ORACLE_CONFIGS if c[0] == config)
    said = "QEMU %s: %s" % ("started" if res["started"] else "refused", " | ".join(res["messages"]) or "-")
    assert res["qemu_version"] and res["qemu_version"].startswith(RELEASE + "."), (res, said)
    problems = disagreements(verdict, res, starts)
    assert problems == [], "\n".join(["%s: %s" % (config, " ".join(argv)), said] + problems)


@pytest.mark.oracle
def test_oracle_words(oracle_runs, facts):
    """QEMU 11.1's exact refusals in this guest: the emulated SMMUv3 refuses VFIO when VFIO registers its
    notifier (both backends, both ways of asking for it); accel=on stops at the KVM requirement, with or
    without firmware/ACPI, before any host IDR comparison."""
    def last(name):
        return oracle_runs[name][2]["errors"][-1]
    notifier = ("memory listener initialization failed: Region smmuv3-iommu-memory-region-8-0: device 00.01.0 "
                "requires iommu MAP notifier which is not currently supported")
    for name in ("virt,iommu=smmuv3 (emulated), iommufd", "-device arm-smmuv3,accel=off, iommufd"):
        assert last(name) == "vfio %s: %s" % (NIC, notifier), name
    for name in ("virt,iommu=smmuv3 (emulated), legacy container", "-device arm-smmuv3,accel=off, legacy container"):
        # the legacy backend names the device's IOMMU group, as the facts do
        assert last(name) == "vfio %s: failed to setup container for group %s: %s" % (
            NIC, facts["devices"][NIC]["iommu_group"], notifier), name
    for name in [c[0] for c in ORACLE_CONFIGS if "accel=on" in c[0]]:
        assert oracle_runs[name][2]["errors"] == KVM_FALLBACK + [
            "SMMUv3 accel=on requires KVM with kernel-irqchip=on support"], name
