"""Benchmark (not a test): the fleet report of 2,000 hosts - its size and how soon it is interactive in
headless Chromium.

The hosts are those of bench_placement.py: facts gathered from the captured test-bed trees (7 profiles)
varied 6 ways (42 distinct gate views), each host its own deep copy with a unique kernel command line
text (root=UUID=..., as in real fleets), wrapped as hostvars entries. The report holds hosts x
requirements for the passthrough and live_migration profiles, VMs x hosts for VM definitions (libvirt
domain XML and QEMU command lines, as bench_placement.py makes them) and four migration pools of 500
hosts. Measured:

- the computation (report/model.build, i.e. the iommu.host.fleet_report filter) and the rendering of the
  three files, CPU seconds;
- the size of report.html, report.json and report.junit.xml;
- in headless Chromium (Debian's chromium, driven by Playwright, page opened from file://): the time
  from page.goto() to the first table rendered (the page's performance mark "report-ready", relative to
  the navigation start, and the wall time seen from Python until the first row is in the DOM), then a
  filter (typing a host name: the time until the table shows the one matching row, the filter's
  debounce of 120 ms included), a sort by a requirement column, and a page change.

Also: the worst case for the page's size, every host's facts distinct (a value the gate reads differs per
host, so no two hosts share findings or placement cells), with 20 VMs.

Run: .venv/bin/python tests/benchmarks/bench_report.py [hosts] [vms]   (default 2000 hosts, 20 and 200 VMs,
and the distinct case)
Writes build/bench_report.json.
"""
import json
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "build", "collections"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ansible_collections.iommu.host.plugins.module_utils.report import model  # noqa: E402
from ansible_collections.iommu.host.plugins.modules import iommu_report  # noqa: E402
import bench_placement  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
RUNS = 5


def build(n_hosts, n_vms, vary="cmdline"):
    hv = bench_placement.hosts(n_hosts, vary=vary)
    names = list(hv)
    pools = dict(("rack%d" % (i + 1), names[i * (n_hosts // 4):(i + 1) * (n_hosts // 4)]) for i in range(4))
    c0 = time.process_time()
    report = model.build(hv, profiles=["passthrough", "live_migration"], vms=bench_placement.vms(n_vms),
                         pools=pools, title="Fleet of %d hosts" % n_hosts)
    t_model = time.process_time() - c0
    c0 = time.process_time()
    files = iommu_report.render(report, ["html", "json", "junit"])
    t_render = time.process_time() - c0
    return report, files, t_model, t_render


def browser_figures(path, report):
    from playwright.sync_api import sync_playwright
    host = report["hosts"][-1]["name"]
    col_label = "host.interrupt_remapping"
    out = {"ready_mark_ms": [], "first_rows_s": [], "filter_s": [], "sort_s": [], "page_s": [], "requests": None,
           "errors": None}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        for _run in range(RUNS):
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            errors, requests = [], []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("request", lambda r: requests.append(r.url))
            t0 = time.perf_counter()
            page.goto(path.as_uri())
            page.wait_for_selector("#panel-hosts tbody tr")
            out["first_rows_s"].append(time.perf_counter() - t0)
            out["ready_mark_ms"].append(page.evaluate(
                "performance.getEntriesByName('report-ready')[0].startTime"))
            t0 = time.perf_counter()
            page.fill("#panel-hosts input.filter", host)
            page.wait_for_selector("#panel-hosts .rows-shown[data-total='1']")
            out["filter_s"].append(time.perf_counter() - t0)
            page.fill("#panel-hosts input.filter", "")
            page.wait_for_selector("#panel-hosts .rows-shown[data-total='%d']" % len(report["hosts"]))
            labels = page.eval_on_selector_all("#panel-hosts thead th", "ths => ths.map(th => th.textContent)")
            col = labels.index(col_label) + 1
            t0 = time.perf_counter()
            page.click("#panel-hosts thead th:nth-child(%d) button" % col)
            page.wait_for_selector("#panel-hosts thead th:nth-child(%d)[aria-sort=ascending]" % col)
            out["sort_s"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            page.click("#panel-hosts button.next")
            page.wait_for_selector("#panel-hosts .rows-shown:text-matches('^101')")
            out["page_s"].append(time.perf_counter() - t0)
            out["requests"], out["errors"] = requests, errors
            context.close()
        browser.close()
    return out


def main():
    n_hosts = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    cases = [(20, "cmdline"), (200, "cmdline"), (20, "distinct")]
    if len(sys.argv) > 2:
        cases = [(int(sys.argv[2]), "cmdline")]
    results = []
    for n_vms, vary in cases:
        report, files, t_model, t_render = build(n_hosts, n_vms, vary)
        tmp = tempfile.mkdtemp(prefix="bench-report-")
        for fmt, data in files.items():
            with open(os.path.join(tmp, iommu_report.FILES[fmt]), "wb") as f:
                f.write(data)
        from pathlib import Path
        fig = browser_figures(Path(tmp) / "report.html", report)
        row = {"hosts": n_hosts, "vms": n_vms, "hosts_vary": vary, "model_cpu_s": round(t_model, 2), "render_cpu_s": round(t_render, 2),
               "html_bytes": len(files["html"]), "json_bytes": len(files["json"]), "junit_bytes": len(files["junit"]),
               "findings": len(report["findings"]), "placement_cells": len(report["placement"]["cells"]),
               "ready_mark_ms_median": round(statistics.median(fig["ready_mark_ms"]), 1),
               "ready_mark_ms_max": round(max(fig["ready_mark_ms"]), 1),
               "first_rows_s_median": round(statistics.median(fig["first_rows_s"]), 3),
               "first_rows_s_max": round(max(fig["first_rows_s"]), 3),
               "filter_s_median": round(statistics.median(fig["filter_s"]), 3),
               "sort_s_median": round(statistics.median(fig["sort_s"]), 3),
               "page_s_median": round(statistics.median(fig["page_s"]), 3),
               "requests": fig["requests"], "console_errors": fig["errors"]}
        results.append(row)
        print("%d hosts (%s) x %d VMs: model %.2f s CPU, render %.2f s CPU; report.html %.2f MB, report.json %.2f MB, "
              "report.junit.xml %.2f MB" % (n_hosts, vary, n_vms, t_model, t_render, len(files["html"]) / 1e6,
                                            len(files["json"]) / 1e6, len(files["junit"]) / 1e6))
        print("  Chromium (%d runs): ready mark %.0f ms median (max %.0f), goto -> first rows %.2f s median "
              "(max %.2f), filter %.2f s, sort %.2f s, next page %.2f s; requests %s; console errors %s" % (
                  RUNS, row["ready_mark_ms_median"], row["ready_mark_ms_max"], row["first_rows_s_median"],
                  row["first_rows_s_max"], row["filter_s_median"], row["sort_s_median"], row["page_s_median"],
                  len(fig["requests"]), len(fig["errors"])))
    os.makedirs(os.path.join(REPO, "build"), exist_ok=True)
    with open(os.path.join(REPO, "build", "bench_report.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
