# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu.host.decode_hw_info: decode IOMMU capability registers (docs: decode_hw_info.yml)."""

from __future__ import absolute_import, division, print_function

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.iommu.host.plugins.module_utils.decode.api import (
    decode_request,
    parse_type,
)

__metaclass__ = type


def decode_hw_info(data, strict=False):
    """Decode one request dict; see plugins/filter/decode_hw_info.yml."""
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
