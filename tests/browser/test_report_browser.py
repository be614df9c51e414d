# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report opened from disk (file://) in a real headless Chromium: no console error, no
request but the file itself, hostile host names shown as text (never run), a filter and a sort
checked in the DOM, a cell's explanation, the other tabs; and the screenshot of docs/report.md
(written to docs/report.png only with IOMMU_HOST_WRITE_SCREENSHOT=1, so tests leave the tree clean)."""

import json
import os

import pytest

from ansible_collections.iommu.host.plugins.module_utils.report import model
from ansible_collections.iommu.host.plugins.modules import iommu_report
from tests.support import fleet
from tests.unit.test_fleet_placement import domain

pytestmark = pytest.mark.browser

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCREENSHOT = os.path.join(REPO, "docs", "report.png")
HOSTILE = ["</script><script>window.__pwned=1</script>", "<img src=x onerror=\"window.__pwned=2\">"]
ARGV = ("qemu-system-x86_64 -name cli-intel -machine q35,kernel-irqchip=split "
        "-device intel-iommu,caching-mode=on,aw-bits=39 -device vfio-pci,host=00:09.0")


def fleet_hostvars():
    """Hosts named after the test-bed capture and variation their facts come from (hv-<profile>-<variant>),
    two hostile names, and one host without facts."""
    hv = {}
    for variant in ("as_captured", "no_interrupt_remapping", "device_in_use", "dirty_tracking"):
        for profile in fleet.PROFILES:
            hv["hv-%s-%s" % (profile, variant.replace("_", "-"))] = {
                "ansible_facts": {"iommu": fleet.host_facts(profile, variant)}}
    for name in HOSTILE:
        hv[name] = {"ansible_facts": {"iommu": fleet.host_facts("amd-vfio")}}
    hv["hv-new-uncached"] = {}
    return hv


def build_report():
    hv = fleet_hostvars()
    vms = {"web-39": domain("web-39", aw=39), "db-48": domain("db-48", aw=48),
           "virtio": domain("virtio", model="virtio"), "cli-intel": ARGV}
    pools = {"intel-rack": [h for h in hv if h.startswith("hv-intel") and "vfio" in h],
             "mixed": [h for h in hv if h.endswith("as-captured")]}
    return model.build(hv, profiles=["passthrough", "live_migration"], vms=vms, pools=pools,
                       title="IOMMU fleet report - test bed captures")


@pytest.fixture(scope="module")
def report_files(tmp_path_factory):
    report = build_report()
    out = tmp_path_factory.mktemp("report")
    for fmt, data in iommu_report.render(report, ["html", "json", "junit"]).items():
        (out / iommu_report.FILES[fmt]).write_bytes(data)
    return report, out / "report.html"


def open_report(page, path, hash_=""):
    url = path.as_uri() + hash_
    page.page.goto(url)
    page.page.wait_for_selector("body[data-ready='1']")
    return url


def rows(page, panel):
    return page.page.eval_on_selector_all(
        "#panel-%s tbody tr" % panel, "trs => trs.map(tr => Array.from(tr.children).map(td => "
        "[td.textContent, td.dataset.status || null]))")


def header_index(page, panel, label):
    labels = page.page.eval_on_selector_all("#panel-%s thead th" % panel, "ths => ths.map(th => th.textContent)")
    return labels.index(label)


def test_report_opens_from_disk_without_errors_or_requests(page, report_files):
    report, path = report_files
    url = open_report(page, path)
    assert page.errors == [] and [m for m in page.console if m[0] in ("error", "warning")] == []
    assert page.requests == [url]                       # the file itself, nothing else
    assert page.page.evaluate("window.__pwned") is None
    shown = rows(page, "hosts")
    assert len(shown) == len(report["hosts"]) and [r[0][0] for r in shown] == [h["name"] for h in report["hosts"]]
    for name in HOSTILE:
        assert name in [r[0][0] for r in shown]         # as text
    assert page.page.locator("#panel-hosts img").count() == 0
    assert page.page.title() == report["title"]


def test_filter_and_sort(page, report_files):
    report, path = report_files
    open_report(page, path)
    p = page.page
    # filter: host names with "amd-vfio" (messages never contain it)
    p.fill("#panel-hosts input.filter", "amd-vfio")
    want = [h["name"] for h in report["hosts"] if "amd-vfio" in h["name"]]
    p.wait_for_selector("#panel-hosts .rows-shown[data-total='%d']" % len(want))
    assert sorted(r[0][0] for r in rows(page, "hosts")) == sorted(want)
    assert "filtered from %d" % len(report["hosts"]) in p.text_content("#panel-hosts .rows-shown")
    # status filter on top: amd-vfio hosts that fail
    p.select_option("#panel-hosts select.status", "0")
    failing = [h["name"] for h in report["hosts"] if "amd-vfio" in h["name"] and h["status"] == "fail"]
    assert [r[0][0] for r in rows(page, "hosts")] == failing
    p.select_option("#panel-hosts select.status", "")
    p.fill("#panel-hosts input.filter", "")
    p.wait_for_selector("#panel-hosts .rows-shown[data-total='%d']" % len(report["hosts"]))
    # sort by a requirement: failures first, then warnings, passes...; again: the reverse
    col = header_index(page, "hosts", "host.interrupt_remapping")
    p.click("#panel-hosts thead th:nth-child(%d) button" % (col + 1))
    order = ["fail", "warn", "pass", "not applicable", "not evaluated"]
    statuses = [r[col][1] for r in rows(page, "hosts")]
    assert statuses == sorted(statuses, key=order.index) and statuses[0] == "fail"
    cell = dict((h["name"], h["cells"]["host.interrupt_remapping"]["status"]) for h in report["hosts"])
    first = rows(page, "hosts")[0][0][0]
    assert cell[first] == "fail"
    assert p.get_attribute("#panel-hosts thead th:nth-child(%d)" % (col + 1), "aria-sort") == "ascending"
    p.click("#panel-hosts thead th:nth-child(%d) button" % (col + 1))
    statuses = [r[col][1] for r in rows(page, "hosts")]
    assert statuses == sorted(statuses, key=order.index, reverse=True)
    # sort by host name
    p.click("#panel-hosts thead th:nth-child(1) button")
    names = [r[0][0] for r in rows(page, "hosts")]
    plain = [n for n in names if n.startswith("hv-")]
    assert plain == sorted(plain)
    # a cell explains itself: message, remedy, evidence
    p.click("#panel-hosts tbody tr:has(td:text-is('hv-amd-vfio-as-captured')) td:nth-child(%d)" % (col + 1))
    assert p.is_visible("#detail")
    host = [h for h in report["hosts"] if h["name"] == "hv-amd-vfio-as-captured"][0]
    finding = report["findings"][host["cells"]["host.interrupt_remapping"]["findings"][0]]
    text = p.text_content("#detail")
    assert finding["message"] in text and finding["remedy"] in text and "evidence" in text
    title = p.get_attribute("#panel-hosts tbody tr:has(td:text-is('hv-amd-vfio-as-captured')) td:nth-child(%d)"
                            % (col + 1), "title")
    assert finding["message"] in title
    p.keyboard.press("Escape")
    assert not p.is_visible("#detail")
    assert page.errors == [] and [m for m in page.console if m[0] == "error"] == []


def test_placement_vms_and_pools_tabs(page, report_files):
    report, path = report_files
    open_report(page, path)
    p = page.page
    p.click("#tab-placement")
    shown = rows(page, "placement")
    assert len(shown) == len(report["hosts"])
    col = header_index(page, "placement", "db-48")
    hosts = [h["name"] for h in report["hosts"]]
    matrix = report["placement"]["matrix"]["db-48"]
    for r in shown:
        cell = report["placement"]["cells"][matrix[hosts.index(r[0][0])]]
        assert r[col][1] == cell["status"].replace("_", " ")
    legacy = hosts.index("hv-intel-vfio-as-captured")
    p.click("#panel-placement tbody tr:has(td:text-is('hv-intel-vfio-as-captured')) td:nth-child(%d)" % (col + 1))
    first = report["placement"]["cells"][matrix[legacy]]["first"]
    assert first["id"] == "viommu.intel.aw_bits" and first["message"] in p.text_content("#detail")
    p.keyboard.press("Escape")
    p.click("#tab-vms")
    assert sorted(r[0][0] for r in rows(page, "vms")) == sorted(v["name"] for v in report["vms"])
    p.click("#tab-pools")
    text = p.text_content("#panel-pools")
    assert "Pool intel-rack" in text and "Pool mixed" in text
    rack = report["pools"][0]
    assert rack["models"]["intel-iommu"]["properties"]["aw_bits"]["value"] == 39
    aw = p.locator("#panel-pools .pool >> nth=0").locator("tr:has(td:text-is('aw_bits (aw_bits)'))")
    assert aw.locator("td >> nth=2").text_content() == "39"
    assert "hv-intel-vfio" in aw.text_content()
    # a VM exceeding the pool, with the hosts that refuse it and why
    db = [v for v in rack["vms"] if v["name"] == "db-48"][0]
    assert db["status"] == "exceeds"
    row = p.locator("#panel-pools .pool >> nth=0").locator(".pool-vms tr:has(td:text-is('db-48'))")
    assert row.locator("td >> nth=2").text_content() == "exceeds"
    row.locator(".why >> nth=0").click()
    detail = p.text_content("#detail")
    assert db["refused_by"][0]["message"] in detail and db["refused_by"][0]["hosts"][0] in detail
    p.keyboard.press("Escape")
    assert page.errors == [] and [m for m in page.console if m[0] == "error"] == []
    assert all(u.startswith("file://") for u in page.requests)


def test_screenshot(page, report_files, tmp_path):
    """The picture in docs/report.md: the hosts tab sorted by interrupt remapping with a failing cell opened."""
    _report, path = report_files
    open_report(page, path)
    p = page.page
    col = header_index(page, "hosts", "host.interrupt_remapping")
    p.click("#panel-hosts thead th:nth-child(%d) button" % (col + 1))
    p.click("#panel-hosts tbody tr:has(td:text-is('hv-amd-vfio-as-captured')) td:nth-child(%d)" % (col + 1))
    target = SCREENSHOT if os.environ.get("IOMMU_HOST_WRITE_SCREENSHOT") == "1" else str(tmp_path / "report.png")
    p.screenshot(path=target)
    with open(target, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(head[16:20], "big") == 1400
    assert os.path.isfile(SCREENSHOT), "docs/report.png is committed (IOMMU_HOST_WRITE_SCREENSHOT=1 writes it)"


def test_report_json_matches_the_page(page, report_files):
    report, path = report_files
    open_report(page, path)
    data = page.page.evaluate("JSON.parse(document.getElementById('report-data').textContent)")
    assert [data["S"][h[0]] for h in data["H"]] == [h["name"] for h in report["hosts"]]
    assert json.loads((path.parent / "report.json").read_text())["summary"] == report["summary"]
