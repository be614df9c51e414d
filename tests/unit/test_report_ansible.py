# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The role iommu.host.report through ansible-playbook: facts from a jsonfile fact cache (as a
gathering run leaves them), the play touching no host, the files written once on the controller,
idempotent, check mode and diff; and ansible-doc renders the new module and filter."""

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.iommu.host.plugins.module_utils.report import jsondoc, model
from tests.support import fleet
from tests.support.ansible_env import env as ansible_env
from tests.unit.test_fleet_placement import domain

BIN = os.path.dirname(sys.executable)
HOSTS = {"hv1": "intel-sm-vfio", "hv2": "intel-vfio", "hv3": "amd-vfio", "hv4": "none"}
ARGV = "qemu-system-x86_64 -name cli -device intel-iommu,caching-mode=on,aw-bits=39 -device vfio-pci,host=00:09.0"


def run(args, tmp_path, extra_env=None, ok=True):
    e = ansible_env(tmp_path)
    e.update({"ANSIBLE_CACHE_PLUGIN": "jsonfile", "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(tmp_path / "cache"),
              "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "0", "ANSIBLE_GATHERING": "explicit"})
    e.update(extra_env or {})
    out = subprocess.run([os.path.join(BIN, args[0])] + args[1:], env=e, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=600, check=False)
    if ok:
        assert out.returncode == 0, out.stdout
    return out


def project(tmp_path):
    """Inventory hv1..hv5 (ssh to a TEST-NET address: the report play must not contact them) and a jsonfile
    fact cache holding hv1..hv4's iommu facts, filled by a first run (set_fact cacheable writes the cache as
    iommu_facts does); hv5 has no cached facts."""
    (tmp_path / "facts").mkdir()
    for host, profile in HOSTS.items():
        (tmp_path / "facts" / ("%s.json" % host)).write_text(json.dumps(fleet.facts(profile)))
    (tmp_path / "inventory.yml").write_text(textwrap.dedent("""\
        all:
          vars:
            ansible_connection: ssh
            ansible_host: 192.0.2.1
          children:
            hypervisors:
              hosts:
                hv1:
                hv2:
                hv3:
                hv4:
                hv5:
        """))
    (tmp_path / "cache.yml").write_text(textwrap.dedent("""\
        - hosts: hv1:hv2:hv3:hv4
          gather_facts: false
          tasks:
            - ansible.builtin.set_fact:
                iommu: "{{ lookup('ansible.builtin.file', playbook_dir + '/facts/' + inventory_hostname + '.json')
                           | from_json }}"
                cacheable: true
        """))
    run(["ansible-playbook", "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "cache.yml")], tmp_path)
    (tmp_path / "vms.json").write_text(json.dumps({"narrow": domain("narrow", aw=39), "wide": domain("wide", aw=48),
                                                   "cli": ARGV}))
    (tmp_path / "play.yml").write_text(textwrap.dedent("""\
        - name: Fleet report from the fact cache
          hosts: hypervisors
          gather_facts: false
          vars:
            vms: "{{ lookup('ansible.builtin.file', playbook_dir + '/vms.json') | from_json }}"
          roles:
            - role: iommu.host.report
              vars:
                report_dir: "{{ playbook_dir }}/out"
                report_profiles: [passthrough, live_migration]
                report_vms: [ "{{ vms.narrow }}", "{{ vms.wide }}", "{{ vms.cli }}" ]
                report_pools:
                  pool_a: [hv1, hv2, hv4]
                report_title: "{{ title | default('Fleet <&> report') }}"
          post_tasks:
            - name: The result names the files and the failed hosts
              ansible.builtin.assert:
                that:
                  - report_result.files.html.path == playbook_dir + '/out/report.html'
                  - report_result.summary.hosts == 5
                  - "'hv5' in report_result.failed_hosts"
              run_once: true
        """))
    return tmp_path


def test_role_writes_the_report_from_the_fact_cache(tmp_path):
    project(tmp_path)
    out = run(["ansible-playbook", "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "play.yml")], tmp_path)
    assert "unreachable=0" in out.stdout and "failed=0" in out.stdout, out.stdout
    # once per play: one task result for the module, on the first host
    assert out.stdout.count("-> localhost") == 1, out.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["schema"] == "iommu.host.report/1" and report["title"] == "Fleet <&> report"
    hosts = dict((h["name"], h) for h in report["hosts"])
    assert list(hosts) == ["hv1", "hv2", "hv3", "hv4", "hv5"]
    assert hosts["hv5"]["facts"] is False and hosts["hv5"]["cells"]["facts.iommu"]["status"] == "fail"
    assert hosts["hv3"]["cells"]["host.interrupt_remapping"]["status"] == "fail"
    cells = report["placement"]["cells"]
    wide_hv2 = cells[report["placement"]["matrix"]["wide"][1]]
    assert wide_hv2["status"] == "fail" and wide_hv2["first"]["id"] == "viommu.intel.aw_bits"
    assert wide_hv2["first"]["evidence"]["params.aw_bits"] == 48
    assert cells[report["placement"]["matrix"]["cli"][0]]["status"] == "pass"
    pool = report["pools"][0]
    assert pool["members"] == ["hv1", "hv2"] and pool["excluded"][0]["host"] == "hv4"
    aw = pool["models"]["intel-iommu"]["properties"]["aw_bits"]
    assert aw["value"] == 39 and aw["limited_by"][0]["hosts"] == ["hv2"]
    assert [v["name"] for v in pool["vms"] if v["status"] == "exceeds"] == ["wide"]
    # exactly what the pure computation gives over the same facts (Ansible's tagged/unsafe types included)
    hv = dict((h, {"ansible_facts": {"iommu": fleet.facts(p)}}) for h, p in HOSTS.items())
    hv["hv5"] = {}
    expected = model.build(hv, hosts=list(hosts), profiles=["passthrough", "live_migration"],
                           vms=[domain("narrow", aw=39), domain("wide", aw=48), ARGV],
                           pools={"pool_a": ["hv1", "hv2", "hv4"]}, title="Fleet <&> report")
    assert (tmp_path / "out" / "report.json").read_text() == jsondoc.render(expected)
    suites = ET.parse(str(tmp_path / "out" / "report.junit.xml")).getroot()
    assert [s.get("name") for s in suites][:5] == ["host hv1", "host hv2", "host hv3", "host hv4", "host hv5"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<title>Fleet &lt;&amp;&gt; report</title>" in html

    # the same fleet again: nothing changes, byte for byte
    stamp = dict((f, (tmp_path / "out" / f).read_bytes()) for f in ("report.html", "report.json", "report.junit.xml"))
    again = run(["ansible-playbook", "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "play.yml")], tmp_path)
    assert "changed=0" in again.stdout and "changed=1" not in again.stdout, again.stdout
    assert stamp == dict((f, (tmp_path / "out" / f).read_bytes()) for f in stamp)

    # check mode with diff: a new title would change all three files; nothing is written
    check = run(["ansible-playbook", "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "play.yml"), "--check",
                 "--diff", "-e", "title=Other"], tmp_path)
    assert "changed=1" in check.stdout, check.stdout
    assert check.stdout.count("sha256") >= 6, check.stdout      # before and after of each file
    assert stamp == dict((f, (tmp_path / "out" / f).read_bytes()) for f in stamp)

    # large fleets: the role in a play on localhost, naming the hosts (docs/report.md) - the same report
    (tmp_path / "local.yml").write_text(textwrap.dedent("""\
        - hosts: localhost
          gather_facts: false
          vars:
            vms: "{{ lookup('ansible.builtin.file', playbook_dir + '/vms.json') | from_json }}"
          roles:
            - role: iommu.host.report
              vars:
                report_hosts: "{{ groups['hypervisors'] }}"
                report_dir: "{{ playbook_dir }}/local"
                report_formats: [json]
                report_profiles: [passthrough, live_migration]
                report_vms: [ "{{ vms.narrow }}", "{{ vms.wide }}", "{{ vms.cli }}" ]
                report_pools: {pool_a: [hv1, hv2, hv4]}
                report_title: Fleet <&> report
        """))
    run(["ansible-playbook", "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "local.yml")], tmp_path)
    assert (tmp_path / "local" / "report.json").read_bytes() == stamp["report.json"]
    assert not (tmp_path / "local" / "report.html").exists()


def test_role_rejects_bad_variables(tmp_path):
    project(tmp_path)
    book = tmp_path / "bad.yml"
    book.write_text(textwrap.dedent("""\
        - hosts: hypervisors
          gather_facts: false
          roles:
            - role: iommu.host.report
              vars:
                report_profiles: [no_such_profile]
        """))
    out = run(["ansible-playbook", "-i", str(tmp_path / "inventory.yml"), str(book)], tmp_path, ok=False)
    assert out.returncode != 0 and "no_such_profile" in out.stdout, out.stdout
    assert not (tmp_path / "iommu-report").exists()


@pytest.mark.parametrize("kind, name", [("module", "iommu_report"), ("filter", "fleet_report")])
def test_ansible_doc_renders(tmp_path, kind, name):
    out = run(["ansible-doc", "-t", kind, "--json", "iommu.host." + name], tmp_path)
    doc = json.loads(out.stdout)["iommu.host." + name]
    assert doc["doc"]["short_description"] and doc["examples"] and doc["return"]
