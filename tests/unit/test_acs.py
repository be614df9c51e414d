"""ACS: the config-space parser (real blobs from the test bed, synthetic and random ones), the facts
(devices.<a>.acs, upstream, acs_path, sriov) and the gate's host.acs_override / device.acs_path.

tests/fixtures/pci_config/*.hex are /sys/bus/pci/devices/<a>/config read as root in the test bed's
intel-igb guest (Linux 7.3.4, QEMU 11.1): the pcie-root-port 00:0b.0, the pcie-pci-bridge 01:00.0,
the e1000 02:01.0 (conventional PCI, 256 bytes), the e1000e 00:09.0 (integrated endpoint) and the igb
PF 03:00.0. The expected ACS lines are what lspci -vvv printed for them in that guest.
"""
import copy
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.iommu.host.plugins.module_utils import iommu_facts
from ansible_collections.iommu.host.plugins.module_utils.decode import pci_config as C
from ansible_collections.iommu.host.plugins.module_utils.policy import api as P
from ansible_collections.iommu.host.plugins.module_utils.policy.checks import acs as A
from tests.unit import test_sriov as T

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(os.path.dirname(HERE), "fixtures", "pci_config")
# lspci -vvv -s 00:0b.0 in the intel-igb guest (pciutils of Debian trixie)
LSPCI_CAP = "SrcValid+ TransBlk+ ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans+"
LSPCI_CTL = "SrcValid+ TransBlk- ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans-"


def blob(name):
    with open(os.path.join(FIX, name.replace(":", "_") + ".hex")) as f:
        return bytes.fromhex(f.read().strip())


# ---------------------------------------------------------------------------
# parser


def test_real_root_port_matches_lspci():
    r = C.parse_config(blob("0000:00:0b.0"))
    assert r["readable"] == "extended" and r["size"] == 4096 and r["port_type"] == "root_port"
    assert r["acs_status"] == "present" and r["acs"]["offset"] == "0x148"     # lspci: Capabilities: [148 v1]
    assert r["acs"]["version"] == 1
    assert C.lspci_line(r["acs"]["capability"]) == LSPCI_CAP
    assert C.lspci_line(r["acs"]["control"]) == LSPCI_CTL
    assert r["acs"]["isolates"] is True and r["problems"] == []
    assert r["vendor_id"] == "0x1b36" and r["device_id"] == "0x000c"


@pytest.mark.parametrize("name,ptype,status", [
    ("0000:01:00.0", "pcie_to_pci_bridge", "absent"),
    ("0000:03:00.0", "endpoint", "absent"),
    ("0000:00:09.0", "rc_integrated_endpoint", "absent"),
    ("0000:02:01.0", None, "not_pcie"),
])
def test_real_devices_without_acs(name, ptype, status):
    r = C.parse_config(blob(name))
    assert (r["port_type"], r["acs_status"], r["acs"]) == (ptype, status, None)
    assert r["problems"] == [] and r["note"]


def test_truncated_reads_say_why():
    full = blob("0000:00:0b.0")
    r = C.parse_config(full[:256])
    assert r["acs_status"] == "extended_config_not_readable" and r["acs"] is None
    assert "extended config space not readable" in r["note"] and "not absent" in r["note"]
    r = C.parse_config(full[:64])
    assert r["readable"] == "header" and "not root" in r["note"] and r["pcie"] is None
    assert C.parse_config(b"")["readable"] == "none" and C.parse_config(None)["readable"] == "none"


def _blob_with_acs(cap, ctrl, at=0x100, loop=False):
    b = bytearray(4096)
    b[0:4] = struct.pack("<HH", 0x8086, 0x1234)
    b[6] = 0x10                                      # status: capability list
    b[0x0e] = 0x01
    b[0x34] = 0x40
    b[0x40:0x44] = bytes([0x10, 0x00, 0x42, 0x00])   # PCIe cap v2, type 4 (root port)
    if at != 0x100:                                  # another extended capability first (AER)
        b[0x100:0x104] = struct.pack("<I", 0x0001 | (1 << 16) | (at << 20))
    nxt = at if loop else 0
    b[at:at + 4] = struct.pack("<I", 0x000D | (1 << 16) | (nxt << 20))
    b[at + 4:at + 8] = struct.pack("<HH", cap, ctrl)
    return bytes(b)


def test_synthetic_acs_bits_and_kernel_rule():
    r = C.parse_config(_blob_with_acs(0x7f, 0x1d, at=0x200))
    assert r["acs"]["offset"] == "0x200" and r["port_type"] == "root_port"
    assert r["acs"]["capability"] == dict.fromkeys(("sv", "tb", "rr", "cr", "uf", "ec", "dt"), True)
    assert r["acs"]["isolates"] is True
    # RR implemented but not enabled: no isolation
    assert C.parse_config(_blob_with_acs(0x1f, 0x1b))["acs"]["isolates"] is False
    # only SV implemented, and enabled: what is not implemented is not required (pci_acs_flags_enabled)
    assert C.parse_config(_blob_with_acs(0x01, 0x01))["acs"]["isolates"] is True
    looped = C.parse_config(_blob_with_acs(0x1f, 0x1f, loop=True))
    assert looped["acs_status"] == "present"        # found before the loop is noticed


def test_extended_list_loop_is_reported_not_followed():
    b = bytearray(_blob_with_acs(0, 0))
    b[0x100:0x104] = struct.pack("<I", 0x0001 | (1 << 16) | (0x100 << 20))   # AER pointing at itself
    r = C.parse_config(bytes(b))
    assert r["acs_status"] == "absent" and any("loops" in p for p in r["problems"])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4200))
def test_random_blobs_never_raise(data):
    r = C.parse_config(data)
    assert r["acs_status"] in ("present", "absent", "not_pcie", "extended_config_not_readable", "not_readable")
    assert (r["acs"] is not None) == (r["acs_status"] == "present")


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 4096), st.integers(0, 0x7f), st.integers(0, 0x7f), st.sampled_from([0x100, 0x148, 0xffc]))
def test_truncated_acs_blobs_never_raise(cut, cap, ctrl, at):
    r = C.parse_config(_blob_with_acs(cap, ctrl, at=at)[:cut])
    if cut >= 4096 and at + 8 <= 4096:
        assert r["acs"]["capability"] == C.decode_acs_bits(cap)
        assert r["acs"]["isolates"] == C.acs_isolates(cap, ctrl)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xffff), st.integers(0, 0xfff)), max_size=30))
def test_random_extended_chains_terminate(chain):
    b = bytearray(_blob_with_acs(0, 0))
    pos = 0x100
    for cid, nxt in chain:
        b[pos:pos + 4] = struct.pack("<I", cid | (nxt << 20))
        pos = max(0x100, nxt & 0xffc)
    C.parse_config(bytes(b))


# ---------------------------------------------------------------------------
# facts from a tree shaped like the intel-igb guest (config blobs from the guest)


def _with_config(root, addr, name):
    d = os.path.realpath(os.path.join(root, "sys/bus/pci/devices", addr))
    with open(os.path.join(d, "config"), "wb") as f:
        f.write(blob(name))


def igb_tree(root, numvfs=2):
    T.build(root, numvfs=numvfs, autoprobe=False)
    _with_config(root, T.PORT, "0000:00:0b.0")
    _with_config(root, T.PF, "0000:03:00.0")
    top = os.path.join(root, "sys/devices/pci0000:00")
    rp = T._device(root, top, "0000:00:0a.0", "0x1b36", "0x000c", "0x060400", "pcieport", group=7)
    br = T._device(root, rp, "0000:01:00.0", "0x1b36", "0x000e", "0x060400", None, group=10)
    for addr in ("0000:02:01.0", "0000:02:02.0"):
        T._device(root, br, addr, "0x8086", "0x100e", "0x020000", "e1000", group=10)
        _with_config(root, addr, "0000:02:01.0")
    T._device(root, top, "0000:00:09.0", "0x8086", "0x10d3", "0x020000", "vfio-pci", group=6)
    _with_config(root, "0000:00:0a.0", "0000:00:0b.0")
    _with_config(root, "0000:01:00.0", "0000:01:00.0")
    _with_config(root, "0000:00:09.0", "0000:00:09.0")
    return root


@pytest.fixture
def igb_facts(tmp_path):
    return iommu_facts.gather(root=igb_tree(str(tmp_path)), sysfs_only=True)


def test_facts_sriov_upstream_and_acs(igb_facts):
    d = igb_facts["devices"]
    assert d[T.PF]["sriov"]["vfs"] == ["0000:03:10.0", "0000:03:10.2"] and d[T.PF]["sriov"]["totalvfs"] == 7
    assert d["0000:03:10.0"]["physfn"] == T.PF and d["0000:03:10.0"]["sriov"] is None
    assert d["0000:02:01.0"]["upstream"] == ["0000:01:00.0", "0000:00:0a.0"]
    assert d["0000:00:09.0"]["upstream"] == [] and d["0000:00:09.0"]["acs"] is None
    port = d[T.PORT]["acs"]
    assert port["status"] == "present" and port["isolates"] is True and port["port_type"] == "root_port"
    assert C.lspci_line(port["control"]) == LSPCI_CTL and port["source"].endswith("0000:00:0b.0/config")
    assert d["0000:01:00.0"]["acs"]["port_type"] == "pcie_to_pci_bridge"
    assert d["0000:02:01.0"]["acs"] is None          # a single-function endpoint: its config is not read
    assert [p["address"] for p in d["0000:02:01.0"]["acs_path"]] == ["0000:01:00.0", "0000:00:0a.0"]
    assert [p["isolates"] for p in d["0000:02:01.0"]["acs_path"]] == [False, True]
    assert igb_facts["acs"]["override"]["present"] is False and igb_facts["acs"]["extended_config_readable"] is True
    assert igb_facts["findings"] == []


def test_kernel_grouping_model_matches_the_guest(igb_facts):
    splits, unknown = A.split_groups(igb_facts["devices"])
    assert splits == [] and unknown == []
    assert A.anchor(igb_facts["devices"], "0000:02:02.0") == ("dev", "0000:01:00.0")
    assert A.anchor(igb_facts["devices"], "0000:03:10.2") == ("dev", "0000:03:10.2")


def _gate(facts, devices):
    return P.evaluate(facts, ["passthrough"], devices, host="h")


def _finding(r, cid, dev=None):
    hits = [x for x in r["findings"] if x["id"] == cid and x["device"] == dev]
    assert len(hits) == 1, r["findings"]
    return hits[0]


def test_gate_without_override(igb_facts):
    r = _gate(igb_facts, ["0000:03:10.0", "0000:00:09.0", "0000:02:01.0"])
    h = _finding(r, "host.acs_override")
    assert h["status"] == P.PASS and h["qemu_effect"] is None and "QEMU does not check ACS" in h["message"]
    vf = _finding(r, "device.acs_path", "0000:03:10.0")
    assert vf["status"] == P.PASS and "0000:00:0b.0 (root_port)" in vf["message"]
    assert _finding(r, "device.acs_path", "0000:00:09.0")["status"] == P.NA
    conv = _finding(r, "device.acs_path", "0000:02:01.0")
    assert conv["status"] == P.PASS and conv["message"].startswith("Informational: no ACS at 0000:01:00.0")
    assert "group 10" in conv["message"]


def test_gate_names_groups_split_by_the_override(igb_facts):
    f = copy.deepcopy(igb_facts)
    f["cmdline"]["args"]["pcie_acs_override"] = ["downstream,multifunction"]
    r = _gate(f, ["0000:02:01.0"])
    assert _finding(r, "host.acs_override")["status"] == P.PASS   # nothing split: the groups are the kernel's
    f["devices"]["0000:02:01.0"]["iommu_group"] = "21"
    f["devices"]["0000:02:02.0"]["iommu_group"] = "22"
    r = _gate(f, ["0000:02:01.0"])
    h = _finding(r, "host.acs_override")
    assert h["status"] == P.WARN and h["qemu_effect"] is None
    assert "isolation is not guaranteed between 0000:01:00.0 in group 10, 0000:02:01.0 in group 21, " \
           "0000:02:02.0 in group 22 (below 0000:01:00.0)" in h["message"]
    assert "pcie_acs_override=downstream,multifunction" in h["message"] and h["remedy"]
    d = _finding(r, "device.acs_path", "0000:02:01.0")
    assert d["status"] == P.WARN and d["message"].startswith("Isolation is not guaranteed")


def test_gate_when_acs_cannot_be_read(igb_facts):
    f = copy.deepcopy(igb_facts)
    f["cmdline"]["args"]["pcie_acs_override"] = [True]
    f["devices"][T.PORT]["acs"].update(readable="conventional", status="extended_config_not_readable",
                                       isolates=None, note="extended config space not readable (256 bytes)")
    r = _gate(f, ["0000:03:10.0"])
    assert _finding(r, "host.acs_override")["status"] == P.WARN
    d = _finding(r, "device.acs_path", "0000:03:10.0")
    assert d["status"] == P.WARN and "extended config space not readable" in d["message"]


def test_old_facts_are_not_failed(igb_facts):
    f = copy.deepcopy(igb_facts)
    for dev in f["devices"].values():
        for key in ("upstream", "acs", "acs_path"):
            dev.pop(key, None)
    r = _gate(f, ["0000:03:10.0"])
    assert _finding(r, "device.acs_path", "0000:03:10.0")["status"] == P.NA
    f["cmdline"]["args"]["pcie_acs_override"] = ["downstream"]
    assert _finding(_gate(f, ["0000:03:10.0"]), "host.acs_override")["status"] == P.WARN


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["0000:00:01.0", "0000:01:00.0", "0000:01:00.1", "0000:02:00.0"]),
                       st.fixed_dictionaries({
                           "upstream": st.lists(st.sampled_from(["0000:00:01.0", "0000:01:00.0", "x"]), max_size=3),
                           "iommu_group": st.sampled_from([None, "1", "2"]),
                           "acs": st.one_of(st.none(), st.fixed_dictionaries({
                               "readable": st.sampled_from(["extended", "conventional", "header", None]),
                               "pcie": st.sampled_from([True, False, None]),
                               "port_type": st.sampled_from(["root_port", "downstream_port", "pcie_to_pci_bridge",
                                                             "endpoint", None]),
                               "status": st.sampled_from(["present", "absent", "not_pcie", None]),
                               "isolates": st.sampled_from([True, False, None]),
                               "multifunction": st.booleans()}))}), max_size=4))
def test_grouping_model_never_raises(devices):
    A.split_groups(devices)
    for addr in devices:
        A.anchor(devices, addr)
