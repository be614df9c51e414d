"""vfio-pci's ats property (new in QEMU 11.1): the gate's device.vfio_ats against QEMU 11.1.3 and 10.0.13.

In the ``intel`` guest (VT-d, Linux 7.3.4) the e1000e at 0000:00:09.0 has no ATS extended capability
and the kernel reports IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED for it. For ats=on/auto/off, with the
iommufd backend and the legacy container, each oracle QEMU of the root is started (no vIOMMU; q35
under TCG; ``-S``, QMP, quit: tests/testbed/probe_batch.py) with the arguments qemu_probe.build_argv
makes from the gate's parameters, and the gate's verdict (policy.api.evaluate with the facts
iommu_facts gathered in the guest) must agree: QEMU refused <=> a failing 'refuse' finding quoting
QEMU's error line (test_oracle_matrix.compare). What QEMU 11.1.3 does (hw/vfio/pci.c, read from
Debian's binary; see docs/preflight.md, device.vfio_ats):

- iommufd, ats=on: realize fails, "vfio-pci: ATS requested but not supported by kernel";
- legacy container, ats=on: starts with the warning "vfio-pci: ats=on requested, but host device
  has no ATS extended capability" (the legacy HostIOMMUDevice reports nothing about ATS);
- ats=auto / ats=off: starts (nothing to mask: the device has no ATS capability);
- QEMU 10.0.13: "Property 'vfio-pci.ats' not found" for every value.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from guestops import NIC

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "testbed"))
import oracle  # noqa: E402
import probe_batch  # noqa: E402
from test_oracle_matrix import SETUP, TEARDOWN, Config, _conftest, compare  # noqa: E402

from ansible_collections.iommu.host.plugins.module_utils import qemu_probe  # noqa: E402
from ansible_collections.iommu.host.plugins.module_utils.policy import api as policy  # noqa: E402

pytestmark = [pytest.mark.testbed("intel"), pytest.mark.oracle]

RELEASES = ("11.1", "10.0")
BACKENDS = (("iommufd", True), ("legacy", False))
VALUES = ("on", "auto", "off")
ROWS = [(rel, be, ats) for rel in RELEASES for be in BACKENDS for ats in VALUES]
REFUSAL_11 = "vfio %s: vfio-pci: ATS requested but not supported by kernel" % NIC
NO_CAP_WARNING = "warning: vfio-pci: ats=on requested, but host device has no ATS extended capability"
NOT_FOUND = "Property 'vfio-pci.ats' not found"
FACTS_PLAY = {"name": "facts", "hosts": "intel", "gather_facts": False,
              "tasks": [{"name": "gather", "iommu.host.iommu_facts": {}}]}


@pytest.fixture(scope="module")
def probed(request, testbed, tmp_path_factory):
    """{(release, backend, ats): (verdict, probe result)}: one fact gathering and one probe batch."""
    run_playbook = _conftest(request).run_playbook
    guest = testbed["intel"]
    guest.run(SETUP % NIC, timeout=180, check=True)
    try:
        result = run_playbook(FACTS_PLAY, testbed.inventory(["intel"]), workdir=tmp_path_factory.mktemp("ats"))
        assert result.rc == 0, result
        facts = result.result("intel", "gather")["ansible_facts"]["iommu"]
        legacy = guest.run("test -c /dev/vfio/vfio", timeout=60).rc == 0
        jobs, keys = [], []
        out = {}
        for rel, (be, iommufd), ats in ROWS:
            params = {"qemu_version": rel, "iommufd": iommufd, "vfio_ats": ats}
            verdict = policy.evaluate(facts, ["passthrough"], [NIC], host="intel", params=params)
            if not iommufd and not legacy:
                out[(rel, be, ats)] = (verdict, None)
                continue
            values = policy.resolve_profiles(["passthrough"], params)[1]
            argv = qemu_probe.build_argv(values, [NIC])
            backend = ",iommufd=" + qemu_probe.IOMMUFD_ID if iommufd else ""
            assert "vfio-pci,host=%s%s,ats=%s" % (NIC, backend, ats) in argv, argv
            jobs.append({"binary": oracle.oracles(guest)[rel].wrapper, "argv": argv, "migrate": False})
            keys.append((rel, be, ats, verdict))
        for (rel, be, ats, verdict), res in zip(keys, probe_batch.run_batch(guest, jobs)):
            out[(rel, be, ats)] = (verdict, res)
        hw = facts["devices"][NIC]["hw_info"]
        out["hw_info"] = hw
        return out
    finally:
        guest.run(TEARDOWN % NIC, timeout=180)


def test_guest_reports_ats_not_supported(probed):
    """The premise: Linux 7.3.4 reports ATS unusable for the e1000e (it has no ATS capability)."""
    caps = probed["hw_info"]["capabilities"]
    assert caps["ats_not_supported"] is True and caps["reported_by_kernel"]["ats_not_supported"] is True, caps


@pytest.mark.parametrize("release,backend,ats", [(r, b[0], a) for r, b, a in ROWS])
def test_gate_agrees_with_qemu_on_vfio_ats(probed, release, backend, ats):
    verdict, res = probed[(release, backend, ats)]
    if res is None:
        pytest.skip("the intel guest's kernel has no legacy VFIO container")
    assert not res.get("timed_out"), res
    assert res["qemu_version"] is None or res["qemu_version"].startswith(release + "."), res
    cfg = Config("vfio-pci ats=%s, %s" % (ats, backend), "intel", ["passthrough"])
    problems = compare(cfg, verdict, res)
    finding = [f for f in verdict["findings"] if f["id"] == "device.vfio_ats"][0]
    assert not problems, (problems, res, finding)
    # QEMU's own outcome, row by row (golden: what QEMU 11.1.3 / 10.0.13 printed in the test bed)
    if release == "10.0":
        assert not res["started"] and res["errors"] == [NOT_FOUND], res
        assert finding["status"] == "fail" and "\"%s\"" % NOT_FOUND in finding["message"], finding
    elif backend == "iommufd" and ats == "on":
        assert not res["started"] and res["errors"] == [REFUSAL_11], res
        assert finding["status"] == "fail" and finding["qemu_effect"] == "refuse"
        assert "\"%s\"" % REFUSAL_11 in finding["message"], finding
    else:
        assert res["started"] and res["errors"] == [], res
        assert finding["status"] == "pass", finding
        ats_warnings = [w for w in res["warnings"] if "ATS" in w or "ats=" in w]
        if backend == "legacy" and ats == "on":
            assert ats_warnings == [NO_CAP_WARNING], res
            assert NO_CAP_WARNING[len("warning: "):] in finding["message"], finding
        else:
            assert ats_warnings == [], res
