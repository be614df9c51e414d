# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every filter is documented once, in its own file: DOCUMENTATION/EXAMPLES/RETURN in
plugins/filter/<name>.py (parsed with yaml, options against the filter's real signature, EXAMPLES
valid YAML), one filter per file, no .yml sidecar; ansible-doc lists each filter once and reads
those docs. The checker itself is tested on broken filter files, so it can fail."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.support.ansible_env import env
from tests.support.filter_docs import FILTER_DIR, doc_constants, doc_problems, filter_names, parsed_docs

BIN = os.path.dirname(sys.executable)
NAMES = filter_names()


def test_the_filters_are_there():
    # new filters join the list (and every check below); these must never go missing
    assert {"check", "decode_hw_info", "migration_pool", "nfd_features", "placement", "vm_requirements"} <= set(NAMES)


def test_no_sidecars_or_other_files():
    others = sorted(f for f in os.listdir(FILTER_DIR) if not f.endswith(".py") and f != "__pycache__")
    assert others == []


@pytest.mark.parametrize("name", NAMES)
def test_documentation_in_the_filter_file(name):
    assert doc_problems(os.path.join(FILTER_DIR, name + ".py")) == []


# ---------------------------------------------------------------------------------------------
# The checker fails on broken files
# ---------------------------------------------------------------------------------------------

GOOD = '''\
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: demo
author: someone
version_added: "0.2.0"
short_description: A demo filter
description:
  - Joins.
positional: _input, sep
options:
  _input:
    description: The list.
    type: list
    required: true
  sep:
    description: The separator.
    type: str
    required: true
  upper:
    description: Upper case.
    type: bool
    default: false
  mode:
    description: How.
    type: str
    default: plain
    choices: [plain, fancy]
"""

EXAMPLES = r"""
- name: Join
  ansible.builtin.debug:
    msg: "{{ ['a', 'b'] | iommu.host.demo(',') }}"
"""

RETURN = r"""
---
_value:
  description: The joined text.
  type: str
"""


def demo(data, sep, upper=False, mode="plain"):
    text = sep.join(data)
    return text.upper() if upper else text


class FilterModule(object):
    def filters(self):
        return {"demo": demo}
'''

BROKEN = [
    ("sidecar", None, "sidecar demo.yml"),
    ("option name", ("  upper:\n    description: Upper", "  uper:\n    description: Upper"), "documented options"),
    ("missing option", ("  mode:\n    description: How.\n    type: str\n    default: plain\n"
                        "    choices: [plain, fancy]\n", ""), "documented options"),
    ("required", ("    type: str\n    required: true\n  upper", "    type: str\n  upper"), "option sep: required"),
    ("type", ("    type: bool\n    default: false", "    type: boolean\n    default: false"), "option upper: type"),
    ("default", ("    type: bool\n    default: false", "    type: bool\n    default: true"), "documented default"),
    ("choices", ("choices: [plain, fancy]", "choices: [fancy]"), "not one of the choices"),
    ("positional", ("positional: _input, sep", "positional: _input"), "positional is"),
    ("name", ("name: demo\n", "name: other\n"), "DOCUMENTATION name"),
    ("examples yaml", ("- name: Join\n  ansible", "- name: Join\n ansible"), "EXAMPLES is not valid YAML"),
    ("examples tasks", ("- name: Join\n", "- nam: Join\n"), "EXAMPLES is not a list of named tasks"),
    ("examples use", ("iommu.host.demo(", "join("), "EXAMPLES never use"),
    ("no return", ('RETURN = r"""', 'RETURNS = r"""'), "no module-level RETURN"),
    ("return shape", ("_value:\n  description: The joined text.", "value:\n  description: The joined text."),
     "RETURN has no _value"),
    ("not a literal", ('EXAMPLES = r"""', 'EXAMPLES = "" + r"""'), "EXAMPLES is not a string literal"),
    ("two filters", ('return {"demo": demo}', 'return {"demo": demo, "demo2": demo}'), "exposes"),
    ("misnamed filter", ('return {"demo": demo}', 'return {"join": demo}'), "exposes"),
]


def _write(tmp_path, text):
    path = tmp_path / "demo.py"
    path.write_text(text)
    return str(path)


def test_checker_accepts_a_good_file(tmp_path):
    path = _write(tmp_path, GOOD)
    assert doc_problems(path) == []
    assert parsed_docs(path)["DOCUMENTATION"]["options"]["mode"]["choices"] == ["plain", "fancy"]


@pytest.mark.parametrize("what, change, problem", BROKEN, ids=[b[0] for b in BROKEN])
def test_checker_finds(tmp_path, what, change, problem):
    text = GOOD
    if change is None:
        (tmp_path / "demo.yml").write_text("DOCUMENTATION: {}\n")
    else:
        assert change[0] in text, what
        text = text.replace(change[0], change[1], 1)
    problems = doc_problems(_write(tmp_path, text))
    assert any(problem in p for p in problems), problems


# ---------------------------------------------------------------------------------------------
# What ansible-doc (this venv's ansible-core) makes of it
# ---------------------------------------------------------------------------------------------

def _ansible_doc(tmp_path, *args):
    proc = subprocess.run([os.path.join(BIN, "ansible-doc")] + list(args), env=env(tmp_path),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_ansible_doc_lists_each_filter_once(tmp_path):
    listed = [line.split()[0] for line in _ansible_doc(tmp_path, "-t", "filter", "-l", "iommu.host").splitlines()
              if line.strip()]
    assert listed == ["iommu.host." + n for n in NAMES]
    dump = json.loads(_ansible_doc(tmp_path, "--metadata-dump", "--no-fail-on-errors", "iommu.host"))
    assert sorted(dump["all"]["filter"]) == ["iommu.host." + n for n in NAMES]
    assert not dump.get("errors"), dump["errors"]


def test_ansible_doc_reads_the_in_file_docs(tmp_path):
    out = json.loads(_ansible_doc(tmp_path, "-t", "filter", "--json", *["iommu.host." + n for n in NAMES]))
    assert sorted(out) == ["iommu.host." + n for n in NAMES]
    for name in NAMES:
        got = out["iommu.host." + name]
        mine = parsed_docs(os.path.join(FILTER_DIR, name + ".py"))
        assert got["doc"]["name"] == name
        assert got["doc"]["filename"].endswith(os.path.join("plugins", "filter", name + ".py"))
        assert sorted(got["doc"]["options"]) == sorted(mine["DOCUMENTATION"]["options"])
        assert got["doc"]["short_description"] == mine["DOCUMENTATION"]["short_description"]
        raw_examples = doc_constants(os.path.join(FILTER_DIR, name + ".py"))["EXAMPLES"]
        assert textwrap.dedent(got["examples"]).strip() == raw_examples.strip()
        assert sorted(got["return"]) == sorted(mine["RETURN"]) == ["_value"]
