# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The iommu.host.decode_hw_info filter: thin wrapper, errors, in-file docs, real templating."""

import os
import subprocess
import sys
import textwrap

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.iommu.host.plugins.filter.decode_hw_info import FilterModule, decode_hw_info
from ansible_collections.iommu.host.plugins.module_utils.decode import api as D
from tests.support.ansible_env import env
from tests.support.filter_docs import doc_problems, parsed_docs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGIN = os.path.join(REPO, "plugins", "filter", "decode_hw_info.py")
BIN = os.path.dirname(sys.executable)


def test_filter_is_registered():
    assert FilterModule().filters() == {"decode_hw_info": decode_hw_info}


def test_filter_is_decode_request():
    req = {"type": "intel_vtd", "cap_reg": "d2008c22260286", "ecap_reg": "f00f4a"}
    assert decode_hw_info(req) == D.decode_request(req)
    assert decode_hw_info(req)["cap"]["mgaw"] == 39


@pytest.mark.parametrize("bad", [None, "intel_vtd", 42, ["type", "amd"], ("amd",)])
def test_not_a_dict_fails(bad):
    with pytest.raises(AnsibleFilterError, match="must be a dict"):
        decode_hw_info(bad)


def test_missing_type_fails():
    with pytest.raises(AnsibleFilterError, match="no 'type'"):
        decode_hw_info({"cap_reg": 1, "ecap_reg": 2})


@pytest.mark.parametrize("bad", ["intel", "nope", True, None, -1, 1 << 40, 1.5, [1]])
def test_unusable_type_fails(bad):
    if bad == "intel":
        assert decode_hw_info({"type": bad, "cap": 0, "ecap": 0})["type"] == "intel_vtd"  # an alias
        return
    with pytest.raises(AnsibleFilterError, match="decode_hw_info"):
        decode_hw_info({"type": bad})


def test_bad_register_values_are_errors_not_failures():
    r = decode_hw_info({"type": "amd", "efr": "xyz", "efr2": 0, "colour": "red"})
    assert r["efr"] is None
    assert any("efr" in e for e in r["errors"])
    assert any("colour" in e for e in r["errors"])


def test_strict_raises_on_errors():
    with pytest.raises(AnsibleFilterError, match="not a hex number"):
        decode_hw_info({"type": "amd", "efr": "xyz"}, strict=True)
    assert decode_hw_info({"type": "amd", "efr": "29d3"}, strict=True)["names"][0] == "PreF"


def test_unknown_type_number_is_fine():
    r = decode_hw_info({"type": 77, "data": "abcd"})
    assert r["type"] == "unknown" and r["raw"]["data"] == "abcd" and r["errors"] == []


def test_capabilities_in_the_request():
    r = decode_hw_info({"type": "selftest", "data": "00000000efbeadde", "out_capabilities": 9,
                        "max_pasid_log2": 20})
    assert r["test_reg"] == 0xdeadbeef
    assert r["capabilities"]["dirty_tracking"] is True
    assert r["capabilities"]["max_pasid_log2"] == 20


# ---------------------------------------------------------------------------------------------
# Documentation in plugins/filter/decode_hw_info.py (ansible-doc's view of every filter: test_filter_docs.py)
# ---------------------------------------------------------------------------------------------

def test_documentation_shape():
    doc = parsed_docs(PLUGIN)
    assert set(doc) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}
    d = doc["DOCUMENTATION"]
    assert d["name"] == "decode_hw_info"
    assert d["short_description"] and d["description"]
    assert d["positional"] == "_input"
    assert d["options"]["_input"]["type"] == "dict" and d["options"]["_input"]["required"] is True
    assert d["options"]["strict"]["default"] is False
    assert isinstance(doc["EXAMPLES"], list)
    assert "_value" in doc["RETURN"]
    assert doc_problems(PLUGIN) == []


# ---------------------------------------------------------------------------------------------
# Through a real playbook (Jinja, data tagging of ansible-core 2.19)
# ---------------------------------------------------------------------------------------------

PLAYBOOK = textwrap.dedent("""\
    - hosts: localhost
      gather_facts: false
      vars:
        vtd: {type: intel_vtd, cap_reg: d2008c222f0686, ecap_reg: "0x480080f00f4a"}
        amd_sysfs: {type: amd, features: "29d3:0"}
        amd_int: {type: 4, efr: 10707}
        amd_bad: {type: amd, efr: zz}
      tasks:
        - name: decode in templates
          ansible.builtin.assert:
            that:
              - (vtd | iommu.host.decode_hw_info).cap.mgaw == 48
              - (vtd | iommu.host.decode_hw_info).derived.scalable_mode.supported
              - (vtd | iommu.host.decode_hw_info).derived.supported_guest_address_widths == [39, 48]
              - (amd_sysfs | iommu.host.decode_hw_info).names == ['PreF', 'PPR', 'GT', 'IA', 'GA', 'HE']
              - (amd_int | iommu.host.decode_hw_info(strict=true)).efr.gt
              - (amd_bad | iommu.host.decode_hw_info).errors | length == 1

        - name: a hard input error fails the task
          ansible.builtin.debug:
            msg: "{{ 'not a dict' | iommu.host.decode_hw_info }}"
          register: bad
          ignore_errors: true

        - ansible.builtin.assert:
            that:
              - bad is failed
              - "'must be a dict' in bad.msg"
    """)


def test_filter_in_a_playbook(tmp_path):
    book = tmp_path / "play.yml"
    book.write_text(PLAYBOOK)
    out = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", str(book)],
                         env=env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout
    assert "failed=0" in out.stdout
