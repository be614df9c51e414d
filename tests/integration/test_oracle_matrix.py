"""The differential suite: every gate verdict against QEMU 10.0 and 11.1 run in the test-bed guests.

Issue 9. In the ``intel`` (VT-d legacy mode, 39-bit), ``intel-sm`` (scalable mode, 48-bit) and
``amd`` (AMD-Vi without interrupt remapping) guests, the e1000e 0000:00:09.0 and the other test
devices are bound to vfio-pci, the facts are gathered once per guest through ansible-playbook
(iommu.host.iommu_facts), and then for each configuration (CONFIGS) and each oracle release:

- the gate's verdict is computed locally: policy.api.evaluate(facts, profiles, devices,
  params + qemu_version=<the oracle's release>);
- the QEMU arguments are built from the same resolved parameters (qemu_probe.build_argv) and the
  oracle QEMU of the guest's root is started with them (qemu_probe.probe, run in the guest by
  tests/testbed/probe_batch.py: ``-S``, QMP qmp_capabilities, migrate to ``exec:cat > /dev/null``,
  quit);
- the test asserts that QEMU refused <=> the gate has a failing finding with qemu_effect 'refuse',
  that QEMU's own error line appears in one of those findings' messages (only the guest BDF
  placeholder and fd numbers normalised), and, for the live_migration rows, that migration was
  blocked <=> the gate has a 'block_migration' failure quoting QEMU's blocker.

All probes of one guest run in one SSH call, the three guests in parallel. With
IOMMU_HOST_WRITE_MATRIX=1 the run writes docs/qemu-matrix.md from the results.
"""
from __future__ import annotations

import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from guestops import NIC, bind_vfio

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "testbed"))
import oracle  # noqa: E402
import probe_batch  # noqa: E402

from ansible_collections.iommu.host.plugins.module_utils import qemu_probe  # noqa: E402
from ansible_collections.iommu.host.plugins.module_utils.policy import api as policy  # noqa: E402

GUESTS = ("intel", "intel-sm", "amd")
pytestmark = [pytest.mark.testbed(*GUESTS), pytest.mark.oracle]

RELEASES = ("10.0", "11.1")
HELD = "0000:00:08.0"       # intel guest: a python3 process holds its VFIO cdev open (no bind)
BUSY = "0000:00:08.0"       # intel-sm guest: a paused QEMU 11.1 has bound it to its iommufd
SHARED = "0000:02:01.0"     # e1000 behind a PCIe-to-PCI bridge; 0000:02:02.0 stays on e1000
MDEV = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"   # an mtty-2 mdev in the intel guest
MATRIX_DOC = REPO / "docs" / "qemu-matrix.md"


@dataclass
class Config:
    name: str
    guest: str
    profiles: list
    params: dict = field(default_factory=dict)
    pci: list = field(default_factory=lambda: [NIC])
    mdevs: list = field(default_factory=list)
    note: str = ""

    @property
    def devices(self):
        return list(self.pci) + list(self.mdevs)

    @property
    def migration(self):
        return "live_migration" in self.profiles


PT = ["passthrough"]
INTEL = ["intel_viommu"]
LM = ["live_migration"]
CM39 = {"caching_mode": True, "aw_bits": 39}
CM48 = {"caching_mode": True, "aw_bits": 48}
SM11 = dict(CM48, scalable_mode=True)
SM10 = dict(CM48, x_scalable_mode=True)

CONFIGS = [
    # no vIOMMU
    Config("none, iommufd", "intel", PT),
    Config("none, legacy container", "intel", PT, {"iommufd": False}),
    # intel-iommu: caching mode and address width
    Config("intel-iommu caching-mode=on aw-bits=39", "intel", INTEL, CM39),
    Config("intel-iommu caching-mode=off aw-bits=39", "intel", INTEL, {"caching_mode": False, "aw_bits": 39}),
    Config("intel-iommu caching-mode=on aw-bits=39, legacy", "intel", INTEL, dict(CM39, iommufd=False)),
    Config("intel-iommu caching-mode=off, legacy", "intel", INTEL,
           {"caching_mode": False, "aw_bits": 39, "iommufd": False}),
    Config("intel-iommu caching-mode=on aw-bits=48 (39-bit host)", "intel", INTEL, CM48),
    Config("intel-iommu caching-mode=on aw-bits=48 (39-bit host), legacy", "intel", INTEL,
           dict(CM48, iommufd=False)),
    Config("intel-iommu caching-mode=on aw-bits=48 (48-bit host)", "intel-sm", INTEL, CM48),
    Config("intel-iommu caching-mode=on aw-bits=39 (48-bit host)", "intel-sm", INTEL, CM39),
    Config("intel-iommu caching-mode=on (default aw-bits)", "intel", INTEL, {"caching_mode": True}),
    # scalable mode, both spellings
    Config("intel-iommu scalable-mode=on", "intel-sm", INTEL, SM11),
    Config("intel-iommu x-scalable-mode=on", "intel-sm", INTEL, SM10),
    Config("intel-iommu scalable-mode=on aw-bits=39 (39-bit host)", "intel", INTEL, dict(CM39, scalable_mode=True)),
    # first-stage translation
    Config("intel-iommu scalable-mode=on fsts=on", "intel-sm", INTEL, dict(SM11, fsts=True)),
    Config("intel-iommu x-scalable-mode=on x-flts=on", "intel-sm", INTEL, dict(SM10, x_flts=True)),
    Config("intel-iommu fsts=on without scalable mode", "intel-sm", INTEL, dict(CM48, fsts=True)),
    Config("intel-iommu x-flts=on without scalable mode", "intel-sm", INTEL, dict(CM48, x_flts=True)),
    Config("intel-iommu scalable-mode=on fsts=on, legacy", "intel-sm", INTEL, dict(SM11, fsts=True, iommufd=False)),
    Config("intel-iommu x-scalable-mode=on x-flts=on, legacy", "intel-sm", INTEL,
           dict(SM10, x_flts=True, iommufd=False)),
    Config("intel-iommu scalable-mode=on fsts=on aw-bits=39", "intel", INTEL,
           dict(CM39, scalable_mode=True, fsts=True)),
    Config("intel-iommu x-scalable-mode=on x-flts=on aw-bits=39", "intel", INTEL,
           dict(CM39, x_scalable_mode=True, x_flts=True)),
    # PASID
    Config("intel-iommu x-scalable-mode=on x-pasid-mode=on", "intel-sm", INTEL, dict(SM10, x_pasid_mode=True)),
    Config("intel-iommu scalable-mode=on pasid-bits=8", "intel-sm", INTEL, dict(SM11, pasid_bits=8)),
    Config("intel-iommu pasid-bits=8 without scalable mode", "intel-sm", INTEL, dict(CM48, pasid_bits=8)),
    Config("intel-iommu scalable-mode=on fsts=on pasid-bits=8", "intel-sm", INTEL,
           dict(SM11, fsts=True, pasid_bits=8)),
    # snoop control, svm
    Config("intel-iommu snoop-control=on", "intel-sm", INTEL, dict(CM48, snoop_control=True)),
    Config("intel-iommu scalable-mode=on svm=on", "intel-sm", INTEL, dict(SM11, svm=True)),
    Config("intel-iommu scalable-mode=on fsts=on svm=on", "intel-sm", INTEL, dict(SM11, fsts=True, svm=True)),
    # amd-iommu (the vIOMMU is emulated: QEMU compares nothing with the host, so the VT-d guests serve)
    Config("amd-iommu", "intel-sm", ["amd_viommu"]),
    Config("amd-iommu dma-remap=on", "intel-sm", ["amd_viommu"], {"dma_remap": True}),
    Config("amd-iommu dma-remap=on pci-id", "intel-sm", ["amd_viommu"], {"dma_remap": True, "pci_id": "iommupci"}),
    Config("amd-iommu, legacy", "intel-sm", ["amd_viommu"], {"iommufd": False}),
    # virtio-iommu
    Config("virtio-iommu granule=4k", "intel-sm", ["virtio_viommu"], {"granule": "4k"}),
    Config("virtio-iommu granule=64k", "intel-sm", ["virtio_viommu"], {"granule": "64k"}),
    Config("virtio-iommu granule=host", "intel-sm", ["virtio_viommu"], {"granule": "host"}),
    # live migration
    Config("migration: e1000e on vfio-pci", "intel", LM),
    Config("migration: e1000e enable-migration=on", "intel", LM, {"enable_migration": "on"}),
    Config("migration: e1000e enable-migration=off", "intel", LM, {"enable_migration": "off"}),
    Config("migration: e1000e, legacy", "intel", LM, {"iommufd": False}),
    Config("migration: mtty mdev", "intel", LM, pci=[], mdevs=[MDEV]),
    Config("migration: mtty mdev enable-migration=on", "intel", LM, {"enable_migration": "on"}, pci=[],
           mdevs=[MDEV]),
    Config("migration: mtty mdev, legacy", "intel", LM, {"iommufd": False}, pci=[], mdevs=[MDEV]),
    Config("migration: e1000e + mtty mdev", "intel", LM, pci=[NIC], mdevs=[MDEV]),
    Config("migration: e1000e behind intel-iommu", "intel", LM + INTEL, CM39),
    # vfio-pci ats (QEMU 11.1+; 10.0: "Property 'vfio-pci.ats' not found"); the e1000e has no ATS capability and
    # Linux 7.3.4 reports ATS_NOT_SUPPORTED for it (tests/integration/test_vfio_ats_oracle.py has every row)
    Config("vfio-pci ats=on", "intel", PT, {"vfio_ats": "on"}),
    Config("vfio-pci ats=on, legacy", "intel", PT, {"vfio_ats": "on", "iommufd": False}),
    Config("vfio-pci ats=auto", "intel", PT, {"vfio_ats": "auto"}),
    # devices in use, groups
    Config("device held open by another process (no bind)", "intel", PT, pci=[HELD]),
    Config("device bound by another running QEMU", "intel-sm", PT, pci=[BUSY]),
    Config("device held open by another process (no bind), legacy", "intel", PT, {"iommufd": False}, pci=[HELD]),
    Config("device bound by another running QEMU, legacy", "intel-sm", PT, {"iommufd": False}, pci=[BUSY]),
    Config("device in a shared group (02:02.0 on e1000)", "intel", PT, pci=[SHARED]),
    Config("device in a shared group (02:02.0 on e1000), legacy", "intel", PT, {"iommufd": False}, pci=[SHARED]),
    # host without interrupt remapping
    Config("amd host: no vIOMMU, iommufd", "amd", PT),
    Config("amd host: no vIOMMU, legacy container", "amd", PT, {"iommufd": False}),
]

# ---------------------------------------------------------------------------
# comparison


_BDF = re.compile(r"\b[0-9a-f]{2}\.[0-9a-f]{2}\.[0-9a-f]\b")


def normalise(text: str) -> str:
    """Only the guest BDF placeholder and fd numbers vary between QEMU's text and the gate's."""
    text = text.replace("%02x.%02x.%x", "BB.DD.F")
    text = _BDF.sub("BB.DD.F", text)
    text = re.sub(r"\bfd=(?:\d+|N)\b", "fd=N", text)
    return re.sub(r"\biommufd=(?:\d+|M)\b", "iommufd=M", text)


def gate_side(verdict) -> dict:
    fails = [f for f in verdict["findings"] if f["status"] == "fail"]
    return {"refuse": [f for f in fails if f["qemu_effect"] == "refuse"],
            "block": [f for f in fails if f["qemu_effect"] == "block_migration"],
            "other_fail": [f for f in fails if f["qemu_effect"] not in ("refuse", "block_migration")]}


def compare(cfg: Config, verdict: dict, res: dict) -> list:
    """Disagreements between the gate and QEMU for one row (empty: they agree)."""
    side = gate_side(verdict)
    problems = []
    errors = list(res["errors"])
    if not res["started"]:
        if res.get("timed_out"):
            problems.append("QEMU timed out")
        if not side["refuse"]:
            problems.append("QEMU refused (%s); the gate predicts it starts" % " | ".join(errors))
        else:
            msgs = [normalise(f["message"]) for f in side["refuse"]]
            if not any(normalise(e) in m for e in errors for m in msgs):
                problems.append("QEMU's words %r are in no refuse finding (%s)" % (
                    errors, "; ".join("%s: %s" % (f["id"], f["message"]) for f in side["refuse"])))
    else:
        if side["refuse"]:
            problems.append("QEMU started; the gate predicts a refusal: %s" % "; ".join(
                "%s: %s" % (f["id"], f["message"]) for f in side["refuse"]))
        if cfg.migration:
            if res["migration"] == "blocked":
                if not side["block"]:
                    problems.append("QEMU blocks migration (%s); the gate predicts it migrates" % res["blocker"])
                elif not any(normalise(res["blocker"] or "") in normalise(f["message"]) for f in side["block"]):
                    problems.append("QEMU's blocker %r is in no block_migration finding (%s)" % (
                        res["blocker"], "; ".join("%s: %s" % (f["id"], f["message"]) for f in side["block"])))
            elif res["migration"] == "allowed" and side["block"]:
                problems.append("QEMU allows migration; the gate predicts a blocker: %s" % "; ".join(
                    "%s: %s" % (f["id"], f["message"]) for f in side["block"]))
    return problems


# ---------------------------------------------------------------------------
# guest setup


SETUP = r"""
set -e
bind() {
  d=/sys/bus/pci/devices/$1
  if [ "$(basename "$(readlink $d/driver 2>/dev/null)")" != vfio-pci ]; then
    echo vfio-pci > $d/driver_override
    if [ -e $d/driver ]; then echo $1 > $d/driver/unbind; fi
    echo $1 > /sys/bus/pci/drivers_probe
  fi
  test "$(basename "$(readlink $d/driver)")" = vfio-pci
}
for dev in %s; do bind $dev; done
"""

TEARDOWN = r"""
for dev in %s; do
  d=/sys/bus/pci/devices/$dev
  if [ "$(basename "$(readlink $d/driver 2>/dev/null)")" = vfio-pci ]; then
    echo > $d/driver_override; echo $dev > $d/driver/unbind; echo $dev > /sys/bus/pci/drivers_probe
  fi
done
true
"""

BOUND = {"intel": [NIC, HELD, SHARED], "intel-sm": [NIC, BUSY], "amd": [NIC]}


def _conftest(request):
    for plugin in request.config.pluginmanager.get_plugins():
        if str(getattr(plugin, "__file__", "")).endswith(os.path.join("integration", "conftest.py")):
            return plugin
    raise RuntimeError("tests/integration/conftest.py not loaded")


def prepare(guest):
    guest.run(SETUP % " ".join(BOUND[guest.name]), timeout=180, check=True)
    if guest.name == "intel":
        probe_batch.create_mdev(guest, MDEV)
        probe_batch.start_holder(guest, HELD, "held")
    if guest.name == "intel-sm":
        probe_batch.start_holder(guest, BUSY, "busy", qemu=oracle.oracles(guest)["11.1"].wrapper)


def release(guest):
    probe_batch.stop_holder(guest, "held")
    probe_batch.stop_holder(guest, "busy")
    probe_batch.remove_mdev(guest, MDEV)
    guest.run(TEARDOWN % " ".join(BOUND[guest.name]), timeout=180)


FACTS_PLAY = {"name": "facts", "hosts": ",".join(GUESTS), "gather_facts": False,
              "tasks": [{"name": "gather", "iommu.host.iommu_facts": {}}]}


@dataclass
class Row:
    cfg: Config
    release: str
    argv: list
    verdict: dict
    result: dict
    problems: list
    skipped: str = ""

    @property
    def gate_words(self):
        side = gate_side(self.verdict)
        if side["refuse"]:
            return "refuse: " + " / ".join("%s %s" % (f["id"], f["message"]) for f in side["refuse"])
        warns = [f for f in self.verdict["findings"] if f["status"] == "warn"]
        note = (" (warn: %s)" % ", ".join(sorted(set(f["id"] for f in warns)))) if warns else ""
        if self.cfg.migration and side["block"]:
            return "starts%s, migration blocked: " % note + " / ".join(
                "%s %s" % (f["id"], f["message"]) for f in side["block"])
        return "starts" + note + (", migrates" if self.cfg.migration else "")

    @property
    def qemu_words(self):
        if self.skipped:
            return "not run: %s" % self.skipped
        r = self.result
        if not r["started"]:
            return "refused: " + " | ".join(r["errors"] or ["(no message)"])
        if self.cfg.migration:
            return "started, migration %s%s" % (r["migration"], ": " + r["blocker"] if r["blocker"] else "")
        return "started"


def build_matrix(guests, run_playbook, inventory, workdir, boot_seconds=None) -> dict:
    """Probe and gate every configuration x release in ``guests`` ({name: Guest}, booted)."""
    t0 = time.time()
    timings = {"boot": boot_seconds}
    with ThreadPoolExecutor(len(guests)) as pool:
        list(pool.map(prepare, guests.values()))
    try:
        t1 = time.time()
        result = run_playbook(FACTS_PLAY, inventory, workdir=workdir)
        assert result.rc == 0, result
        facts = {g: result.result(g, "gather")["ansible_facts"]["iommu"] for g in GUESTS}
        timings["facts"] = round(time.time() - t1, 1)
        # the legacy VFIO container (type1) exists when the kernel has CONFIG_VFIO_CONTAINER (and not
        # IOMMUFD_VFIO_CONTAINER's emulation): /dev/vfio/vfio
        legacy = {g: guests[g].run("test -c /dev/vfio/vfio", timeout=60).rc == 0 for g in GUESTS}
        skipped = {}
        jobs = {g: [] for g in GUESTS}
        for cfg in CONFIGS:
            if cfg.params.get("iommufd") is False and not legacy[cfg.guest]:
                for rel in RELEASES:
                    skipped[(cfg.name, rel)] = ("the %s guest's kernel has no legacy VFIO container (/dev/vfio/vfio; "
                                                "CONFIG_VFIO_CONTAINER)" % cfg.guest)
                continue
            for rel in RELEASES:
                params = dict(cfg.params, qemu_version=rel)
                verdict = policy.evaluate(facts[cfg.guest], cfg.profiles, cfg.devices, host=cfg.guest,
                                          params=params)
                values = policy.resolve_profiles(cfg.profiles, params)[1]
                argv = qemu_probe.build_argv(values, cfg.pci, cfg.mdevs)
                binary = oracle.oracles(guests[cfg.guest])[rel].wrapper
                jobs[cfg.guest].append((cfg, rel, argv, verdict, {"binary": binary, "argv": argv}))
        t2 = time.time()
        with ThreadPoolExecutor(len(guests)) as pool:
            answers = dict(zip(GUESTS, pool.map(
                lambda g: probe_batch.run_batch(guests[g], [j[4] for j in jobs[g]]), GUESTS)))
        timings["probes"] = round(time.time() - t2, 1)
    finally:
        with ThreadPoolExecutor(len(guests)) as pool:
            list(pool.map(release, guests.values()))
    rows = {}
    for key, why in skipped.items():
        cfg = next(c for c in CONFIGS if c.name == key[0])
        rows[key] = Row(cfg, key[1], [], {"findings": []}, None, [], skipped=why)
    for g in GUESTS:
        for (cfg, rel, argv, verdict, _job), res in zip(jobs[g], answers[g]):
            rows[(cfg.name, rel)] = Row(cfg, rel, argv, verdict, res, compare(cfg, verdict, res))
    timings["total"] = round(time.time() - t0 + (boot_seconds or 0), 1)
    sys.stderr.write("\noracle matrix: %d runs, timings %s\n" % (len(rows), timings))
    if os.environ.get("IOMMU_HOST_WRITE_MATRIX") == "1":
        MATRIX_DOC.write_text(render(rows, facts, guests, timings))
    return rows


@pytest.fixture(scope="module")
def matrix(request, testbed):
    """Every configuration x release, probed and gated: {(config name, release): Row}."""
    t0 = time.time()
    guests = testbed.boot(*GUESTS)
    return build_matrix(guests, _conftest(request).run_playbook, testbed.inventory(list(GUESTS)), testbed.run_dir,
                        round(time.time() - t0, 1))


# ---------------------------------------------------------------------------
# docs/qemu-matrix.md


def _cell(text):
    return (text or "").replace("|", "\\|").replace("\n", " ")


def render(rows, facts, guests, timings) -> str:
    agree = sum(1 for r in rows.values() if not r.problems and not r.skipped)
    lines = [
        "# Gate verdicts against real QEMU releases (the oracle matrix)",
        "",
        "Generated by `IOMMU_HOST_WRITE_MATRIX=1 pytest tests/integration/test_oracle_matrix.py -m oracle`",
        "(issue 9); do not edit by hand. Each row is one VM configuration, started by the oracle QEMU",
        "of the test-bed root inside a test-bed guest (a nested TCG QEMU with `-S`, QMP",
        "`qmp_capabilities`, `migrate` to `exec:cat > /dev/null`, `quit`), and gated by",
        "`policy.api.evaluate` with the facts iommu_facts gathered in that guest and `qemu_version` set",
        "to the oracle's release. The test fails on any disagreement.",
        "",
        "Guests (tests/testbed/testbed.py profiles, Linux 7.3): `intel` VT-d legacy mode, 39-bit;",
        "`intel-sm` VT-d scalable mode, 48-bit; `amd` AMD-Vi without interrupt remapping. Devices:",
        "`%s` e1000e on vfio-pci (idle); in `intel`, `%s` on vfio-pci held open by a python3" % (NIC, HELD),
        "process (no iommufd bind), `%s` on vfio-pci with `0000:02:02.0` still on e1000 (shared" % SHARED,
        "group), mtty mdev `%s` (mtty-2); in `intel-sm`, `%s` bound by a paused QEMU 11.1." % (MDEV, BUSY),
        "",
        "Oracles: %s." % ", ".join("QEMU %s (Debian %s, %s)" % (o.version, o.debian, o.suite)
                                   for o in oracle.oracles(guests["intel"]).values()),
        "",
        "**%d of %d rows agree.** Last run: boot %ss, facts %ss, probes %ss (three guests in parallel), "
        "total %ss." % (agree, len(rows), timings.get("boot"), timings.get("facts"), timings.get("probes"),
                        timings.get("total")),
        "",
        "| configuration | guest | QEMU | QEMU's outcome and message | gate's verdict | agree |",
        "|---|---|---|---|---|---|",
    ]
    for cfg in CONFIGS:
        for rel in RELEASES:
            r = rows[(cfg.name, rel)]
            verdict = ("skipped" if r.skipped else "yes" if not r.problems else
                       "**no**: " + _cell("; ".join(r.problems)))
            lines.append("| %s | %s | %s | %s | %s | %s |" % (
                _cell(cfg.name), cfg.guest, (r.result or {}).get("qemu_version") or rel, _cell(r.qemu_words),
                _cell(r.gate_words), verdict))
    lines += ["", "## QEMU arguments", "",
              "`qemu-<release>` stands for the oracle's wrapper; `build_argv` (plugins/module_utils/qemu_probe.py)",
              "made them from the gate's resolved parameters.", ""]
    for cfg in CONFIGS:
        for rel in RELEASES:
            r = rows[(cfg.name, rel)]
            if not r.skipped:
                lines.append("- %s, %s: `qemu-%s %s`" % (cfg.name, rel, rel, " ".join(r.argv)))
    lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# the tests


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("name", [c.name for c in CONFIGS])
def test_gate_agrees_with_qemu(matrix, name, release):
    row = matrix[(name, release)]
    if row.skipped:
        # the test-bed kernel has CONFIG_VFIO_CONTAINER=y (VFIO's default, not turned off by
        # tests/testbed/kernel.config; /proc/config.gz in the guests): under CI its absence is a broken
        # test bed, not an expected skip
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail("unexpected skip under CI=true: %s" % row.skipped, pytrace=False)
        pytest.skip(row.skipped)
    assert row.result["qemu_version"] is None or row.result["qemu_version"].startswith(release + "."), row.result
    assert not row.result.get("timed_out"), row.result
    assert not row.problems, "%s on QEMU %s:\n  QEMU: %s\n  gate: %s\n  argv: %s\n  %s" % (
        name, release, row.qemu_words, row.gate_words, " ".join(row.argv), "\n  ".join(row.problems))


def test_matrix_covers_every_oracle_verified_check():
    """Every check of the vIOMMU models x86 QEMU emulates and every migration rule appears in some row's
    evaluation (a configuration that makes it applicable)."""
    wanted = {c["id"] for c in policy.catalogue()
              if c["id"].startswith(("viommu.intel.", "viommu.amd.", "viommu.virtio.", "migration."))}
    profiles = {p for cfg in CONFIGS for p in cfg.profiles}
    covered = {cid for p in profiles for cid in policy.PROFILES[p]["checks"]}
    assert wanted <= covered, sorted(wanted - covered)


@pytest.mark.testbed("intel")
@pytest.mark.parametrize("caching_mode,started", [(False, False), (True, True)])
def test_preflight_probe_agrees(testbed, ansible_playbook, caching_mode, started):
    """The preflight role with preflight_qemu_probe: the guest's QEMU 11.1 answers through iommu.host.qemu_probe
    (run by Ansible in the guest) and the finding probe.agreement compares it with the gate's prediction."""
    guest = testbed["intel"]
    bind_vfio(guest)
    play = {"name": "preflight with the probe", "hosts": "intel", "gather_facts": False,
            "roles": [{"role": "iommu.host.preflight", "vars": {
                "preflight_profiles": ["intel_viommu", "live_migration"],
                "preflight_params": {"caching_mode": caching_mode, "aw_bits": 39, "qemu_version": "11.1"},
                "preflight_devices": [NIC], "preflight_mode": "report", "preflight_refresh_facts": True,
                "preflight_qemu_probe": True,
                "preflight_qemu_binary": oracle.oracles(guest)["11.1"].wrapper}}],
            "tasks": [{"name": "show", "ansible.builtin.debug": {"var": "preflight_result"}}]}
    result = ansible_playbook(play)
    assert result.rc == 0, result
    verdict = result.result("intel", "show")["preflight_result"]
    agreement = verdict["findings"][0]
    assert agreement["id"] == "probe.agreement" and agreement["status"] == "pass", agreement
    (probe,) = verdict["probe"]
    assert probe["probed"] and probe["started"] is started and probe["qemu_version"].startswith("11.1."), probe
    if started:
        assert probe["migration"] == "blocked" and "not supported in kernel" in probe["blocker"], probe
    else:
        assert "caching-mode=on" in " ".join(probe["errors"]), probe
