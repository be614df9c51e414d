# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The decoders against the kernel's own macros (golden vectors of tests/golden/gen_golden.py).

Every vector of tests/fixtures/golden/{vtd,amd,smmuv3}.json holds the value each kernel macro
computed (gcc, macro text copied verbatim from the linux-source-7.3 headers).  The decoder must
give the same number, or the same truth value for single-bit fields, and must have a key for
every macro the header defines: a macro added by a newer kernel fails here until it is mapped.
"""

import json
import os

import pytest

from ansible_collections.iommu.host.plugins.module_utils.decode import api as D

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "golden")


def load(name):
    with open(os.path.join(GOLDEN, name)) as f:
        return json.load(f)


VTD = load("vtd.json")
AMD = load("amd.json")
SMMU = load("smmuv3.json")
NAMES = load("macro_names.json")


def lookup(result, key):
    section, field = key.split(".", 1)
    assert result.get(section) is not None, "section %s missing from the decoder output" % section
    assert field in result[section], "decoder has no key %s (kernel macro)" % key
    return result[section][field]


def expect(macro, value):
    return bool(value) if macro["kind"] == "bool" else value


def check_vector(result, macros, vector):
    assert result["errors"] == []
    mismatches = []
    for macro in macros:
        got = lookup(result, macro["key"])
        want = expect(macro, vector["values"][macro["name"]])
        if got != want or type(got) is not type(want):
            mismatches.append("%s: decoder %r, kernel %r" % (macro["name"], got, want))
    assert not mismatches, "%s: %s" % (vector["name"], "; ".join(mismatches))


def ids(vectors):
    return [v["name"] for v in vectors]


# ---------------------------------------------------------------------------------------------
# Metadata
# ---------------------------------------------------------------------------------------------

def test_golden_files_come_from_the_7_3_headers():
    for data in (VTD, AMD, SMMU):
        assert data["kernel_version"].startswith("7.3")
        assert data["generator"] == "tests/golden/gen_golden.py"
        assert len(data["header_sha256"]) == 64
        assert data["macros"]
    assert NAMES["vtd"] == [m["name"] for m in VTD["macros"]]
    assert NAMES["amd"] == [m["name"] for m in AMD["macros"]]
    assert NAMES["smmuv3"] == [m["name"] for m in SMMU["macros"]]


def test_golden_vectors_cover_zero_ones_walking_bits_and_real_values():
    for data, bits in ((VTD, 64), (AMD, 64), (SMMU, 32)):
        names = set(ids(data["vectors"]))
        assert {"zero", "ones"} <= names
        assert {"bit%d" % b for b in range(bits)} <= names
        assert sum(1 for n in names if n.startswith("random")) >= 12
        assert any("real" in v for v in data["vectors"])


# ---------------------------------------------------------------------------------------------
# Coverage: one decoder key per kernel macro
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data,decode", [
    (VTD, lambda: D.decode_vtd(0, 0)),
    (AMD, lambda: D.decode_amd(0, 0)),
    (SMMU, lambda: D.decode_smmuv3([0] * 6, 0, 0)),
], ids=["vtd", "amd", "smmuv3"])
def test_decoder_has_a_key_for_every_kernel_macro(data, decode):
    result = decode()
    missing = [m["name"] for m in data["macros"]
               if result.get(m["register"]) is None or m["key"].split(".", 1)[1] not in result[m["register"]]]
    assert not missing, "kernel macros without a decoder key: %s" % ", ".join(missing)


def test_every_vtd_cap_and_ecap_macro_is_listed():
    names = set(NAMES["vtd"])
    # a few the brief names explicitly, as a guard against a broken header parser
    for n in ("cap_mgaw", "cap_sagaw", "cap_fl1gp_support", "cap_ndoms", "cap_fault_reg_offset",
              "cap_max_fault_reg_offset", "ecap_slads", "ecap_flts", "ecap_nest", "ecap_pss",
              "ecap_smts", "ecap_qis", "ecap_iotlb_offset", "ecap_max_iotlb_offset"):
        assert n in names
    assert len([n for n in names if n.startswith("cap_")]) == 24
    assert len([n for n in names if n.startswith("ecap_")]) == 30


def test_every_amd_feature_macro_is_listed():
    assert len(NAMES["amd"]) == 27
    regs = {m["name"]: m["register"] for m in AMD["macros"]}
    assert regs["FEATURE_SNP"] == "efr"
    assert regs["FEATURE_GCR3TRPMODE"] == "efr2"
    assert regs["FEATURE_NUM_INT_REMAP_SUP_2K"] == "efr2"


def test_smmu_field_value_names_cover_every_header_constant():
    for const in SMMU["constants"]:
        table = D.SMMU_FIELD_VALUE_NAMES.get(const["key"])
        assert table is not None, "no value names for %s (%s)" % (const["key"], const["name"])
        assert table.get(const["value"]) == const["value_name"], const["name"]


# ---------------------------------------------------------------------------------------------
# Values: every vector, every macro
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("vector", VTD["vectors"], ids=ids(VTD["vectors"]))
def test_vtd_matches_kernel_macros(vector):
    check_vector(D.decode_vtd(int(vector["cap"], 16), int(vector["ecap"], 16)), VTD["macros"], vector)


@pytest.mark.parametrize("vector", VTD["vectors"], ids=ids(VTD["vectors"]))
def test_vtd_struct_path_matches_kernel_macros(vector):
    data = D.pack_hw_info_data(1, flags=1, cap_reg=int(vector["cap"], 16), ecap_reg=int(vector["ecap"], 16))
    check_vector(D.decode_hw_info_data(1, data), VTD["macros"], vector)


@pytest.mark.parametrize("vector", AMD["vectors"], ids=ids(AMD["vectors"]))
def test_amd_matches_kernel_macros(vector):
    check_vector(D.decode_amd(int(vector["efr"], 16), int(vector["efr2"], 16)), AMD["macros"], vector)


@pytest.mark.parametrize("vector", AMD["vectors"], ids=ids(AMD["vectors"]))
def test_amd_struct_path_matches_kernel_macros(vector):
    data = D.pack_hw_info_data(4, efr=int(vector["efr"], 16), efr2=int(vector["efr2"], 16))
    check_vector(D.decode_hw_info_data(4, data), AMD["macros"], vector)


@pytest.mark.parametrize("vector", SMMU["vectors"], ids=ids(SMMU["vectors"]))
def test_smmuv3_matches_kernel_macros(vector):
    idr = [int(x, 16) for x in vector["idr"]]
    result = D.decode_smmuv3(idr, int(vector["iidr"], 16), int(vector["aidr"], 16))
    check_vector(result, SMMU["macros"], vector)
    assert result["idr2"] == {"raw": vector["idr"][2]}
    assert result["idr4"] == {"raw": vector["idr"][4]}


@pytest.mark.parametrize("vector", SMMU["vectors"], ids=ids(SMMU["vectors"]))
def test_smmuv3_struct_path_matches_kernel_macros(vector):
    idr = [int(x, 16) for x in vector["idr"]]
    fields = dict(("idr%d" % i, v) for i, v in enumerate(idr))
    data = D.pack_hw_info_data(2, iidr=int(vector["iidr"], 16), aidr=int(vector["aidr"], 16), **fields)
    check_vector(D.decode_hw_info_data(2, data), SMMU["macros"], vector)


# ---------------------------------------------------------------------------------------------
# The "undecoded bits" masks are exactly the bits no kernel macro reads
# ---------------------------------------------------------------------------------------------

def macro_bits(macros, register):
    mask = 0
    for m in macros:
        if m["register"] == register:
            for b in m["bits"]:
                mask |= 1 << b
    return mask


def test_vtd_undecoded_masks_are_the_bits_no_macro_reads():
    full = (1 << 64) - 1
    assert D.VTD_CAP_UNDECODED == full & ~macro_bits(VTD["macros"], "cap")
    assert D.VTD_ECAP_UNDECODED == full & ~macro_bits(VTD["macros"], "ecap")
    # the reference's list: CAP 58, 57, 38, 15:13; ECAP 63:52, 50, 44, 32, 24, 19:18, 5
    assert D.VTD_CAP_UNDECODED == (1 << 58) | (1 << 57) | (1 << 38) | (0x7 << 13)
    assert D.VTD_ECAP_UNDECODED == ((0xfff << 52) | (1 << 50) | (1 << 44) | (1 << 32) | (1 << 24)
                                    | (0x3 << 18) | (1 << 5))


def test_amd_undecoded_masks_are_the_bits_no_macro_reads():
    full = (1 << 64) - 1
    assert D.AMD_EFR_UNDECODED == full & ~macro_bits(AMD["macros"], "efr")
    assert D.AMD_EFR2_UNDECODED == full & ~macro_bits(AMD["macros"], "efr2")


def test_smmu_undecoded_masks_are_the_bits_no_macro_reads():
    full = 0xffffffff
    extra = {"idr0": (1 << 26) | (1 << 5)}  # TERM_MODEL, BTM: decoded from the spec, no kernel macro
    for reg in ("idr0", "idr1", "idr3", "idr5", "iidr"):
        assert D.SMMU_UNDECODED[reg] == full & ~(macro_bits(SMMU["macros"], reg) | extra.get(reg, 0)), reg
