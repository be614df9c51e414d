# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet filters and capabilities through Ansible itself: ansible-doc, a playbook over hostvars,
and the constructed inventory example of docs/fleet.md over a fact cache."""

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from tests.support import fleet
from tests.support.ansible_env import env as ansible_env
from tests.unit.test_fleet_placement import domain

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
HOSTS = {"hv1": "intel-sm-vfio", "hv2": "intel-vfio", "hv3": "amd-vfio", "hv4": "none"}


def env(tmp_path, cfg=None):
    e = ansible_env(tmp_path)
    if cfg:
        e["ANSIBLE_CONFIG"] = str(cfg)
    return e


def run(args, tmp_path, cfg=None):
    out = subprocess.run([os.path.join(BIN, args[0])] + args[1:], env=env(tmp_path, cfg), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout
    return out.stdout


def project(tmp_path):
    """An inventory of four hypervisors and each one's facts (from the captured trees) as JSON."""
    (tmp_path / "facts").mkdir()
    for host, profile in HOSTS.items():
        (tmp_path / "facts" / ("%s.json" % host)).write_text(json.dumps(fleet.facts(profile)))
    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / "10-hosts.yml").write_text(textwrap.dedent("""\
        all:
          vars:
            ansible_connection: local
          children:
            hypervisors:
              hosts:
        """) + "".join("        %s:\n" % h for h in HOSTS))
    return inv


@pytest.mark.parametrize("name", ["placement", "migration_pool"])
def test_ansible_doc_renders(tmp_path, name):
    doc = json.loads(run(["ansible-doc", "-t", "filter", "--json", "iommu.host." + name], tmp_path))
    doc = doc["iommu.host." + name]
    assert doc["doc"]["name"] == name and doc["return"]["_value"]["contains"]
    assert "hostvars | iommu.host." + name in doc["examples"]


PLAYBOOK = textwrap.dedent("""\
    - hosts: hypervisors
      gather_facts: false
      tasks:
        - name: facts as iommu_facts would give them
          ansible.builtin.set_fact:
            iommu: "{{ lookup('ansible.builtin.file', playbook_dir + '/facts/' + inventory_hostname + '.json') | from_json }}"

    - hosts: localhost
      gather_facts: false
      vars:
        narrow: %(narrow)s
        wide: %(wide)s
        matrix: "{{ hostvars | iommu.host.placement([narrow, wide], hosts=groups['hypervisors']) }}"
        pool: "{{ hostvars | iommu.host.migration_pool(hosts=['hv1', 'hv2', 'hv4'], models=['intel-iommu'],
                                                       vms=[narrow, wide]) }}"
      tasks:
        - ansible.builtin.assert:
            that:
              - matrix.hosts == ['hv1', 'hv2', 'hv3', 'hv4']
              - matrix.vms[0].pass == ['hv1', 'hv2']
              - matrix.vms[1].pass == ['hv1']
              - matrix.matrix.wide.hv2.first.id == 'viommu.intel.aw_bits'
              - matrix.matrix.narrow.hv3.first.id == 'host.interrupt_remapping'
              - matrix.cells | selectattr('status', 'eq', 'fail') | list | length == 5
              - pool.members == ['hv1', 'hv2']
              - pool.excluded[0].host == 'hv4'
              - pool.models['intel-iommu'].properties.aw_bits.value == 39
              - pool.models['intel-iommu'].properties.aw_bits.limited_by[0].host == 'hv2'
              - pool.vms | selectattr('status', 'eq', 'exceeds') | map(attribute='name') | list == ['wide']
              - hostvars.hv1.iommu.capabilities.vendor == 'intel_vtd'
              - (matrix | to_json | from_json) == matrix
              - "'aw-bits 48 > host aw-bits 39' in matrix.matrix.wide.hv2.first.message"
    """)


def test_filters_in_a_playbook(tmp_path):
    inv = project(tmp_path)
    book = tmp_path / "play.yml"
    book.write_text(PLAYBOOK % {"narrow": json.dumps(domain("narrow", aw=39)),
                                "wide": json.dumps(domain("wide", aw=48))})
    out = run(["ansible-playbook", "-i", str(inv), str(book)], tmp_path)
    assert "failed=0" in out and "All assertions passed" in out, out


def constructed_example():
    """The constructed inventory source and ansible.cfg of docs/fleet.md (tested as documented)."""
    with open(os.path.join(REPO, "docs", "fleet.md")) as f:
        text = f.read()
    blocks = re.findall(r"```(?:yaml|ini)\n# (\S+)\n(.*?)```", text, re.S)
    return dict(blocks)


def test_constructed_inventory_groups_by_capabilities(tmp_path):
    inv = project(tmp_path)
    example = constructed_example()
    (inv / "20-iommu.constructed.yml").write_text(example["inventory/20-iommu.constructed.yml"])
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text(example["ansible.cfg"].replace("~/.cache/ansible-facts", str(tmp_path / "cache")))
    # fill the fact cache as iommu_facts does on each host (set_fact cacheable writes the same cache)
    (tmp_path / "cache.yml").write_text(textwrap.dedent("""\
        - hosts: hypervisors
          gather_facts: false
          tasks:
            - ansible.builtin.set_fact:
                iommu: "{{ lookup('ansible.builtin.file', playbook_dir + '/facts/' + inventory_hostname + '.json')
                           | from_json }}"
                cacheable: true
        """))
    run(["ansible-playbook", "-i", str(inv), str(tmp_path / "cache.yml")], tmp_path, cfg)
    graph = json.loads(run(["ansible-inventory", "-i", str(inv), "--list"], tmp_path, cfg))
    groups = dict((g, sorted(v.get("hosts", []))) for g, v in graph.items() if g != "_meta")
    assert groups["iommu_vendor_intel_vtd"] == ["hv1", "hv2"]
    assert groups["iommu_vendor_amd"] == ["hv3"] and groups["iommu_vendor_none"] == ["hv4"]
    assert groups["iommu_iova_bits_48"] == ["hv1"] and groups["iommu_iova_bits_39"] == ["hv2"]
    assert groups["iommu_iova_bits_unknown"] == ["hv4"]
    assert groups["iommu_ready"] == ["hv1", "hv2"]          # hv3: no interrupt remapping
    assert "iommu_dirty_tracking" not in groups            # sysfs-only facts cannot tell
    assert groups["iommu_vfio_devices_1"] == ["hv1", "hv2", "hv3"]
