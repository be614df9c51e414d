# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property tests: the decoders never raise, and packing fields then decoding gives them back."""

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.iommu.host.plugins.module_utils.decode import api as D
from ansible_collections.iommu.host.plugins.module_utils.decode.amd import _AMD_EFR, _AMD_EFR2
from ansible_collections.iommu.host.plugins.module_utils.decode.hw_info import _STRUCTS
from ansible_collections.iommu.host.plugins.module_utils.decode.smmuv3 import (
    _SMMU_AIDR, _SMMU_IDR0, _SMMU_IDR1, _SMMU_IDR3, _SMMU_IDR5, _SMMU_IIDR, _SMMU_TABLES)
from ansible_collections.iommu.host.plugins.module_utils.decode.vtd import _VTD_CAP, _VTD_ECAP

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

U64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
U32 = st.integers(min_value=0, max_value=(1 << 32) - 1)
U8 = st.integers(min_value=0, max_value=255)
KNOWN_TYPES = sorted(D.HW_INFO_TYPES)
TYPE_IDS = st.one_of(st.sampled_from(KNOWN_TYPES), U32)


class HostileRepr(object):
    def __repr__(self):
        raise RuntimeError("no repr for you")


# Anything a playbook (or a careless caller) could hand over.
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40),
    st.binary(max_size=40), st.sampled_from(["0x", "0xg", "-1", " 0x1f ", "ffffffffffffffffff", "12:34",
                                             "intel_vtd", "amd", "deadbeef", ""]),
    st.builds(HostileRepr),
)
GARBAGE = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=8),
                               st.dictionaries(st.text(max_size=12), children, max_size=6)),
    max_leaves=20,
)
REQUEST_KEYS = ["type", "cap_reg", "ecap_reg", "cap", "ecap", "flags", "efr", "efr2", "features", "idr",
                "iidr", "aidr", "version", "log2vcmdqs", "log2vsids", "test_reg", "data",
                "out_capabilities", "max_pasid_log2", "bogus"]
REQUESTS = st.dictionaries(
    st.sampled_from(REQUEST_KEYS),
    st.one_of(GARBAGE, U64.map(hex), U64, st.sampled_from(["intel_vtd", "amd", "arm_smmuv3", "selftest",
                                                           "tegra241_cmdqv", 4, 0xfeedbeef, 77])),
    max_size=8,
)


def no_internal_error(result):
    assert isinstance(result, dict)
    assert isinstance(result["errors"], list)
    assert all(isinstance(e, str) for e in result["errors"])
    assert not [e for e in result["errors"] if e.startswith("internal error")], result["errors"]


# ---------------------------------------------------------------------------------------------
# Never raise on any register value
# ---------------------------------------------------------------------------------------------

@SETTINGS
@given(U64, U64, st.one_of(st.none(), U32))
def test_vtd_any_64bit_values(cap, ecap, flags):
    r = D.decode_vtd(cap, ecap, flags)
    no_internal_error(r)
    assert r["errors"] == []
    assert r["raw"]["cap_reg"] == "0x%x" % cap
    assert 1 <= r["cap"]["mgaw"] <= 64
    assert r["cap"]["ndoms"] in [1 << (4 + 2 * n) for n in range(8)]
    assert r["cap"]["max_fault_reg_offset"] == r["cap"]["fault_reg_offset"] + 16 * r["cap"]["num_fault_regs"]
    assert isinstance(r["ecap"]["qis"], bool)
    for value in r["derived"].values():
        if isinstance(value, dict) and "supported" in value:
            assert value["supported"] in (True, False, None) and value["basis"]


@SETTINGS
@given(U64, U64)
def test_amd_any_64bit_values(efr, efr2):
    r = D.decode_amd(efr, efr2)
    no_internal_error(r)
    assert r["errors"] == []
    assert set(r["names"]) <= {"PreF", "PPR", "X2APIC", "NX", "GT", "[5]", "IA", "GA", "HE", "PC",
                               "GA_vAPIC", "SNP", "SEV-TIO"}
    assert 0 <= r["efr"]["pasmax"] <= 31


@SETTINGS
@given(st.lists(U32, min_size=6, max_size=6), U32, U32, st.one_of(st.none(), U32))
def test_smmuv3_any_32bit_values(idr, iidr, aidr, flags):
    r = D.decode_smmuv3(idr, iidr, aidr, flags)
    no_internal_error(r)
    assert r["errors"] == []
    assert r["derived"]["output_address_width_bits"] in (32, 36, 40, 42, 44, 48, 52)
    assert r["idr2"] == {"raw": "0x%x" % idr[2]}


@SETTINGS
@given(U32, U8, U8, U8, U32, U64, U8)
def test_small_decoders_any_values(flags, version, log2vcmdqs, log2vsids, test_reg, caps, pasid):
    no_internal_error(D.decode_tegra241_cmdqv(flags, version, log2vcmdqs, log2vsids))
    no_internal_error(D.decode_selftest(flags, test_reg))
    c = D.decode_capabilities(caps, pasid)
    assert "errors" not in c
    assert c["max_pasid_log2"] == pasid
    assert int(c["unknown_bits"], 16) == caps & ~0xf


@SETTINGS
@given(SCALARS, SCALARS, SCALARS)
def test_register_decoders_never_raise_on_garbage(a, b, c):
    for result in (D.decode_vtd(a, b, c), D.decode_amd(a, b), D.decode_smmuv3(a, b, c),
                   D.decode_smmuv3([a, b, c], a, b), D.decode_tegra241_cmdqv(a, b, c, a),
                   D.decode_selftest(a, b)):
        no_internal_error(result)
    caps = D.decode_capabilities(a, b)
    assert set(caps) >= {"raw", "dirty_tracking", "max_pasid_log2", "unknown_bits"}


@SETTINGS
@given(st.one_of(st.integers(max_value=-1), st.integers(min_value=1 << 64)))
def test_out_of_range_values_are_errors(value):
    r = D.decode_vtd(value, 0)
    assert r["cap"] is None and r["errors"]
    r = D.decode_smmuv3([value % (1 << 40) + (1 << 32) if value > 0 else value] + [0] * 5)
    assert r["idr0"] is None and r["errors"]


# ---------------------------------------------------------------------------------------------
# Raw structs: any type id, any length
# ---------------------------------------------------------------------------------------------

@SETTINGS
@given(TYPE_IDS, st.binary(max_size=64))
def test_hw_info_data_any_type_and_length(type_id, data):
    r = D.decode_hw_info_data(type_id, data)
    no_internal_error(r)
    assert r["type_id"] == type_id
    layout = _STRUCTS.get(type_id)
    if layout is None:
        assert r["type"] == D.HW_INFO_TYPES.get(type_id, "unknown")
        assert r["raw"]["data"] == data.hex()
        assert r["errors"] == []
        return
    size = layout[0]
    assert r["type"] == D.HW_INFO_TYPES[type_id]
    if len(data) < size:
        assert len(r["errors"]) == 1 and "truncated" in r["errors"][0]
    else:
        assert r["errors"] == []
    if len(data) > size:
        assert r["raw"]["extra"] == data[size:].hex()
    else:
        assert "extra" not in r["raw"]


@SETTINGS
@given(TYPE_IDS, st.binary(max_size=64))
def test_hw_info_data_hex_and_list_forms_equal_bytes(type_id, data):
    as_bytes = D.decode_hw_info_data(type_id, data)
    assert D.decode_hw_info_data(type_id, data.hex()) == as_bytes
    assert D.decode_hw_info_data(type_id, list(bytearray(data))) == as_bytes
    assert D.decode_hw_info_data(str(type_id), bytearray(data)) == as_bytes


@SETTINGS
@given(GARBAGE, GARBAGE)
def test_hw_info_data_never_raises_on_garbage(type_id, data):
    no_internal_error(D.decode_hw_info_data(type_id, data))


# ---------------------------------------------------------------------------------------------
# decode_request: garbage in, errors out
# ---------------------------------------------------------------------------------------------

@SETTINGS
@given(GARBAGE)
def test_request_never_raises_on_any_value(obj):
    r = D.decode_request(obj)
    no_internal_error(r)
    if not isinstance(obj, dict) or "type" not in obj:
        assert r["type"] is None and r["errors"]


@SETTINGS
@given(REQUESTS)
def test_request_never_raises_on_request_shaped_garbage(obj):
    r = D.decode_request(obj)
    no_internal_error(r)
    if r["type"] is None:
        assert r["errors"]


def test_request_with_hostile_mapping():
    class Hostile(dict):
        def __getitem__(self, key):
            raise KeyError("gone")

        def get(self, key, default=None):
            raise RuntimeError("nope")

    r = D.decode_request(Hostile(type="amd"))
    assert isinstance(r["errors"], list) and r["errors"]


# ---------------------------------------------------------------------------------------------
# Round trips: pack fields -> decode -> the same fields
# ---------------------------------------------------------------------------------------------

def raw_field(decoded, transform, width):
    if transform == "plus1":
        return decoded - 1
    if transform == "x16":
        return decoded // 16
    if transform == "ndoms":
        return (decoded.bit_length() - 1 - 4) // 2
    return int(decoded) if width == 1 else decoded


@st.composite
def table_fields(draw, table):
    return [draw(st.integers(min_value=0, max_value=(1 << width) - 1)) for _k, _s, width, _t in table]


@SETTINGS
@given(table_fields(_VTD_CAP), table_fields(_VTD_ECAP))
def test_vtd_round_trip(cap_fields, ecap_fields):
    cap = sum(v << shift for v, (_k, shift, _w, _t) in zip(cap_fields, _VTD_CAP))
    ecap = sum(v << shift for v, (_k, shift, _w, _t) in zip(ecap_fields, _VTD_ECAP))
    r = D.decode_hw_info_data(1, D.pack_hw_info_data(1, flags=1, cap_reg=cap, ecap_reg=ecap))
    for v, (key, _s, width, transform) in zip(cap_fields, _VTD_CAP):
        assert raw_field(r["cap"][key], transform, width) == v, key
    for v, (key, _s, width, transform) in zip(ecap_fields, _VTD_ECAP):
        assert raw_field(r["ecap"][key], transform, width) == v, key
    assert r["derived"]["undecoded_bits_set"] == {"cap": "0x0", "ecap": "0x0"}


@st.composite
def mask_fields(draw, table):
    out = []
    for _key, mask in table:
        width = bin(mask).count("1")
        out.append(draw(st.integers(min_value=0, max_value=(1 << width) - 1)))
    return out


def compose(values, table):
    reg = 0
    for v, (_key, mask) in zip(values, table):
        reg |= (v << ((mask & -mask).bit_length() - 1)) & mask
    return reg


def check_masks(section, values, table):
    for v, (key, mask) in zip(values, table):
        single = mask & (mask - 1) == 0
        assert section[key] == (bool(v) if single else v), key


@SETTINGS
@given(mask_fields(_AMD_EFR), mask_fields(_AMD_EFR2))
def test_amd_round_trip(efr_fields, efr2_fields):
    efr, efr2 = compose(efr_fields, _AMD_EFR), compose(efr2_fields, _AMD_EFR2)
    r = D.decode_request({"type": "amd", "data": D.pack_hw_info_data(4, efr=efr, efr2=efr2).hex()})
    check_masks(r["efr"], efr_fields, _AMD_EFR)
    check_masks(r["efr2"], efr2_fields, _AMD_EFR2)


@SETTINGS
@given(mask_fields(_SMMU_IDR0), mask_fields(_SMMU_IDR1), mask_fields(_SMMU_IDR3),
       mask_fields(_SMMU_IDR5), mask_fields(_SMMU_IIDR), mask_fields(_SMMU_AIDR), U32, U32)
def test_smmuv3_round_trip(f0, f1, f3, f5, fi, fa, idr2, idr4):
    regs = dict(idr0=compose(f0, _SMMU_IDR0), idr1=compose(f1, _SMMU_IDR1), idr2=idr2,
                idr3=compose(f3, _SMMU_IDR3), idr4=idr4, idr5=compose(f5, _SMMU_IDR5),
                iidr=compose(fi, _SMMU_IIDR), aidr=compose(fa, _SMMU_AIDR))
    r = D.decode_hw_info_data(2, D.pack_hw_info_data(2, **regs))
    assert r["errors"] == []
    for name, values in (("idr0", f0), ("idr1", f1), ("idr3", f3), ("idr5", f5), ("iidr", fi), ("aidr", fa)):
        check_masks(r[name], values, _SMMU_TABLES[name])
    assert r["idr2"] == {"raw": hex(idr2)} and r["idr4"] == {"raw": hex(idr4)}


@SETTINGS
@given(U32, U8, U8, U8, U32)
def test_tegra_and_selftest_round_trip(flags, version, log2vcmdqs, log2vsids, test_reg):
    r = D.decode_hw_info_data(3, struct.pack("<IBBBB", flags, version, log2vcmdqs, log2vsids, 0))
    assert (r["flags"], r["version"], r["log2vcmdqs"], r["log2vsids"]) == (flags, version, log2vcmdqs, log2vsids)
    r = D.decode_hw_info_data(0xfeedbeef, struct.pack("<II", flags, test_reg))
    assert (r["flags"], r["test_reg"]) == (flags, test_reg)


@SETTINGS
@given(U64, U64)
def test_string_forms_equal_int_forms(cap, ecap):
    want = D.decode_vtd(cap, ecap)
    assert D.decode_vtd("%x" % cap, "0x%X" % ecap) == want
    assert D.decode_vtd(" %x\n" % cap, "%x" % ecap) == want        # sysfs: trailing newline
    assert D.decode_request({"type": "intel_vtd", "cap": "%x" % cap, "ecap": ecap}) == want
    assert D.to_int("%x" % cap) == (cap, None)
