# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report: its data (report/model.py) against the check, placement and migration_pool filters,
and the three renderers (HTML, JUnit XML, JSON) - determinism, well-formedness, escaping of hostile
host names and messages (hypothesis)."""

import json
import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.iommu.host.plugins.filter.check import check
from ansible_collections.iommu.host.plugins.filter.fleet_report import FilterModule, fleet_report
from ansible_collections.iommu.host.plugins.module_utils.fleet import api as fleet_api
from ansible_collections.iommu.host.plugins.module_utils.report import html, jsondoc, junit, model
from ansible_collections.iommu.host.plugins.modules import iommu_report
from tests.support import fleet
from tests.unit.test_fleet_placement import domain

HOSTILE = ["</script><script>window.__pwned=1</script>", "<!--<script>", "]]>", "a\"b'c&d<e>f", "\u2028\u2029",
           "nul\x00bell\x07", "lone\ud800surrogate", "\ufffe\uffff", "emoji \U0001F600", "</SCRIPT >", "<![CDATA[x"]


def hosts():
    return {"legacy": {"ansible_facts": {"iommu": fleet.facts("intel-vfio")}},
            "scalable": {"ansible_facts": {"iommu": fleet.facts("intel-sm-vfio")}},
            "amd": {"ansible_facts": {"iommu": fleet.facts("amd-vfio")}},
            "plain": {"ansible_facts": {"iommu": fleet.facts("intel")}},
            "bare": {"ansible_facts": {}}}


VMS = [domain("small", aw=39), domain("wide", aw=48), "not a < VM"]
POOLS = {"intel": ["legacy", "scalable", "plain"]}


@pytest.fixture(scope="module")
def report():
    return model.build(hosts(), profiles=["passthrough", "live_migration"], vms=VMS, pools=POOLS)


def embedded(page):
    """The JSON of <script type="application/json" id="report-data"> as the HTML parser delimits it: the
    element ends at the first '</script' (any case)."""
    start = page.index('<script type="application/json" id="report-data">') + len(
        '<script type="application/json" id="report-data">')
    end = page.lower().index("</script", start)
    return page[start:end]


def _sort_key(finding):
    return json.dumps(finding, sort_keys=True)


# ------------------------------------------------------------------------------------------ the data

def test_filter_is_registered():
    assert FilterModule().filters() == {"fleet_report": fleet_report}


def test_hosts_x_requirements_are_the_check_filters_findings(report):
    """Every host's cells hold exactly the findings iommu.host.check gives for that host."""
    assert model.validate(report) == []
    ids = [r["id"] for r in report["requirements"]]
    for row in report["hosts"]:
        entry = hosts()[row["name"]]
        expected = check(entry["ansible_facts"], profiles=["passthrough", "live_migration"])
        assert row["status"] == expected["status"], row["name"]
        got = []
        for rid in ids:
            cell = row["cells"][rid]
            fs = [report["findings"][i] for i in cell["findings"]]
            assert cell["status"] == (model.worst([f["status"] for f in fs]) if fs else "not_evaluated")
            got.extend(fs)
        want = [dict((k, f[k]) for k in ("id", "status", "device", "message", "remedy", "qemu_effect", "evidence"))
                for f in expected["findings"]]
        assert sorted(got, key=_sort_key) == sorted(want, key=_sort_key), row["name"]
    bare = [r for r in report["hosts"] if r["name"] == "bare"][0]
    assert bare["facts"] is False and bare["cells"]["facts.iommu"]["status"] == "fail"
    assert bare["cells"]["host.iommufd"]["status"] == "not_evaluated"
    assert report["summary"]["hosts_without_facts"] == 1 and report["summary"]["hosts"] == 5
    assert ids[0] == "facts.iommu" and ids.index("host.iommu_firmware") < ids.index("migration.device")


def test_vms_x_hosts_are_the_placement_filters_cells(report):
    matrix = fleet_api.placement(hosts(), VMS)
    names = [h["name"] for h in report["hosts"]]
    assert [v["name"] for v in report["vms"]] == [v["name"] for v in matrix["vms"]]
    for vm in report["vms"]:
        for index, host in enumerate(names):
            cell = report["placement"]["cells"][report["placement"]["matrix"][vm["name"]][index]]
            want = matrix["matrix"][vm["name"]][host]
            assert cell["status"] == want["status"] and cell["failed"] == want["failed"]
            if want["first"] is None:
                assert cell["first"] is None
            else:
                first = dict(cell["first"])
                evidence = first.pop("evidence")
                assert first == want["first"], (vm["name"], host)
                assert isinstance(evidence, dict)
    wide = report["placement"]["cells"][report["placement"]["matrix"]["wide"][0]]
    assert wide["first"]["id"] == "viommu.intel.aw_bits" and wide["first"]["evidence"]["params.aw_bits"] == 48
    broken = report["placement"]["cells"][report["placement"]["matrix"]["vm3"][0]]
    assert broken["first"]["id"] == "vm.definition" and "cannot be read" in broken["first"]["evidence"]["error"]


def test_pools_are_the_migration_pool_filters(report):
    pool = report["pools"][0]
    want = fleet_api.migration_pool(hosts(), hosts=POOLS["intel"], vms=VMS)
    assert pool["name"] == "intel" and pool["members"] == want["members"]
    assert pool["excluded"] == want["excluded"]
    for name, entry in want["models"].items():
        for prop, p in entry["properties"].items():
            got = pool["models"][name]["properties"][prop]
            assert got["value"] == p["value"] and got["possible"] == p["possible"]
            flat = [dict([(k, v) for k, v in g.items() if k != "hosts"], host=h) for g in got["limited_by"]
                    for h in g["hosts"]]
            assert sorted(flat, key=lambda x: x["host"]) == sorted(p["limited_by"], key=lambda x: x["host"])
        assert pool["models"][name].get("params") == entry.get("params")
    assert [(v["name"], v["status"]) for v in pool["vms"]] == [(v["name"], v["status"]) for v in want["vms"]]
    assert pool["models"]["intel-iommu"]["properties"]["aw_bits"]["value"] == 39


def test_identical_hosts_share_findings():
    hv = fleet.fleet(84)                    # 42 distinct facts, each twice
    r = model.build(hv)
    assert len(r["hosts"]) == 84
    distinct = set(json.dumps(h["cells"], sort_keys=True) for h in r["hosts"])
    assert len(distinct) <= 42
    assert len(r["findings"]) < 42 * len(r["requirements"])


def test_deterministic_and_json_stable(report):
    again = model.build(hosts(), profiles=["passthrough", "live_migration"], vms=VMS, pools=POOLS)
    assert jsondoc.render(again) == jsondoc.render(report)
    text = jsondoc.render(report)
    assert text.endswith("}\n") and json.loads(text) == json.loads(json.dumps(report))
    assert text.isascii()


@pytest.mark.parametrize("kwargs, message", [
    ({"hosts": 5}, "hosts must be a list"),
    ({"pools": "a"}, "pools must be a dict"),
    ({"pools": {"a": 3}}, "pool a must be a list"),
    ({"pools": [{"name": "x"}]}, "each pool must be"),
])
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(model.ReportError, match=message):
        model.build(hosts(), **kwargs)


def test_odd_inputs_never_raise():
    r = model.build({"h": None, "i": {"ansible_facts": {"iommu": "garbage"}}, "j": {"iommu": {"kernel": 5}}},
                    vms={"x": 7, "y": "<domain"}, pools={"p": ["h", "nohost"]})
    assert model.validate(r) == []
    assert [h["status"] for h in r["hosts"]] == ["fail", "fail", "fail"]
    for fn in (html.render, jsondoc.render, junit.render):
        fn(r)


def test_validate_names_the_problem(report):
    assert model.validate([]) and "must be a dict" in model.validate([])[0]
    broken = json.loads(json.dumps(report))
    broken["hosts"][0]["cells"]["facts.iommu"]["findings"] = [10 ** 6]
    assert any("bad cell" in p for p in model.validate(broken))
    broken = json.loads(json.dumps(report))
    broken["placement"]["matrix"]["wide"] = [0]
    assert any("one cell index per host" in p for p in model.validate(broken))
    assert "schema" in model.validate(dict(report, schema="x"))[0]


# ------------------------------------------------------------------------------------------ JUnit

def test_junit_suites_and_cases(report):
    text = junit.render(report)
    root = ET.fromstring(text.encode("utf-8"))
    assert root.tag == "testsuites"
    suites = dict((s.get("name"), s) for s in root)
    assert list(suites)[:5] == ["host legacy", "host scalable", "host amd", "host plain", "host bare"]
    assert "vm wide" in suites and "pool intel" in suites
    n_req = len(report["requirements"])
    for s in root:
        cases = list(s)
        assert int(s.get("tests")) == len(cases)
        assert int(s.get("failures")) == sum(1 for c in cases if c.find("failure") is not None)
        assert int(s.get("skipped")) == sum(1 for c in cases if c.find("skipped") is not None)
    assert int(root.get("tests")) == sum(int(s.get("tests")) for s in root)
    amd = suites["host amd"]
    assert len(amd) == n_req
    ir = [c for c in amd if c.get("name") == "host.interrupt_remapping"][0]
    failure = ir.find("failure")
    assert failure is not None and "Remedy: " in failure.text and failure.get("type") == "refuse"
    assert ir.get("classname") == "hosts.amd"
    wide = suites["vm wide"]
    assert [c.get("name") for c in wide] == [h["name"] for h in report["hosts"]]
    legacy = [c for c in wide if c.get("name") == "legacy"][0]
    assert "viommu.intel.aw_bits" in legacy.find("failure").get("message")
    assert [c for c in wide if c.get("name") == "scalable"][0].find("failure") is None
    pool = suites["pool intel"]
    exceeds = [c for c in pool if c.get("name") == "vm wide"][0].find("failure")
    assert exceeds is not None and "legacy" in exceeds.get("message")
    # a warning passes, unless warnings are failures
    warn_cases = [c for s in root for c in s if c.find("system-out") is not None]
    assert warn_cases and all(c.find("failure") is None for c in warn_cases)
    strict = ET.fromstring(junit.render(report, warnings_as_failures=True).encode("utf-8"))
    assert int(strict.get("failures")) > int(root.get("failures"))
    assert 'timestamp=' not in text
    assert 'timestamp="2026-11-28T18:00:00Z"' in junit.render(dict(report, generated="2026-11-28T18:00:00Z"))


def test_junit_escapes_hostile_text():
    hv = dict((name, {"ansible_facts": {"iommu": fleet.facts("amd-vfio")}}) for name in HOSTILE)
    r = model.build(hv, vms={n: domain("x") for n in HOSTILE[:3]}, title="<t>&\"")
    root = ET.fromstring(junit.render(r).encode("utf-8"))
    names = [s.get("name") for s in root if s.get("name").startswith("host ")]
    expect = [junit._clean("host " + n) for n in HOSTILE]  # pylint: disable=protected-access
    assert names == expect
    assert names[0] == "host </script><script>window.__pwned=1</script>" and "host nul\\x00bell\\x07" in names
    assert root.get("name") == '<t>&"'


# ------------------------------------------------------------------------------------------ HTML

def test_html_is_self_contained(report):
    page = html.render(report)
    assert page.startswith("<!DOCTYPE html>") and page.isascii()
    assert "default-src 'none'" in page
    # no external reference of any kind: only the data: favicon
    assert re.findall(r"""(?:src|href)\s*=\s*["']?([^"' >]+)""", page) == ["data:,"]
    assert "http://" not in page.replace("http-equiv", "") and "https://" not in page
    assert "@import" not in page and "url(" not in page
    data = json.loads(embedded(page))
    assert data == json.loads(json.dumps(html.compact(report)))
    assert [data["S"][h[0]] for h in data["H"]] == [h["name"] for h in report["hosts"]]


def test_html_compact_round_trip(report):
    """Every host cell of the page's data resolves to the report's findings."""
    data = html.compact(report)
    s = data["S"]
    for h, row in zip(data["H"], report["hosts"]):
        cells = data["HR"][h[3]]
        for r, cell in zip(data["R"], cells):
            refs = [] if cell == -1 else ([cell] if isinstance(cell, int) else cell)
            assert refs == row["cells"][s[r[0]]]["findings"]
        vrow = data["VR"][h[4]]
        for v, vm in zip(data["V"], report["vms"]):
            index = report["placement"]["matrix"][vm["name"]][report["hosts"].index(row)]
            assert vrow[data["V"].index(v)] == index
    for f, g in zip(data["F"], report["findings"]):
        assert s[f[3]] == g["message"] and html.CODES[g["status"]] == f[0]
        assert (json.loads(s[f[6]]) if f[6] >= 0 else {}) == g["evidence"]


def test_html_escapes_hostile_title_and_hosts():
    hv = dict((name, {"ansible_facts": {"iommu": fleet.facts("intel-vfio")}}) for name in HOSTILE)
    r = model.build(hv, title="</title><script>alert(1)</script>")
    page = html.render(r)
    assert "<title>&lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt;</title>" in page
    assert page.lower().count("<script") == 2 and page.lower().count("</script") == 2
    data = json.loads(embedded(page))
    assert [data["S"][h[0]] for h in data["H"]] == HOSTILE


_TEXT = st.text(st.characters(exclude_categories=()), max_size=30) | st.sampled_from(HOSTILE)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.lists(_TEXT, min_size=1, max_size=4, unique=True), message=_TEXT, title=_TEXT)
def test_escaping_property(names, message, title):
    """Whatever the host names, messages and title: the page's data element decodes to exactly the data,
    nothing in it can end the element or open markup, and the JUnit XML stays well-formed."""
    hv = dict((n, {"ansible_facts": {"iommu": fleet.facts("intel-vfio")}}) for n in names)
    r = model.build(hv, title=title or "t")
    # a hostile message in a finding, as a custom check or odd fact would give it
    r["findings"].append({"id": "custom.x", "status": "fail", "device": message, "message": message,
                          "remedy": message, "qemu_effect": None, "evidence": {message: message}})
    r["requirements"].append({"id": "custom.x", "title": message, "rule": message, "profiles": [],
                              "counts": {}})
    for h in r["hosts"]:
        h["cells"]["custom.x"] = {"status": "fail", "findings": [len(r["findings"]) - 1]}
    page = html.render(r)
    body = embedded(page)
    assert not re.search(r"</script|<!--|<script|]]>", body, re.I)
    data = json.loads(body)
    assert data == json.loads(json.dumps(html.compact(r)))
    assert [data["S"][h[0]] for h in data["H"]] == names
    assert message in data["S"]
    assert "<title>%s</title>" % html.escape(title or "t") in page
    root = ET.fromstring(junit.render(r).encode("utf-8"))
    assert len([s for s in root if s.get("name").startswith("host ")]) == len(names)
    assert json.loads(jsondoc.render(r)) == json.loads(json.dumps(r))


# ------------------------------------------------------------------------------------------ module helpers

def test_module_render_is_bytes_and_stable(report):
    a = iommu_report.render(report, ["html", "json", "junit"])
    b = iommu_report.render(json.loads(json.dumps(report)), ["html", "json", "junit"])
    assert a == b and all(isinstance(v, bytes) for v in a.values())
    lone = dict(report, title="x\ud800y")
    assert b"x\xed\xa0\x80y" not in iommu_report.render(lone, ["html"])["html"]   # escaped, never raw
