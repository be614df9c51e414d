# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real register values (test bed, public logs) decode as the kernel reports them.

Where each value comes from is recorded in tests/fixtures/golden/*.json ("real" vectors).
"""

import json
import os
import struct

import pytest

from ansible_collections.iommu.host.plugins.module_utils.decode import api as D

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "golden")


def real_vectors(name):
    with open(os.path.join(GOLDEN, name)) as f:
        return [v for v in json.load(f)["vectors"] if "real" in v]


def supported(result, key):
    return result["derived"][key]["supported"]


# ---------------------------------------------------------------------------------------------
# Intel VT-d
# ---------------------------------------------------------------------------------------------

def test_qemu_intel_iommu_caching_mode():
    # QEMU -device intel-iommu,intremap=on,caching-mode=on (test bed sysfs)
    r = D.decode_vtd("d2008c22260286", "f00f4a")
    assert r["type"] == "intel_vtd" and r["type_id"] == 1 and r["errors"] == []
    assert r["raw"] == {"cap_reg": "0xd2008c22260286", "ecap_reg": "0xf00f4a"}
    c, e, d = r["cap"], r["ecap"], r["derived"]
    assert c["mgaw"] == 39
    assert c["sagaw"] == 0x2
    assert c["caching_mode"] is True
    assert c["ndoms"] == 65536
    assert c["num_fault_regs"] == 1
    assert c["fault_reg_offset"] == 0x220
    assert c["max_fault_reg_offset"] == 0x230
    assert c["fl1gp_support"] is False
    assert c["super_page_val"] == 3
    assert e["smts"] is False
    assert e["qis"] is True and e["ir_support"] is True and e["pass_through"] is True
    assert e["iotlb_offset"] == 0xf0 and e["max_iotlb_offset"] == 0x100
    assert d["max_guest_address_width_bits"] == 39
    assert d["supported_guest_address_widths"] == [39]
    assert d["second_stage_iova_bits"] == 39
    assert d["second_stage_page_table_levels"] == 3
    assert d["second_stage_page_sizes"] == ["4KiB", "2MiB", "1GiB"]
    assert d["first_stage_page_sizes"] == ["4KiB", "2MiB"]
    assert d["domains_supported"] == 65536
    assert supported(r, "caching_mode") is True
    assert supported(r, "interrupt_remapping") is True
    assert supported(r, "scalable_mode") is False
    assert supported(r, "dirty_tracking") is False
    assert supported(r, "nesting") is False
    assert supported(r, "first_stage") is False
    assert d["pasid_width"] == 0
    assert d["undecoded_bits_set"] == {"cap": "0x0", "ecap": "0x0"}
    assert "flags" not in r


def test_qemu_intel_iommu_scalable_mode_aw48():
    # same + x-scalable-mode=on,aw-bits=48
    r = D.decode_vtd(0xd2008c222f0686, 0x480080f00f4a)
    c, e, d = r["cap"], r["ecap"], r["derived"]
    assert c["mgaw"] == 48
    assert d["supported_guest_address_widths"] == [39, 48]
    assert d["second_stage_iova_bits"] == 48
    assert d["second_stage_page_table_levels"] == 4
    assert e["smts"] is True and e["slts"] is True
    assert e["flts"] is False and e["slads"] is False and e["nest"] is False
    assert supported(r, "scalable_mode") is True
    assert supported(r, "second_stage") is True
    assert supported(r, "dirty_tracking") is False      # no SLADS / SMPWC in QEMU's model
    assert "scalable mode" in r["derived"]["dirty_tracking"]["basis"]
    assert supported(r, "caching_mode") is True


def test_intel_xeon_server_legacy_mode():
    # dmesg "DMAR: dmar0: reg_base_addr d37fc000 ver 1:0 cap 8d2078c106f0466 ecap f020df"
    r = D.decode_vtd("8d2078c106f0466", "f020df")
    c, e, d = r["cap"], r["ecap"], r["derived"]
    assert c["mgaw"] == 48 and d["supported_guest_address_widths"] == [48]
    assert c["caching_mode"] is False and c["pi_support"] is True
    assert c["fl1gp_support"] is False
    assert d["second_stage_page_sizes"] == ["4KiB", "2MiB", "1GiB"]
    assert e["coherent"] is True and e["sc_support"] is True and e["dev_iotlb_support"] is True
    assert e["eim_support"] is True and e["qis"] is True
    assert e["iotlb_offset"] == 0x200
    assert e["smts"] is False
    assert supported(r, "snoop_control") is True
    assert supported(r, "device_iotlb") is True
    assert supported(r, "x2apic_interrupt_mode") is True
    assert supported(r, "dirty_tracking") is False
    assert supported(r, "caching_mode") is False
    assert supported(r, "page_walk_coherency") is True   # legacy mode: ECAP.C


def test_intel_xeon_scalable_dirty_tracking_and_nesting():
    # dmesg "DMAR: dmar0: reg_base_addr aa3fc000 ver 6:0 cap 9ed008c40780466 ecap 3ee9e86f050df"
    r = D.decode_vtd(0x9ed008c40780466, 0x3ee9e86f050df)
    c, e, d = r["cap"], r["ecap"], r["derived"]
    assert c["mgaw"] == 57
    assert d["supported_guest_address_widths"] == [48]
    assert d["second_stage_iova_bits"] == 48          # SAGAW has no 5-level walk
    assert c["fl1gp_support"] is True and c["fl5lp_support"] is False
    assert d["first_stage_page_sizes"] == ["4KiB", "2MiB", "1GiB"]
    assert d["first_stage_address_widths"] == [48]
    assert e["smts"] and e["slads"] and e["smpwc"] and e["nest"] and e["slts"] and e["flts"]
    assert e["pss"] == 19 and e["pasid"] is False
    assert supported(r, "dirty_tracking") is True
    assert supported(r, "nesting") is True
    assert supported(r, "first_stage") is True
    assert supported(r, "pasid") is False
    assert d["pasid_width"] == 0                      # ECAP.PASID clear: no PASID width
    assert d["max_pasids"] == 0


def test_vtd_pasid_width_is_pss_plus_one():
    ecap = (1 << 43) | (1 << 40) | (19 << 35)        # SMTS, PASID, PSS = 19
    d = D.decode_vtd(0, ecap)["derived"]
    assert d["pasid_width"] == 20
    assert d["max_pasids"] == 1 << 20                 # dmar.c: 2UL << ecap_pss
    assert d["pasid"]["supported"] is True


def test_vtd_hw_info_struct_with_errata_flag():
    data = struct.pack("<IIQQ", 1, 0, 0xd2008c22260286, 0xf00f4a)
    r = D.decode_hw_info_data(1, data)
    assert r["type"] == "intel_vtd" and r["errors"] == []
    assert r["flags"] == {"errata_772415_spr17": True, "unknown_bits": "0x0"}
    assert r["raw"]["flags"] == "0x1" and r["raw"]["reserved"] == "0x0"
    assert r["cap"]["mgaw"] == 39


@pytest.mark.parametrize("vector", real_vectors("vtd.json"), ids=lambda v: v["name"])
def test_real_vtd_vectors_expected(vector):
    r = D.decode_vtd(vector["cap"], vector["ecap"])
    exp = vector["real"]["expected"]
    assert r["cap"]["mgaw"] == exp["mgaw"]
    assert r["derived"]["supported_guest_address_widths"] == exp["sagaw_widths"]
    assert r["cap"]["caching_mode"] is exp["caching_mode"]
    assert r["ecap"]["smts"] is exp["smts"]
    assert vector["real"]["source"]


# ---------------------------------------------------------------------------------------------
# AMD-Vi
# ---------------------------------------------------------------------------------------------

def test_qemu_amd_iommu_names():
    r = D.decode_amd(0x29d3, 0)
    assert r["names"] == ["PreF", "PPR", "GT", "IA", "GA", "HE"]
    f, d = r["efr"], r["derived"]
    assert f["prefetch"] and f["ppr"] and f["gt"] and f["ia"] and f["ga"] and f["he"]
    assert not (f["x2apic"] or f["nx"] or f["pc"] or f["giosup"] or f["hdsup"])
    assert f["hats"] == 2 and f["gats"] == 2 and f["pasmax"] == 0
    assert d["host_page_table_levels"] == 6
    assert d["host_address_width_bits"] == 64
    assert supported(r, "host_translation") is True
    assert supported(r, "first_stage") is False          # GT without GIoSup
    assert supported(r, "nesting") is False
    assert supported(r, "dirty_tracking") is False
    assert supported(r, "interrupt_remapping") is None    # not in EFR
    assert "not reported in EFR" in r["derived"]["interrupt_remapping"]["basis"]
    assert d["pasid_width"] == 1 and d["max_pasids"] == 1
    assert d["interrupt_remap_table_entries"] == 512
    assert d["second_stage_page_sizes"][:3] == ["4KiB", "8KiB", "16KiB"]
    assert "512GiB" not in d["second_stage_page_sizes"]   # AMD_IOMMU_PGSIZES ^ SZ_512G
    assert d["second_stage_page_sizes"][-1] == "2PiB"


def test_amd_epyc_multisegment():
    # "AMD-Vi: Extended features (0xa5bf732fa2295afe): PPR X2APIC NX GT [5] IA GA PC GA_vAPIC" (5.15)
    r = D.decode_amd("0xa5bf732fa2295afe", 0)
    assert r["names"] == ["PPR", "X2APIC", "NX", "GT", "[5]", "IA", "GA", "PC", "GA_vAPIC", "SNP"]
    f, d = r["efr"], r["derived"]
    assert f["giosup"] and f["gt"] and f["hdsup"] and f["snp"] and f["gam_vapic"]
    assert f["pasmax"] == 15
    assert d["pasid_width"] == 16 and d["max_pasids"] == 0xffff
    assert supported(r, "first_stage") is True
    assert d["first_stage_page_sizes"] == ["4KiB", "2MiB", "1GiB"]
    assert supported(r, "dirty_tracking") is True
    assert "HATDis" in r["derived"]["dirty_tracking"]["basis"]
    assert supported(r, "posted_interrupts") is True
    assert supported(r, "nesting") is False              # EFR2.GCR3TRPMode not set
    assert supported(r, "snp") is True


def test_amd_genoa_snp_host():
    # "AMD-Vi: Extended features (0xa5bf7320a2294aee, 0x1d): PPR X2APIC NX [5] IA GA PC GA_vAPIC SNP"
    r = D.decode_amd(0xa5bf7320a2294aee, 0x1d)
    assert r["names"] == ["PPR", "X2APIC", "NX", "[5]", "IA", "GA", "PC", "GA_vAPIC", "SNP"]
    assert r["efr2"]["gcr3trpmode"] is True
    assert r["efr2"]["sevsnpio_sup"] is False
    assert r["efr2"]["snpavicsup"] == 0 and r["efr2"]["snpavicsup_gam"] is False
    assert r["efr"]["gt"] is False
    assert supported(r, "nesting") is False              # GCR3TRPMode but no GT
    assert r["derived"]["pasid_width"] == 0
    assert r["derived"]["undecoded_bits_set"]["efr2"] == "0x15"


@pytest.mark.parametrize("vector", real_vectors("amd.json"), ids=lambda v: v["name"])
def test_real_amd_vectors_print_like_the_kernel(vector):
    r = D.decode_amd(vector["efr"], vector["efr2"])
    names = r["names"]
    printed = vector["real"]["printed"]
    if "printed_by" in vector["real"]:
        # printed by an older kernel that had no SNP name; 7.3 appends SNP for EFR bit 63
        assert names == printed + ["SNP"]
    else:
        assert names == printed


def test_amd_names_order_and_sev_tio():
    everything = D.decode_amd((1 << 64) - 1, (1 << 64) - 1)
    assert everything["names"] == ["PreF", "PPR", "X2APIC", "NX", "GT", "[5]", "IA", "GA", "HE", "PC",
                                   "GA_vAPIC", "SNP", "SEV-TIO"]
    assert D.decode_amd(0, 2)["names"] == []             # the kernel prints nothing when EFR is 0


def test_amd_hats_3_disables_host_translation_and_dirty_tracking():
    efr = (3 << 10) | (1 << 52)
    r = D.decode_amd(efr, 0)
    assert supported(r, "host_translation") is False
    assert supported(r, "dirty_tracking") is False
    assert r["derived"]["second_stage_page_sizes"] == []


def test_amd_nesting_needs_gt_giosup_gcr3trpmode():
    r = D.decode_amd((1 << 4) | (1 << 48), 1 << 3)
    assert supported(r, "nesting") is True
    assert D.decode_amd((1 << 4) | (1 << 48), 0)["derived"]["nesting"]["supported"] is False


def test_amd_sysfs_features_forms():
    assert D.parse_amd_features("29d3:0\n") == (0x29d3, 0, None)
    assert D.parse_amd_features("29d3") == (0x29d3, 0, None)
    assert D.parse_amd_features("zz:0")[2]
    r = D.decode_request({"type": "amd", "features": "a5bf7320a2294aee:1d"})
    assert r["errors"] == [] and r["efr2"]["gcr3trpmode"] is True


# ---------------------------------------------------------------------------------------------
# ARM SMMUv3, Tegra241, selftest
# ---------------------------------------------------------------------------------------------

def test_qemu_smmuv3_reset_values():
    r = D.decode_smmuv3([0x0D40101A, 0x02730010, 0, 0x404, 0, 0x54], 0, 1)
    i0, i1, i5, d = r["idr0"], r["idr1"], r["idr5"], r["derived"]
    assert i0["s1p"] is True and i0["s2p"] is False
    assert i0["term_model"] is True and i0["btm"] is False
    assert i0["st_lvl"] == 1 and d["stream_table"] == "2lvl"
    assert i0["ttendian"] == 2 and d["translation_table_endianness"] == "le"
    assert i0["ttf"] == 2 and supported(r, "aarch64_tables") is True
    assert d["asid_bits"] == 16 and d["vmid_bits"] == 8
    assert i1["sidsize"] == 16 and i1["cmdqs"] == 19 and i1["evtqs"] == 19
    assert d["pasid_width"] == 0
    assert r["idr3"]["ril"] is True and r["idr3"]["bbm"] == 0
    assert d["undecoded_bits_set"]["idr3"] == "0x4"      # HAD: no kernel macro
    assert i5["oas"] == 4 and d["output_address_width_bits"] == 44
    assert d["virtual_address_width_bits"] == 48
    assert d["page_sizes"] == ["4KiB", "64KiB", "2MiB", "512MiB", "1GiB"]
    assert d["first_stage_page_sizes"] == d["page_sizes"]
    assert d["second_stage_page_sizes"] == []
    assert supported(r, "nesting") is False
    assert supported(r, "dirty_tracking") is False
    assert r["aidr"] == {"archminorrev": 1, "archmajorrev": 0}
    assert d["architecture"] == "SMMUv3.1"
    assert r["idr2"] == {"raw": "0x0"} and r["idr4"] == {"raw": "0x0"}


def test_smmuv3_dirty_tracking_nesting_and_errata():
    idr0 = 0x3 | (2 << 6) | (1 << 4) | (2 << 2)          # S1P, S2P, HTTU=ACCESS_DIRTY, COHACC, AArch64
    r = D.decode_smmuv3([idr0, 20 << 6, 0, 0, 0, 5 | (1 << 10)], 0, 0)
    assert supported(r, "dirty_tracking") is True
    assert "coheren" in r["derived"]["dirty_tracking"]["basis"]
    assert supported(r, "nesting") is True
    assert r["derived"]["pasid_width"] == 20
    assert r["derived"]["output_address_width_bits"] == 48
    assert r["derived"]["virtual_address_width_bits"] == 52
    # Arm MMU-600 r1: erratum 1209401 clears nesting (arm-smmu-v3.c:4995-5001)
    mmu600_r1 = (0x483 << 20) | (1 << 16) | 0x43b
    r = D.decode_smmuv3([idr0, 0, 0, 0, 0, 0], mmu600_r1, 0)
    assert r["derived"]["product"] == "MMU-600" and r["derived"]["product_revision"] == "r1p0"
    assert supported(r, "nesting") is False
    assert "1209401" in r["derived"]["nesting"]["basis"]


def test_smmuv3_struct_and_errata_flag():
    data = struct.pack("<II6III", 1, 0, 0x0D40101A, 0x02730010, 0, 0x404, 0, 0x54, 0, 1)
    r = D.decode_hw_info_data(2, data)
    assert r["errors"] == []
    assert r["flags"] == {"errata_repeat_tlbi_cfgi": True, "unknown_bits": "0x0"}
    assert r["raw"]["idr"] == ["0xd40101a", "0x2730010", "0x0", "0x404", "0x0", "0x54"]


def test_tegra241_cmdqv():
    r = D.decode_hw_info_data(3, struct.pack("<IBBBB", 0, 1, 2, 4, 0))
    assert r["type"] == "tegra241_cmdqv" and r["errors"] == []
    assert (r["flags"], r["version"], r["log2vcmdqs"], r["log2vsids"]) == (0, 1, 2, 4)
    assert r["derived"]["vcmdqs_per_vintf"] == 4 and r["derived"]["sids_per_vintf"] == 16
    assert r["derived"]["vmm_param_register"] == "0x4021"
    assert D.decode_tegra241_cmdqv(0, "1", "2", "4")["derived"]["vmm_param_register"] == "0x4021"


def test_selftest_mock_device_and_capabilities():
    # the mock device: type 0xfeedbeef, 8 bytes, test_reg 0xdeadbeef; caps 0x9 / 0x8 (reference §6)
    r = D.decode_hw_info_data(0xfeedbeef, struct.pack("<II", 0, 0xdeadbeef))
    assert r["type"] == "selftest" and r["errors"] == []
    assert r["flags"] == 0 and r["test_reg"] == 0xdeadbeef
    assert r["derived"]["test_reg_is_selftest_regval"] is True
    assert D.decode_capabilities(0x9, 0) == {
        "raw": "0x9", "dirty_tracking": True, "pasid_exec": False, "pasid_priv": False,
        "ats_not_supported": True, "max_pasid_log2": 0, "unknown_bits": "0x0"}
    no_dirty = D.decode_capabilities(0x8, 20)
    assert no_dirty["dirty_tracking"] is False and no_dirty["ats_not_supported"] is True
    assert no_dirty["max_pasid_log2"] == 20
    assert D.decode_capabilities(0x16, "20")["unknown_bits"] == "0x10"
    assert D.decode_capabilities(0x16, "20")["max_pasid_log2"] == 20    # a count: decimal


# ---------------------------------------------------------------------------------------------
# Struct edge cases: truncated, oversized, unknown
# ---------------------------------------------------------------------------------------------

def test_truncated_vtd_struct_decodes_what_is_present():
    data = struct.pack("<IIQQ", 1, 0, 0xd2008c22260286, 0xf00f4a)[:16]
    r = D.decode_hw_info_data(1, data)
    assert r["cap"]["mgaw"] == 39
    assert r["ecap"] is None
    assert r["flags"]["errata_772415_spr17"] is True
    assert len(r["errors"]) == 1 and "truncated" in r["errors"][0] and "ecap_reg" in r["errors"][0]
    assert "max_guest_address_width_bits" in r["derived"]
    assert "dirty_tracking" not in r["derived"]


def test_oversized_amd_struct_reports_extra_bytes():
    data = struct.pack("<QQ", 0x29d3, 0) + b"\x01\x02\xff"
    r = D.decode_hw_info_data("amd", data)
    assert r["errors"] == []
    assert r["raw"]["extra"] == "0102ff"
    assert r["names"] == ["PreF", "PPR", "GT", "IA", "GA", "HE"]


def test_unknown_type_is_not_an_error():
    r = D.decode_hw_info_data(99, b"\x01\x02")
    assert r == {"type": "unknown", "type_id": 99, "raw": {"data": "0102"}, "derived": {}, "errors": []}
    none = D.decode_hw_info_data(0, b"")
    assert none["type"] == "none" and none["errors"] == []


def test_hex_string_data_and_type_names():
    hexdata = struct.pack("<QQ", 0x29d3, 0).hex()
    for t in (4, "4", "0x4", "amd", "AMD", "amd_vi", "IOMMU_HW_INFO_TYPE_AMD"):
        r = D.decode_request({"type": t, "data": hexdata})
        assert r["type"] == "amd" and r["errors"] == [], t
        assert r["names"] == ["PreF", "PPR", "GT", "IA", "GA", "HE"]


def test_requested_type():
    assert D.requested_type("default") is None
    assert D.requested_type(None) is None
    assert D.requested_type("intel_vtd") == 1
    assert D.requested_type("arm_smmuv3") == 2
    assert D.requested_type("tegra241_cmdqv") == 3
    assert D.requested_type("amd") == 4
    assert D.HW_INFO_TYPE_IDS["selftest"] == 0xfeedbeef
    assert D.HW_INFO_TYPES[0xfeedbeef] == "selftest"
