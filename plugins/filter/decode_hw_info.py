# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu.host.decode_hw_info: decode IOMMU capability registers (docs: DOCUMENTATION below)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: decode_hw_info
author: iommu.host contributors
version_added: "0.1.0"
short_description: Decode IOMMU capability registers (VT-d, AMD-Vi, SMMUv3) into named fields
description:
  - Decodes the raw capability registers of an IOMMU into one key per kernel macro, plus a
    C(derived) section in plain words (address widths, page sizes, PASID width, dirty tracking,
    nesting, ...).
  - Accepts register values as they come from sysfs (C(/sys/class/iommu/dmarN/intel-iommu/cap),
    C(/sys/class/iommu/ivhdN/amd-iommu/features)), from a dmesg line, or the raw vendor struct
    that C(IOMMU_GET_HW_INFO) returns (the RV(iommu.host.iommu_hw_info#module:devices) data).
  - The decoding follows the Linux 7.3 headers C(drivers/iommu/intel/iommu.h),
    C(drivers/iommu/amd/amd_iommu_types.h) and C(drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.h);
    the collection's tests check every field against the kernel macros compiled with gcc.
  - Pure data transformation, runs on the controller; reads nothing from any host.
  - Register values may be integers, C(0x...) hex strings or bare hex strings as sysfs prints them
    (C(d2008c22260286)). Strings are always read as hexadecimal.
  - Problems with register values (not a number, too wide, a truncated struct, unknown keys) are
    reported in RV(_value.errors) and do not fail the task unless O(strict=true). Input that is not a
    dict, or has no usable C(type) key, fails.
positional: _input
options:
  _input:
    description:
      - "The registers to decode. Forms:"
      - "C({type: intel_vtd, cap_reg: ..., ecap_reg: ..., flags: ...}) (C(cap) / C(ecap) work too; C(flags) is
        the C(iommu_hw_info_vtd) flags word and is optional)."
      - "C({type: amd, efr: ..., efr2: ...}) or C({type: amd, features: 'EFR:EFR2'}) as
        C(ivhdN/amd-iommu/features) shows it."
      - "C({type: arm_smmuv3, idr: [IDR0, IDR1, IDR2, IDR3, IDR4, IDR5], iidr: ..., aidr: ..., flags: ...})."
      - "C({type: tegra241_cmdqv, version: ..., log2vcmdqs: ..., log2vsids: ...})."
      - "C({type: selftest, flags: ..., test_reg: ...}) (the iommufd selftest mock device)."
      - "C({type: <name or number>, data: '<hex of the vendor struct>'}): the raw bytes IOMMU_GET_HW_INFO
        wrote, in memory order. A short struct decodes what it holds; extra bytes are shown in
        C(raw.extra); an unknown type number gives C(type: unknown) and the bytes as hex."
      - "Add C(out_capabilities) and C(max_pasid_log2) to also decode the generic
        C(iommu_hw_info) capability bits into a C(capabilities) section."
      - "The C(type) key is a name (C(intel_vtd), C(arm_smmuv3), C(tegra241_cmdqv), C(amd), C(selftest),
        C(none); also C(vtd), C(smmuv3), C(amd_vi)) or the numeric type id (1, 2, 3, 4, 0xfeedbeef)."
    type: dict
    required: true
  strict:
    description:
      - Fail when the decoder reports any error (a bad register value, a truncated struct,
        an unknown key) instead of returning it in RV(_value.errors).
    type: bool
    default: false
seealso:
  - module: iommu.host.iommu_hw_info
  - module: iommu.host.iommu_facts
"""

EXAMPLES = r"""
- name: Decode the VT-d registers read from sysfs
  ansible.builtin.debug:
    msg: "{{ {'type': 'intel_vtd', 'cap_reg': cap, 'ecap_reg': ecap} | iommu.host.decode_hw_info }}"
  vars:
    cap: "{{ lookup('ansible.builtin.file', '/sys/class/iommu/dmar0/intel-iommu/cap') }}"
    ecap: "{{ lookup('ansible.builtin.file', '/sys/class/iommu/dmar0/intel-iommu/ecap') }}"

- name: Is second-stage dirty tracking possible on this VT-d unit?
  ansible.builtin.assert:
    that:
      - (regs | iommu.host.decode_hw_info).derived.dirty_tracking.supported
  vars:
    regs: {type: intel_vtd, cap_reg: d2008c222f0686, ecap_reg: 480080f00f4a}

- name: The AMD-Vi feature names the kernel prints in dmesg
  ansible.builtin.debug:
    msg: "{{ ({'type': 'amd', 'features': '29d3:0'} | iommu.host.decode_hw_info).names }}"
  # -> ['PreF', 'PPR', 'GT', 'IA', 'GA', 'HE']

- name: Query a vfio-pci device through iommufd
  iommu.host.iommu_hw_info:
    devices: ['0000:01:00.0']
  register: hw_info

- name: Decode its raw vendor struct and capability word again
  ansible.builtin.set_fact:
    decoded: "{{ request | iommu.host.decode_hw_info(strict=true) }}"
  vars:
    hw: "{{ hw_info.devices['0000:01:00.0'] }}"
    request:
      type: "{{ hw.type_id }}"
      data: "{{ hw.raw.data }}"
      out_capabilities: "{{ hw.raw.capabilities }}"
      max_pasid_log2: "{{ hw.raw.max_pasid_log2 }}"
"""

RETURN = r"""
---
_value:
  description:
    - The decoded registers. Section keys are the kernel macro names without their prefix, lower case.
    - Single-bit fields are booleans; multi-bit fields are the integer the kernel macro computes
      (C(cap.mgaw) is the width in bits, C(cap.ndoms) the number of domain ids, ...).
  type: dict
  contains:
    type:
      description: The hw_info type name (C(intel_vtd), C(arm_smmuv3), C(tegra241_cmdqv), C(amd), C(selftest),
        C(none)), or C(unknown) for a type number this collection does not know.
      type: str
    type_id:
      description: The numeric C(enum iommu_hw_info_type) value.
      type: int
    raw:
      description: The input registers as C(0x...) hex strings; C(extra) holds bytes after a known struct,
        C(reserved) the struct's reserved word, C(data) the bytes of an unknown type.
      type: dict
    cap:
      description: VT-d capability register, one key per C(cap_*) macro (C(mgaw), C(sagaw), C(fl1gp_support),
        C(ndoms), C(fault_reg_offset), ...). Present for C(intel_vtd).
      type: dict
    ecap:
      description: VT-d extended capability register, one key per C(ecap_*) macro (C(smts), C(slads), C(flts),
        C(nest), C(pss), C(qis), C(iotlb_offset), ...). Present for C(intel_vtd).
      type: dict
    efr:
      description: AMD-Vi Extended Feature Register, one key per C(FEATURE_*) mask (C(ppr), C(gt), C(hats),
        C(pasmax), C(hdsup), C(snp), ...). Present for C(amd).
      type: dict
    efr2:
      description: AMD-Vi Extended Feature 2 Register (C(gcr3trpmode), C(snpavicsup), C(num_int_remap_sup), ...).
      type: dict
    names:
      description: For C(amd), the feature names the kernel prints after C(AMD-Vi Extended features).
      type: list
      elements: str
    idr0:
      description: SMMUv3 IDR0 fields (C(st_lvl), C(httu), C(s1p), C(s2p), C(cohacc), C(term_model), C(btm), ...);
        likewise C(idr1), C(idr3), C(idr5), C(iidr) and C(aidr). C(idr2) and C(idr4) have no fields and give
        their C(raw) value.
      type: dict
    flags:
      description: The vendor flags (C(errata_772415_spr17) for VT-d, C(errata_repeat_tlbi_cfgi) for SMMUv3), or
        the plain flags word for C(tegra241_cmdqv) and C(selftest).
      type: raw
    capabilities:
      description: The decoded C(out_capabilities) (C(dirty_tracking), C(pasid_exec), C(pasid_priv),
        C(ats_not_supported), C(max_pasid_log2), C(unknown_bits)) when the input had them.
      type: dict
    derived:
      description:
        - Plain-words facts worked out from the fields, for example C(max_guest_address_width_bits),
          C(supported_guest_address_widths), C(second_stage_page_sizes), C(first_stage_page_sizes),
          C(pasid_width), C(output_address_width_bits).
        - Predicates are C({supported, basis}); C(supported) is V(null) when the registers cannot tell
          (for example AMD interrupt remapping, which is not in EFR) and C(basis) names the fields and
          kernel code the answer rests on, including what the kernel needs beyond the registers
          (VT-d scalable mode switched on, SMMUv3 coherency from firmware).
      type: dict
    errors:
      description: Problems found in the input; empty when everything decoded.
      type: list
      elements: str
"""

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.iommu.host.plugins.module_utils.decode.api import (
    decode_request,
    parse_type,
)


def decode_hw_info(data, strict=False):
    """Decode one request dict; see DOCUMENTATION above."""
    if not isinstance(data, Mapping):
        raise AnsibleFilterError(
            "iommu.host.decode_hw_info: the input must be a dict such as "
            "{'type': 'intel_vtd', 'cap_reg': '...', 'ecap_reg': '...'}, got %s" % type(data).__name__)
    if "type" not in data:
        raise AnsibleFilterError(
            "iommu.host.decode_hw_info: the input has no 'type' (intel_vtd, amd, arm_smmuv3, "
            "tegra241_cmdqv, selftest, or a numeric hw_info type id)")
    type_id, err = parse_type(data["type"])
    if type_id is None:
        raise AnsibleFilterError("iommu.host.decode_hw_info: %s" % err)
    result = decode_request(data)
    if strict and result.get("errors"):
        raise AnsibleFilterError("iommu.host.decode_hw_info: %s" % "; ".join(result["errors"]))
    return result


class FilterModule(object):
    """IOMMU decoding filters."""

    def filters(self):
        return {"decode_hw_info": decode_hw_info}
