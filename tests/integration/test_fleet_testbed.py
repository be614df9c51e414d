"""VM definitions and the fleet views on the real test bed, proven against the guests' own QEMU 11.1.

Issue 10, "Done means" on the test bed:

- a libvirt domain XML whose vIOMMU the ``intel`` guest refuses (``aw_bits='48'`` on a 39-bit VT-d)
  and one it accepts, gated through ``ansible_facts | iommu.host.check(vm=xml)`` in a play on that
  guest;
- a placement matrix over all test-bed guests (``intel``, ``intel-sm``, ``amd``, ``none``): the facts
  are gathered once into a jsonfile fact cache, then ``hostvars | iommu.host.placement(vms)`` runs
  on the controller from that cache with an inventory whose addresses reach nothing (so it touches
  no host), and every cell is compared with what QEMU 11.1 in that guest answers for the same VM
  definition (``iommu.host.qemu_probe`` with ``vm:``): a cell fails with a ``refuse`` requirement
  exactly when QEMU does not start the VM;
- the migration pool of the two Intel guests: the largest common ``aw-bits`` is 39, held back by
  the ``intel`` guest, and the 48-bit VM is named with that host as the one that refuses it.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from conftest import run_playbook
from guestops import BIND, NIC, RELEASE

GUESTS = ("intel", "intel-sm", "amd", "none")
pytestmark = [pytest.mark.testbed(*GUESTS), pytest.mark.oracle]

ORACLE = "/usr/local/bin/qemu-11.1"


def domain(name, iommu=None, iommufd=True):
    """A libvirt domain XML assigning the e1000e 0000:00:09.0 (and a vIOMMU when ``iommu`` is given)."""
    drv = "<driver name='vfio' iommufd='%s'/>" % ("yes" if iommufd else "no")
    return textwrap.dedent("""\
        <domain type='kvm'>
          <name>%s</name>
          <memory unit='MiB'>512</memory>
          <os><type arch='x86_64' machine='q35'>hvm</type></os>
          <features><acpi/><ioapic driver='qemu'/></features>
          <devices>
            <hostdev mode='subsystem' type='pci' managed='yes'>
              %s
              <source><address domain='0x0000' bus='0x00' slot='0x09' function='0x0'/></source>
            </hostdev>
            %s
          </devices>
        </domain>
        """) % (name, drv, iommu or "")


VMS = {
    "plain": domain("plain"),
    "intel-39": domain("intel-39", "<iommu model='intel'><driver intremap='on' caching_mode='on' aw_bits='39'/></iommu>"),
    "intel-48": domain("intel-48", "<iommu model='intel'><driver intremap='on' caching_mode='on' aw_bits='48'/></iommu>"),
    "intel-nocm": domain("intel-nocm", "<iommu model='intel'><driver intremap='on' aw_bits='39'/></iommu>"),
    # the same 48-bit scalable-mode VM as a QEMU command line (classic syntax, as a shell would pass it)
    "qemu-sm48": ("/usr/bin/qemu-system-x86_64 -name guest=qemu-sm48 -machine q35 -m 512 "
                  "-device intel-iommu,caching-mode=on,aw-bits=48,scalable-mode=on "
                  "-object iommufd,id=fd0 -device vfio-pci,host=0000:00:09.0,iommufd=fd0"),
}

# What the guests' kernels and QEMU 11.1 decide (checked against the oracle below as well, so that
# a matrix that is wrong in the same way on both sides cannot pass): the 39-bit intel guest refuses
# every 48-bit vIOMMU, the amd guest has no interrupt remapping (iommufd refuses the bind: EPERM),
# the none guest has no IOMMU at all, and caching mode is required everywhere.
EXPECTED = {
    ("plain", "intel"): "pass", ("plain", "intel-sm"): "pass", ("plain", "amd"): "fail", ("plain", "none"): "fail",
    ("intel-39", "intel"): "pass", ("intel-39", "intel-sm"): "pass",
    ("intel-48", "intel"): "fail", ("intel-48", "intel-sm"): "pass",
    ("intel-nocm", "intel"): "fail", ("intel-nocm", "intel-sm"): "fail",
    ("qemu-sm48", "intel"): "fail", ("qemu-sm48", "intel-sm"): "pass",
}
EXPECTED.update(((vm, host), "fail") for vm in VMS for host in ("amd", "none"))
AW_REFUSAL = "vfio %s: Failed to set vIOMMU: aw-bits 48 > host aw-bits 39" % NIC


def _bind(guest):
    """The NIC on vfio-pci; the ``none`` guest has no IOMMU group (vfio-pci cannot take it): left as is."""
    if guest.name == "none":
        res = guest.run("basename $(readlink /sys/bus/pci/devices/%s/driver)" % NIC, timeout=60, check=True)
    else:
        res = guest.run(BIND.format(dev=NIC), timeout=120, check=True)
    return res.stdout.strip()


def dead_inventory(guests, path: Path) -> Path:
    """The same host names, addresses that reach nothing (TEST-NET-1, port 9): whatever runs with this
    inventory can only read the fact cache."""
    hosts = {g: {"ansible_host": "192.0.2.1", "ansible_port": 9, "ansible_user": "nobody"} for g in guests}
    path.write_text(json.dumps({"all": {"children": {"testbed": {"hosts": hosts}}}}))
    return path


@pytest.fixture(scope="module")
def fleet(testbed, tmp_path_factory):
    guests = testbed.boot(*GUESTS)
    work = tmp_path_factory.mktemp("fleet")
    drivers = {}
    try:
        for name, g in guests.items():
            drivers[name] = _bind(g)
        cache = work / "facts"
        env = {"ANSIBLE_CACHE_PLUGIN": "jsonfile", "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(cache),
               "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "0", "ANSIBLE_GATHERING": "explicit"}
        probe_vms = [{"name": k, "vm": v} for k, v in VMS.items()]
        gather = run_playbook([{
            "hosts": "testbed", "gather_facts": False,
            "tasks": [
                {"name": "IOMMU facts", "iommu.host.iommu_facts": {}},
                {"name": "Gate the 48-bit and the 39-bit domain through vm=", "ansible.builtin.set_fact": {
                    "gate48": "{{ ansible_facts | iommu.host.check(vm=vms['intel-48']) }}",
                    "gate39": "{{ ansible_facts | iommu.host.check(vm=vms['intel-39']) }}"}},
                {"name": "Ask QEMU 11.1 about every VM definition", "iommu.host.qemu_probe": {
                    "binary": ORACLE, "migrate": False, "timeout": 120, "vms": "{{ probe_vms }}"}},
            ]}], testbed.inventory(list(GUESTS)), extra_vars={"vms": VMS, "probe_vms": probe_vms},
            env=env, workdir=work)
        assert gather.rc == 0, gather
        # the controller, from the fact cache only
        placed = run_playbook([{
            "hosts": "localhost", "connection": "local", "gather_facts": False,
            "tasks": [
                {"name": "Placement matrix", "ansible.builtin.set_fact": {
                    "matrix": "{{ hostvars | iommu.host.placement(vms.values() | list, hosts=groups['testbed']) }}",
                    "pool": "{{ hostvars | iommu.host.migration_pool(hosts=['intel', 'intel-sm'], "
                            "vms=[vms['intel-39'], vms['intel-48']]) }}"}},
                {"name": "Show them", "ansible.builtin.debug": {"var": "matrix"}},
                {"name": "Fleet report of the test bed", "ansible.builtin.include_role": {"name": "iommu.host.report"},
                 "vars": {"report_dir": str(work / "report"), "report_hosts": "{{ groups['testbed'] }}",
                          "report_vms": "{{ vms.values() | list }}",
                          "report_pools": {"intel guests": ["intel", "intel-sm"]},
                          "report_title": "iommu.host test bed"}},
            ]}], dead_inventory(GUESTS, work / "dead.json"), extra_vars={"vms": VMS}, env=env, workdir=work)
        assert placed.rc == 0, placed
        yield {"guests": guests, "drivers": drivers, "gather": gather, "placed": placed, "report": work / "report"}
    finally:
        for g in guests.values():
            if g.is_running():
                g.run(RELEASE.format(dev=NIC), timeout=120)


def _fact(result, host, task, name):
    return result.result(host, task)["ansible_facts"][name]


def test_bound_where_an_iommu_exists(fleet):
    assert fleet["drivers"] == {"intel": "vfio-pci", "intel-sm": "vfio-pci", "amd": "vfio-pci", "none": "e1000e"}


def test_domain_xml_gated_through_vm_on_the_intel_guest(fleet):
    """aw_bits='48' refused on the 39-bit VT-d with QEMU 11.1's own words, aw_bits='39' accepted."""
    task = "Gate the 48-bit and the 39-bit domain through vm="
    gate48 = _fact(fleet["gather"], "intel", task, "gate48")
    gate39 = _fact(fleet["gather"], "intel", task, "gate39")
    assert gate48["status"] == "fail", gate48
    refusals = [f for f in gate48["findings"] if f["status"] == "fail" and f["qemu_effect"] == "refuse"]
    assert [f["id"] for f in refusals] == ["viommu.intel.aw_bits"], refusals
    assert AW_REFUSAL.replace(NIC, refusals[0]["device"]) in refusals[0]["message"], refusals[0]
    assert refusals[0]["device"] == NIC
    assert gate39["status"] in ("pass", "warn"), gate39
    assert not [f for f in gate39["findings"] if f["status"] == "fail"], gate39
    # and the intel-sm guest (48-bit) accepts the 48-bit domain
    assert _fact(fleet["gather"], "intel-sm", task, "gate48")["status"] in ("pass", "warn")
    # QEMU in the intel guest agrees, word for word
    probes = {r["name"]: r for r in fleet["gather"].result("intel", "Ask QEMU 11.1 about every VM definition")["results"]}
    assert probes["intel-48"]["started"] is False and AW_REFUSAL in probes["intel-48"]["errors"], probes["intel-48"]
    assert probes["intel-39"]["started"] is True, probes["intel-39"]


def test_placement_matrix_over_all_guests(fleet):
    matrix = _fact(fleet["placed"], "localhost", "Placement matrix", "matrix")
    cells = {(c["vm"], c["host"]): c for c in matrix["cells"]}
    names = list(VMS)
    assert sorted(set(v for v, _h in cells)) == sorted(names), sorted(cells)
    assert sorted(set(h for _v, h in cells)) == sorted(GUESTS)
    for key, status in EXPECTED.items():
        assert cells[key]["status"] == status, (key, cells[key])
    assert len(EXPECTED) == len(cells) == len(VMS) * len(GUESTS)
    assert cells[("intel-48", "intel")]["first"]["id"] == "viommu.intel.aw_bits"
    assert AW_REFUSAL in cells[("intel-48", "intel")]["first"]["message"]
    per_vm = dict((v["name"], v) for v in matrix["vms"])
    assert sorted(per_vm["intel-48"]["pass"] + per_vm["intel-48"]["warn"]) == ["intel-sm"], per_vm["intel-48"]


def test_placement_agrees_with_qemu_in_every_guest(fleet):
    """Each cell: the gate predicts a refusal <=> QEMU 11.1 in that guest does not start the VM."""
    matrix = _fact(fleet["placed"], "localhost", "Placement matrix", "matrix")
    cells = {(c["vm"], c["host"]): c for c in matrix["cells"]}
    disagreements = []
    compared = 0
    for host in GUESTS:
        for r in fleet["gather"].result(host, "Ask QEMU 11.1 about every VM definition")["results"]:
            cell = cells[(r["name"], host)]
            first = cell.get("first") or {}
            refused = cell["status"] == "fail" and first.get("qemu_effect") == "refuse"
            compared += 1
            if refused == bool(r["started"]) or r.get("timed_out"):
                disagreements.append("%s on %s: gate %s (%s), QEMU started=%s %s" % (
                    r["name"], host, cell["status"], first.get("message"), r["started"], r.get("errors")))
    assert compared == len(VMS) * len(GUESTS)
    assert not disagreements, "\n".join(disagreements)


def test_migration_pool_of_the_intel_guests(fleet):
    pool = _fact(fleet["placed"], "localhost", "Placement matrix", "pool")
    assert sorted(pool["members"]) == ["intel", "intel-sm"], pool
    aw = pool["models"]["intel-iommu"]["properties"]["aw_bits"]
    assert aw["value"] == 39, aw
    assert [x["host"] for x in aw["limited_by"]] == ["intel"], aw
    assert aw["limited_by"][0]["id"] == "viommu.intel.aw_bits", aw
    over = dict((v["name"], v) for v in pool["vms"])
    assert over["intel-39"]["status"] == "within", over
    assert over["intel-48"]["status"] == "exceeds", over
    assert [r["host"] for r in over["intel-48"]["refused_by"]] == ["intel"], over


def _chromium():
    """Headless Debian chromium through Playwright (as tests/browser/conftest.py; CI=true: fail, not skip)."""
    import os
    import shutil
    exe = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        reason = "playwright is not installed (%s)" % e
    else:
        if os.path.isfile(exe) or shutil.which(exe):
            return sync_playwright, exe
        reason = "%s not found" % exe
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail("browser unavailable (CI=true): %s" % reason, pytrace=False)
    pytest.skip("browser unavailable: %s" % reason)


@pytest.mark.browser
def test_report_of_the_test_bed_in_chromium(fleet):
    """The report role's page over the guests' cached facts, opened from disk in Chromium: the four
    guests, the placement cell intel-48 x intel explaining QEMU's refusal, nothing fetched."""
    import os
    report = json.loads((fleet["report"] / "report.json").read_text())
    assert sorted(h["name"] for h in report["hosts"]) == sorted(GUESTS)
    junit = (fleet["report"] / "report.junit.xml").read_text()
    assert "<testsuite" in junit and "intel-48" in junit
    sync_playwright, exe = _chromium()
    html = fleet["report"] / "report.html"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True,
                                     args=["--no-sandbox"] if os.geteuid() == 0 else [])
        try:
            page = browser.new_page()
            errors, requests = [], []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(html.as_uri())
            page.wait_for_selector("body[data-ready='1']")
            shown = page.eval_on_selector_all("#panel-hosts tbody tr td:first-child", "tds => tds.map(t => t.textContent)")
            assert sorted(shown) == sorted(GUESTS)
            page.click("#tab-placement")
            labels = page.eval_on_selector_all("#panel-placement thead th", "ths => ths.map(th => th.textContent)")
            col = labels.index("intel-48") + 1
            cell = "#panel-placement tbody tr:has(td:text-is('intel')) td:nth-child(%d)" % col
            assert page.get_attribute(cell, "data-status") == "fail"
            page.click(cell)
            assert AW_REFUSAL in page.text_content("#detail")
            page.keyboard.press("Escape")
            # filter the hosts tab down to the Intel guests
            page.click("#tab-hosts")
            page.fill("#panel-hosts input.filter", "intel")
            page.wait_for_selector("#panel-hosts .rows-shown[data-total='2']")
            assert errors == [] and requests == [html.as_uri()]
        finally:
            browser.close()
