# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report as one self-contained HTML page (report.html). Stdlib only.

No external asset and no network: CSS and JavaScript are inline, and a Content-Security-Policy
(``default-src 'none'``) forbids any load, so the page works opened from disk (file://). The report
is embedded as JSON in ``<script type="application/json" id="report-data">`` in a compact form
(:func:`compact`): a string table (every distinct string once), the distinct findings once, and each
host as indices into the distinct rows of hosts x requirements and VMs x hosts. ``<``, ``>`` and ``&``
inside the JSON are written as ``\\u003c``/``\\u003e``/``\\u0026`` and everything non-ASCII as ``\\u``
escapes, so no data can close the element or open a comment (the page inserts every text with
``textContent``, never as markup). The tables render one page of rows at a time (sorting and filtering
work on indices), so a report of thousands of hosts stays interactive.
"""

from __future__ import absolute_import, division, print_function

import json

__metaclass__ = type

# status -> code in the embedded data; the page's STATUS array is in this order (worst first)
CODES = {"fail": 0, "warn": 1, "pass": 2, "not_applicable": 3, "not_evaluated": 4}


def escape(value):
    """Text for HTML element content or a double/single-quoted attribute (ASCII: the rest as character
    references)."""
    text = ("%s" % value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace(
        '"', "&quot;").replace("'", "&#39;")
    return text.encode("ascii", "xmlcharrefreplace").decode("ascii")


def script_json(value):
    """JSON text that is safe as the content of a <script> element (no ``</script``, ``<!--``, ``]]>``)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class _Strings:
    def __init__(self):
        self.items, self._index = [], {}

    def __call__(self, value):
        if value is None:
            return -1
        value = "%s" % value
        if value not in self._index:
            self._index[value] = len(self.items)
            self.items.append(value)
        return self._index[value]


class _Lists(_Strings):
    def add(self, value):
        key = json.dumps(value)
        if key not in self._index:
            self._index[key] = len(self.items)
            self.items.append(value)
        return self._index[key]


def _evidence(s, evidence):
    if not evidence:
        return -1
    return s(json.dumps(evidence, sort_keys=True, indent=1, ensure_ascii=False, default=str))


def _code(status):
    return CODES.get(status, CODES["not_evaluated"])


def _pool(s, lists, pool):
    """A pool with its host names as string indices (hosts, members, excluded[].host and .reason) and the
    host lists of limited_by[] and refused_by[] as indices into ``lists`` (the distinct lists of string
    indices): the same lists of hosts recur for every VM and property."""
    def group(entries):
        # [hosts (index into lists), id, status, device, message, remedy, qemu_effect (indices into S), value, possible]
        return [[lists.add([s(h) for h in e.get("hosts") or []]), s(e.get("id")), s(e.get("status")), s(e.get("device")),
                 s(e.get("message")), s(e.get("remedy")), s(e.get("qemu_effect")), e.get("value"), e.get("possible")]
                for e in entries or []]
    out = dict(pool, hosts=[s(h) for h in pool.get("hosts") or []], members=[s(h) for h in pool.get("members") or []],
               excluded=[{"host": s(e.get("host")), "reason": s(e.get("reason"))} for e in pool.get("excluded") or []])
    models = {}
    for m, entry in (pool.get("models") or {}).items():
        props = dict((k, dict(p, limited_by=group(p.get("limited_by")))) for k, p in (entry.get("properties") or {}).items())
        models[m] = dict(entry, properties=props)
    out["models"] = models
    out["vms"] = [dict(v, refused_by=group(v.get("refused_by"))) for v in pool.get("vms") or []]
    return out


def compact(report):
    """The page's data: {t, g, inputs, summary, S: strings, R: requirements, F: findings, H: hosts,
    HR: distinct requirement rows, V: VMs, VC: distinct placement cells, VR: distinct placement rows,
    P: pools, L: host lists of the pools}; every string of R, F, H, V and VC, and the host names of P, is an
    index into S (-1 for null)."""
    s = _Strings()
    reqs = report.get("requirements") or []
    out = {"t": report.get("title"), "g": report.get("generated"), "inputs": report.get("inputs") or {},
           "summary": report.get("summary") or {}}
    out["R"] = [[s(r.get("id")), s(r.get("title")), s(r.get("rule")), s(", ".join(r.get("profiles") or []))]
                for r in reqs]
    out["F"] = [[_code(f.get("status")), s(f.get("id")), s(f.get("device")), s(f.get("message")), s(f.get("remedy")),
                 s(f.get("qemu_effect")), _evidence(s, f.get("evidence"))] for f in report.get("findings") or []]
    placement = report.get("placement") or {}
    vms = report.get("vms") or []
    lines = [(placement.get("matrix") or {}).get(v.get("name")) or [] for v in vms]
    rows, row_index, vrows, vrow_index, hosts = [], {}, [], {}, []
    for hi, host in enumerate(report.get("hosts") or []):
        cells = host.get("cells") or {}
        row = []
        for r in reqs:
            refs = (cells.get(r.get("id")) or {}).get("findings") or []
            row.append(-1 if not refs else (refs[0] if len(refs) == 1 else list(refs)))
        key = json.dumps(row)
        if key not in row_index:
            row_index[key] = len(rows)
            rows.append(row)
        vrow = [line[hi] if hi < len(line) else -1 for line in lines]
        vkey = json.dumps(vrow)
        if vkey not in vrow_index:
            vrow_index[vkey] = len(vrows)
            vrows.append(vrow)
        hosts.append([s(host.get("name")), _code(host.get("status")), 1 if host.get("facts") else 0,
                      row_index[key], vrow_index[vkey]])
    out["H"], out["HR"], out["VR"] = hosts, rows, vrows
    out["V"] = [[s(v.get("name")), s(v.get("viommu")), [s(p) for p in v.get("problems") or []], s(v.get("error")),
                 v.get("pass", 0), v.get("warn", 0), v.get("fail", 0)] for v in vms]
    vc = []
    for c in placement.get("cells") or []:
        first = c.get("first") or {}
        vc.append([_code(c.get("status")), c.get("failed", 0), c.get("warnings", 0), s(first.get("id")),
                   s(first.get("device")), s(first.get("message")), s(first.get("remedy")), s(first.get("qemu_effect")),
                   _evidence(s, first.get("evidence"))])
    out["VC"] = vc
    lists = _Lists()
    out["P"] = [_pool(s, lists, pool) for pool in report.get("pools") or []]
    out["L"] = lists.items
    out["S"] = s.items
    return out


def render(report):
    """report.html's text (str, ASCII)."""
    title = escape(report.get("title") or "IOMMU fleet report")
    return (_PAGE.replace("@TITLE@", title).replace("@CSS@", _CSS).replace("@JS@", _JS)
            .replace("@DATA@", script_json(compact(report))))


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="iommu.host iommu_report">
<link rel="icon" href="data:,">
<title>@TITLE@</title>
<style>@CSS@</style>
</head>
<body>
<header>
<h1 id="title">@TITLE@</h1>
<p id="meta"></p>
<p id="summary"></p>
<p class="legend"><span class="st s0">fail</span> <span class="st s1">warn</span> <span class="st s2">pass</span>
<span class="st s3">not applicable</span> <span class="st s4">not evaluated</span>
<span class="hint">Hover a cell for its message, click it for message, evidence, remedy and what QEMU does.
Click a column header to sort.</span></p>
</header>
<nav id="tabs" role="tablist">
<button role="tab" data-tab="hosts" id="tab-hosts">Hosts &times; requirements</button>
<button role="tab" data-tab="placement" id="tab-placement">VMs &times; hosts</button>
<button role="tab" data-tab="vms" id="tab-vms">VMs</button>
<button role="tab" data-tab="pools" id="tab-pools">Migration pools</button>
</nav>
<main>
<section id="panel-hosts" class="panel" role="tabpanel" hidden></section>
<section id="panel-placement" class="panel" role="tabpanel" hidden></section>
<section id="panel-vms" class="panel" role="tabpanel" hidden></section>
<section id="panel-pools" class="panel" role="tabpanel" hidden></section>
</main>
<aside id="detail" hidden><button id="detail-close" aria-label="Close">&times;</button><div id="detail-body"></div></aside>
<noscript><p>This report needs JavaScript; its data is also in report.json and report.junit.xml.</p></noscript>
<script type="application/json" id="report-data">@DATA@</script>
<script>@JS@</script>
</body>
</html>
"""

_CSS = """
:root{--fail:#d93025;--warn:#f29900;--pass:#1e8e3e;--na:#9aa0a6;--ne:#dadce0;--line:#dadce0;--bg:#fff;--fg:#202124}
*{box-sizing:border-box}
body{margin:0;font:13px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);background:var(--bg)}
header{padding:10px 16px 4px;border-bottom:1px solid var(--line)}
h1{font-size:20px;margin:0 0 4px}
h2{font-size:16px;margin:16px 0 6px}
h3{font-size:14px;margin:12px 0 4px}
#meta,#summary{margin:2px 0;color:#5f6368}
.legend{margin:6px 0}.hint{color:#5f6368;margin-left:8px}
.st{display:inline-block;padding:0 6px;border-radius:3px;color:#fff;font-weight:600}
.s0{background:var(--fail)}.s1{background:var(--warn)}.s2{background:var(--pass)}.s3{background:var(--na)}.s4{background:var(--ne);color:#5f6368}
nav{display:flex;gap:2px;padding:6px 16px 0;border-bottom:1px solid var(--line)}
nav button{border:1px solid var(--line);border-bottom:none;background:#f1f3f4;padding:6px 12px;cursor:pointer;border-radius:4px 4px 0 0;font:inherit}
nav button[aria-selected=true]{background:#fff;font-weight:600;position:relative;top:1px}
main{padding:8px 16px}
.toolbar{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin:4px 0 8px}
.toolbar input[type=search]{width:260px;padding:4px 6px;font:inherit}
.toolbar select,.toolbar button{font:inherit;padding:3px 6px}
.count{color:#5f6368}
.wrap{overflow:auto;max-height:calc(100vh - 210px);border:1px solid var(--line)}
table{border-collapse:collapse}
th,td{border:1px solid var(--line);padding:2px 6px;text-align:left;white-space:nowrap}
thead th{position:sticky;top:0;background:#f8f9fa;z-index:1;vertical-align:bottom}
th button{all:unset;cursor:pointer;display:block}
th.rot button{writing-mode:vertical-rl;transform:rotate(180deg);max-height:150px;overflow:hidden;text-overflow:ellipsis}
th[aria-sort=ascending] button::after{content:" \\25B2"}th[aria-sort=descending] button::after{content:" \\25BC"}
td.c{width:22px;min-width:22px;text-align:center;cursor:pointer;color:#fff;font-weight:700;padding:2px}
td.c.s4{color:#5f6368}
td.name{font-weight:600}
td.msg{white-space:normal;max-width:560px}
tr:hover td.name{background:#e8f0fe}
td.c:focus{outline:2px solid #1a73e8}
.pool{border:1px solid var(--line);border-radius:4px;padding:4px 12px 10px;margin:8px 0}
aside#detail{position:fixed;top:0;right:0;bottom:0;width:min(560px,100%);background:#fff;border-left:2px solid #5f6368;
box-shadow:-4px 0 12px rgba(0,0,0,.2);overflow:auto;padding:12px 16px;z-index:5}
#detail-close{float:right;font-size:20px;border:none;background:none;cursor:pointer}
#detail pre{white-space:pre-wrap;word-break:break-all;background:#f8f9fa;border:1px solid var(--line);padding:6px;max-height:320px;overflow:auto}
#detail dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 10px}#detail dt{font-weight:600}#detail dd{margin:0;white-space:pre-wrap}
.finding{border-top:1px solid var(--line);padding-top:6px;margin-top:8px}
.empty{color:#5f6368;font-style:italic}
.why{cursor:pointer;padding:2px 0}.why+.why{border-top:1px dashed var(--line)}.why>span{font-weight:600}
td.v{color:#fff;font-weight:700;text-align:center}
"""

_JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("report-data").textContent);
  var S = D.S, STATUS = ["fail", "warn", "pass", "not applicable", "not evaluated"], MARK = ["\u2717", "!", "\u2713", "\u2013", "\u00b7"];
  var collator = new Intl.Collator(undefined, {numeric: true, sensitivity: "base"});
  function str(i) { return i >= 0 ? S[i] : null; }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function badge(code) { return el("span", "st s" + code, STATUS[code]); }
  function refs(cell) { return cell === -1 ? [] : (typeof cell === "number" ? [cell] : cell); }
  function worst(list) { var w = 4; for (var k = 0; k < list.length; k++) { if (D.F[list[k]][0] < w) { w = D.F[list[k]][0]; } } return w; }
  function hostCell(h, r) { return D.HR[D.H[h][3]][r]; }
  function vmCell(h, v) { return D.VC[D.VR[D.H[h][4]][v]]; }
  function hostName(h) { return S[D.H[h][0]]; }
  function findingText(f) {
    var t = STATUS[f[0]].toUpperCase() + " " + str(f[1]) + (f[2] >= 0 ? " [" + str(f[2]) + "]" : "") + ": " + (str(f[3]) || "");
    if (f[4] >= 0) { t += "\nRemedy: " + str(f[4]); }
    if (f[5] >= 0) { t += "\nQEMU: " + str(f[5]); }
    return t;
  }

  // ------------------------------------------------------------------ detail panel
  var detail = document.getElementById("detail"), detailBody = document.getElementById("detail-body");
  function closeDetail() { detail.hidden = true; }
  document.getElementById("detail-close").addEventListener("click", closeDetail);
  document.addEventListener("keydown", function (e) { if (e.key === "Escape") { closeDetail(); } });
  function field(dl, name, value) {
    if (value === null || value === undefined || value === "") { return; }
    dl.appendChild(el("dt", null, name));
    dl.appendChild(el("dd", null, value));
  }
  // f: [status, id, device, message, remedy, effect, evidence] (string indices)
  function showFindings(heading, sub, list, rule) {
    detailBody.textContent = "";
    detailBody.appendChild(el("h2", null, heading));
    if (sub) { detailBody.appendChild(el("p", null, sub)); }
    if (!list.length) { detailBody.appendChild(el("p", "empty", "Not evaluated: no finding for this requirement (no facts, or the gate stopped before it).")); }
    list.forEach(function (f) {
      var box = el("div", "finding"), dl = el("dl");
      box.appendChild(badge(f[0]));
      box.appendChild(document.createTextNode(" " + (str(f[1]) || "")));
      field(dl, "device", str(f[2]));
      field(dl, "message", str(f[3]));
      field(dl, "remedy", str(f[4]));
      field(dl, "QEMU effect", str(f[5]));
      field(dl, "rule", rule);
      box.appendChild(dl);
      if (f[6] >= 0) { box.appendChild(el("h3", null, "evidence")); box.appendChild(el("pre", null, str(f[6]))); }
      detailBody.appendChild(box);
    });
    detail.hidden = false;
  }

  // ------------------------------------------------------------------ a sortable, filterable, paged table
  function Grid(root, o) {
    var self = this, state = {sort: -1, dir: 1, text: "", status: "", page: 0, size: 100}, order = null;
    var bar = el("div", "toolbar"), input = el("input"), sel = el("select"), count = el("span", "count");
    var prev = el("button", null, "\u2039 prev"), next = el("button", null, "next \u203a"), pageInfo = el("span", "count");
    var sizeSel = el("select");
    input.type = "search"; input.placeholder = o.placeholder; input.setAttribute("aria-label", "filter");
    input.className = "filter";
    [["", "any status"], ["0", "with a fail"], ["1", "with a warning"], ["2", "all pass"], ["nf", "without facts"]].forEach(function (x) {
      var op = el("option", null, x[1]); op.value = x[0]; sel.appendChild(op);
    });
    sel.className = "status"; sel.setAttribute("aria-label", "status");
    [50, 100, 250, 1000].forEach(function (n) {
      var op = el("option", null, n + " rows");
      op.value = n;
      if (n === 100) { op.selected = true; }
      sizeSel.appendChild(op);
    });
    prev.className = "prev"; next.className = "next"; count.className = "count rows-shown";
    [input, sel, count, prev, pageInfo, next, sizeSel].forEach(function (x) { bar.appendChild(x); });
    var wrap = el("div", "wrap"), table = el("table"), thead = el("thead"), tbody = el("tbody");
    table.appendChild(thead); table.appendChild(tbody); wrap.appendChild(table);
    root.appendChild(bar); root.appendChild(wrap);
    var cols = o.columns, headRow = el("tr");
    cols.forEach(function (c, k) {
      var th = el("th", c.rot ? "rot" : null), b = el("button", null, c.label);
      if (c.title) { th.title = c.title; }
      b.addEventListener("click", function () {
        if (state.sort === k) { state.dir = -state.dir; } else { state.sort = k; state.dir = 1; }
        order = null; state.page = 0; self.render();
      });
      th.appendChild(b); headRow.appendChild(th);
    });
    thead.appendChild(headRow);
    var timer = null;
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { state.text = input.value.trim().toLowerCase(); order = null; state.page = 0; self.render(); }, 120);
    });
    sel.addEventListener("change", function () { state.status = sel.value; order = null; state.page = 0; self.render(); });
    sizeSel.addEventListener("change", function () { state.size = +sizeSel.value; state.page = 0; self.render(); });
    prev.addEventListener("click", function () { if (state.page > 0) { state.page--; self.render(); } });
    next.addEventListener("click", function () { state.page++; self.render(); });
    tbody.addEventListener("click", function (e) {
      var td = e.target.closest("td");
      if (td && td.__open) { td.__open(); }
    });
    tbody.addEventListener("keydown", function (e) {
      var td = e.target.closest("td");
      if (td && td.__open && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); td.__open(); }
    });
    function rows() {
      if (order) { return order; }
      var list = [], n = o.n, t = state.text;
      for (var i = 0; i < n; i++) {
        if (state.status && !o.status(i, state.status)) { continue; }
        if (t && o.search(i).indexOf(t) < 0) { continue; }
        list.push(i);
      }
      if (state.sort >= 0) {
        var key = cols[state.sort].key, dir = state.dir, keys = {};
        list.forEach(function (i) { keys[i] = key(i); });
        list.sort(function (a, b) {
          var ka = keys[a], kb = keys[b], c;
          c = (typeof ka === "number" && typeof kb === "number") ? ka - kb : collator.compare(String(ka), String(kb));
          return c !== 0 ? c * dir : a - b;
        });
      }
      order = list;
      return list;
    }
    this.render = function () {
      var list = rows(), size = state.size, pages = Math.max(1, Math.ceil(list.length / size));
      if (state.page >= pages) { state.page = pages - 1; }
      var start = state.page * size, end = Math.min(list.length, start + size), frag = document.createDocumentFragment();
      for (var k = start; k < end; k++) {
        var i = list[k], tr = el("tr");
        tr.dataset.row = i;
        cols.forEach(function (c) { var td = el("td"); c.cell(td, i); tr.appendChild(td); });
        frag.appendChild(tr);
      }
      tbody.textContent = "";
      tbody.appendChild(frag);
      headRow.childNodes.forEach(function (th, k) {
        if (k === state.sort) { th.setAttribute("aria-sort", state.dir > 0 ? "ascending" : "descending"); } else { th.removeAttribute("aria-sort"); }
      });
      count.textContent = (list.length ? (start + 1) + "\u2013" + end : "0") + " of " + list.length + " " + o.noun +
        (list.length !== o.n ? " (filtered from " + o.n + ")" : "");
      count.dataset.total = list.length;
      pageInfo.textContent = "page " + (state.page + 1) + " / " + pages;
      prev.disabled = state.page === 0; next.disabled = state.page >= pages - 1;
    };
  }
  function statusCell(td, code, text, tip, open) {
    td.className = "c s" + code;
    td.textContent = MARK[code];
    td.title = tip;
    td.tabIndex = 0;
    td.dataset.status = STATUS[code];
    if (open) { td.__open = open; }
    if (text) { td.setAttribute("aria-label", text); }
  }

  // ------------------------------------------------------------------ tabs
  var built = {};
  var panels = {
    hosts: buildHosts, placement: buildPlacement, vms: buildVms, pools: buildPools
  };
  function show(name) {
    if (!panels[name]) { name = "hosts"; }
    Object.keys(panels).forEach(function (k) {
      document.getElementById("panel-" + k).hidden = k !== name;
      document.getElementById("tab-" + k).setAttribute("aria-selected", k === name ? "true" : "false");
    });
    if (!built[name]) { built[name] = true; panels[name](document.getElementById("panel-" + name)); }
  }
  document.getElementById("tabs").addEventListener("click", function (e) {
    var b = e.target.closest("button[data-tab]");
    if (b) { show(b.dataset.tab); if (history.replaceState) { history.replaceState(null, "", "#" + b.dataset.tab); } }
  });

  // ------------------------------------------------------------------ hosts x requirements
  function buildHosts(root) {
    var n = D.H.length, R = D.R, searchCache = {};
    if (!n) { root.appendChild(el("p", "empty", "No hosts.")); return; }
    function problems(h) {
      var row = D.HR[D.H[h][3]], cnt = [0, 0, 0, 0, 0];
      row.forEach(function (c) { cnt[c === -1 ? 4 : worst(refs(c))]++; });
      return cnt;
    }
    var cols = [
      {label: "host", key: hostName, cell: function (td, h) { td.className = "name"; td.textContent = hostName(h); }},
      {label: "status", key: function (h) { return D.H[h][1]; }, cell: function (td, h) {
        var code = D.H[h][1];
        statusCell(td, code, STATUS[code], hostName(h) + ": " + STATUS[code] + (D.H[h][2] ? "" : " (no facts)"));
      }},
      {label: "fail", key: function (h) { return -problems(h)[0]; }, cell: function (td, h) { td.textContent = problems(h)[0]; }},
      {label: "warn", key: function (h) { return -problems(h)[1]; }, cell: function (td, h) { td.textContent = problems(h)[1]; }}
    ];
    R.forEach(function (r, k) {
      cols.push({label: str(r[0]), title: str(r[0]) + ": " + (str(r[1]) || ""), rot: true,
        key: function (h) { var c = hostCell(h, k); return c === -1 ? 4 : worst(refs(c)); },
        cell: function (td, h) {
          var c = hostCell(h, k), list = refs(c), code = c === -1 ? 4 : worst(list);
          var tip = hostName(h) + " \u2014 " + str(r[0]) + " (" + (str(r[1]) || "") + ")\n" +
            (list.length ? list.map(function (i) { return findingText(D.F[i]); }).join("\n\n") : "not evaluated");
          statusCell(td, code, STATUS[code], tip, function () {
            showFindings(hostName(h) + " \u2014 " + str(r[0]), str(r[1]), list.map(function (i) { return D.F[i]; }), str(r[2]));
          });
        }});
    });
    var grid = new Grid(root, {n: n, noun: "hosts", placeholder: "filter hosts, requirement ids, messages", columns: cols,
      status: function (h, s) {
        if (s === "nf") { return !D.H[h][2]; }
        return D.H[h][1] === +s;
      },
      search: function (h) {
        var row = D.H[h][3];
        if (searchCache[row] === undefined) {
          var parts = [];
          D.HR[row].forEach(function (c, k) {
            refs(c).forEach(function (i) { var f = D.F[i]; if (f[0] < 2) { parts.push(str(R[k][0]), str(f[3]) || ""); } });
          });
          searchCache[row] = parts.join("\n").toLowerCase();
        }
        return hostName(h).toLowerCase() + "\n" + STATUS[D.H[h][1]] + "\n" + searchCache[row];
      }});
    grid.render();
  }

  // ------------------------------------------------------------------ VMs x hosts
  function vmTip(h, v) {
    var c = vmCell(h, v), name = str(D.V[v][0]);
    var t = name + " on " + hostName(h) + ": " + STATUS[c[0]];
    if (c[3] >= 0) { t += "\n" + findingText([c[0] === 2 ? 1 : c[0], c[3], c[4], c[5], c[6], c[7]]); }
    if (c[1] || c[2]) { t += "\n(" + c[1] + " failed, " + c[2] + " warnings)"; }
    return t;
  }
  function buildPlacement(root) {
    var n = D.H.length, V = D.V;
    if (!V.length || !n) { root.appendChild(el("p", "empty", "No VM definitions in this report (report_vms).")); return; }
    function ok(h) { var k = 0; for (var v = 0; v < V.length; v++) { var c = vmCell(h, v)[0]; if (c === 1 || c === 2) { k++; } } return k; }
    var cols = [
      {label: "host", key: hostName, cell: function (td, h) { td.className = "name"; td.textContent = hostName(h); }},
      {label: "VMs that start", title: "VMs whose verdict on this host is pass or warn", key: function (h) { return -ok(h); },
        cell: function (td, h) { td.textContent = ok(h) + " / " + V.length; }}
    ];
    V.forEach(function (vm, v) {
      cols.push({label: str(vm[0]), title: str(vm[0]) + (vm[1] >= 0 ? " (" + str(vm[1]) + ")" : ""), rot: true,
        key: function (h) { return vmCell(h, v)[0]; },
        cell: function (td, h) {
          var c = vmCell(h, v);
          statusCell(td, c[0], STATUS[c[0]], vmTip(h, v), function () {
            var list = c[3] >= 0 ? [[c[0] === 2 ? 1 : c[0], c[3], c[4], c[5], c[6], c[7], c[8]]] : [];
            showFindings(str(vm[0]) + " on " + hostName(h), "verdict: " + STATUS[c[0]] + " (" + c[1] + " failed, " + c[2] +
              " warnings); the first failing requirement, else the first warning:", list, null);
            if (!list.length) { detailBody.lastChild.textContent = "Every requirement passes."; }
          });
        }});
    });
    var grid = new Grid(root, {n: n, noun: "hosts", placeholder: "filter hosts, requirement ids, messages", columns: cols,
      status: function (h, s) {
        if (s === "nf") { return !D.H[h][2]; }
        for (var v = 0; v < V.length; v++) { if (vmCell(h, v)[0] === +s) { return true; } }
        return false;
      },
      search: function (h) {
        var parts = [hostName(h)];
        for (var v = 0; v < V.length; v++) { var c = vmCell(h, v); if (c[3] >= 0) { parts.push(str(c[3]), str(c[5]) || ""); } }
        return parts.join("\n").toLowerCase();
      }});
    grid.render();
  }

  // ------------------------------------------------------------------ VMs
  function buildVms(root) {
    var V = D.V;
    if (!V.length) { root.appendChild(el("p", "empty", "No VM definitions in this report (report_vms).")); return; }
    var cols = [
      {label: "VM", key: function (v) { return str(V[v][0]); }, cell: function (td, v) { td.className = "name"; td.textContent = str(V[v][0]); }},
      {label: "vIOMMU", key: function (v) { return str(V[v][1]) || ""; }, cell: function (td, v) { td.textContent = str(V[v][1]) || "none"; }},
      {label: "pass", key: function (v) { return -V[v][4]; }, cell: function (td, v) { td.textContent = V[v][4]; }},
      {label: "warn", key: function (v) { return -V[v][5]; }, cell: function (td, v) { td.textContent = V[v][5]; }},
      {label: "fail", key: function (v) { return -V[v][6]; }, cell: function (td, v) { td.textContent = V[v][6]; }},
      {label: "problems", key: function (v) { return V[v][2].length; }, cell: function (td, v) {
        td.className = "msg";
        var text = V[v][2].map(str).join("; ");
        if (V[v][3] >= 0) { text = "error: " + str(V[v][3]) + (text ? "; " + text : ""); }
        td.textContent = text;
      }}
    ];
    new Grid(root, {n: V.length, noun: "VMs", placeholder: "filter VMs", columns: cols,
      status: function (v, s) { return s === "0" ? V[v][6] > 0 : s === "1" ? V[v][5] > 0 : s === "2" ? V[v][6] + V[v][5] === 0 : false; },
      search: function (v) { return (str(V[v][0]) + "\n" + (str(V[v][1]) || "") + "\n" + V[v][2].map(str).join("\n")).toLowerCase(); }}).render();
  }

  // ------------------------------------------------------------------ migration pools
  function value(v) {
    if (v === null || v === undefined) { return "none"; }
    if (v === true) { return "on"; }
    if (v === false) { return "off"; }
    if (Array.isArray(v)) { return v.length ? v.join(", ") : "none"; }
    return String(v);
  }
  function hostList(list) {
    var span = el("span");
    if (list.length <= 6) { span.textContent = list.join(", "); return span; }
    var d = el("details"), s = el("summary", null, list.slice(0, 5).join(", ") + " \u2026 (+" + (list.length - 5) + ")");
    d.appendChild(s); d.appendChild(el("div", "msg", list.join(", "))); span.appendChild(d);
    return span;
  }
  function group(g) {
    return {hosts: D.L[g[0]].map(str), id: str(g[1]), status: str(g[2]), device: str(g[3]), message: str(g[4]),
      remedy: str(g[5]), qemu_effect: str(g[6]), value: g[7], possible: g[8]};
  }
  function why(x, open) {
    var d = el("div", "why");
    d.appendChild(hostList(x.hosts));
    d.appendChild(el("div", null, (x.status ? x.status + " " : "") + (x.id ? x.id + ": " : "") + (x.message || "")));
    d.title = (x.message || "") + (x.remedy ? "\nRemedy: " + x.remedy : "") + (x.qemu_effect ? "\nQEMU: " + x.qemu_effect : "");
    d.tabIndex = 0;
    d.addEventListener("click", open);
    d.addEventListener("keydown", function (e) { if (e.key === "Enter") { open(); } });
    return d;
  }
  function showPoolEntry(heading, sub, e) {
    detailBody.textContent = "";
    detailBody.appendChild(el("h2", null, heading));
    if (sub) { detailBody.appendChild(el("p", null, sub)); }
    var box = el("div", "finding"), dl = el("dl");
    if (e.status) { box.appendChild(badge(e.status === "fail" ? 0 : e.status === "warn" ? 1 : 2)); }
    box.appendChild(document.createTextNode(" " + (e.id || "")));
    field(dl, "hosts", e.hosts.join(", "));
    field(dl, "device", e.device);
    field(dl, "message", e.message);
    field(dl, "remedy", e.remedy);
    field(dl, "QEMU effect", e.qemu_effect);
    box.appendChild(dl); detailBody.appendChild(box);
    detail.hidden = false;
  }
  function buildPools(root) {
    if (!D.P.length) { root.appendChild(el("p", "empty", "No migration pools in this report (report_pools).")); return; }
    D.P.forEach(function (p) {
      var box = el("div", "pool");
      box.appendChild(el("h2", null, "Pool " + p.name));
      box.appendChild(el("p", null, p.members.length + " of " + p.hosts.length + " hosts judged" +
        (p.excluded.length ? "; excluded: " + p.excluded.map(function (x) { return str(x.host); }).join(", ") : "")));
      if (p.excluded.length) {
        var dx = el("details"); dx.appendChild(el("summary", null, "why excluded"));
        p.excluded.forEach(function (x) { dx.appendChild(el("p", null, str(x.host) + ": " + str(x.reason))); });
        box.appendChild(dx);
      }
      box.appendChild(el("h3", null, "Strongest configuration every member accepts, per model"));
      var t = el("table", "pool-models"), head = el("tr");
      ["model", "property", "pool value", "no host refuses", "limited by (hosts: why)"].forEach(function (x) { head.appendChild(el("th", null, x)); });
      var th = el("thead"); th.appendChild(head); t.appendChild(th);
      var tb = el("tbody");
      Object.keys(p.models).sort(function (a, b) { return a === "host" ? -1 : b === "host" ? 1 : collator.compare(a, b); }).forEach(function (m) {
        var model = p.models[m], props = Object.keys(model.properties);
        if (m !== "host") {
          var tr0 = el("tr"), td0 = el("td", "name", m), td1 = el("td", "msg");
          td1.colSpan = 4;
          var conf = model.params ? Object.keys(model.params).map(function (k) { return k + "=" + value(model.params[k]); }) : null;
          td1.textContent = conf ? "configuration: " + (conf.join(", ") || "QEMU's defaults")
            : "no configuration of this model is accepted by every member";
          tr0.appendChild(td0); tr0.appendChild(td1); tb.appendChild(tr0);
        }
        props.forEach(function (name) {
          var pr = model.properties[name], tr = el("tr"), lim = (pr.limited_by || []).map(group);
          tr.appendChild(el("td", null, m === "host" ? "(host)" : m));
          tr.appendChild(el("td", null, name + (pr.parameter ? " (" + pr.parameter + ")" : "")));
          var tv = el("td"); statusCell(tv, lim.length ? (lim.some(function (x) { return x.status === "fail"; }) ? 0 : 1) : 2, null,
            name + " = " + value(pr.value)); tv.textContent = value(pr.value); tv.style.width = "auto"; tr.appendChild(tv);
          tr.appendChild(el("td", null, value(pr.possible)));
          var tw = el("td", "msg");
          lim.forEach(function (x) {
            tw.appendChild(why(x, function () { showPoolEntry("Pool " + p.name + ": " + m + " " + name, "limited to " + value(pr.value) +
              " (" + value(x.value) + " on these hosts)", x); }));
          });
          tr.appendChild(tw); tb.appendChild(tr);
        });
      });
      t.appendChild(tb); box.appendChild(t);
      box.appendChild(el("h3", null, "VMs against this pool"));
      if (!p.vms.length) { box.appendChild(el("p", "empty", "No VM definitions.")); } else {
        var vt = el("table", "pool-vms"), vh = el("tr"), vb = el("tbody");
        ["VM", "vIOMMU", "status", "refused by (hosts: why)"].forEach(function (x) { vh.appendChild(el("th", null, x)); });
        var vth = el("thead"); vth.appendChild(vh); vt.appendChild(vth);
        p.vms.forEach(function (v) {
          var tr = el("tr"), code = v.status === "within" ? 2 : 0, ts = el("td");
          tr.appendChild(el("td", "name", v.name)); tr.appendChild(el("td", null, v.viommu || "none"));
          statusCell(ts, code, null, v.name + ": " + v.status); ts.textContent = v.status; ts.style.width = "auto"; tr.appendChild(ts);
          var tw = el("td", "msg");
          var refused = (v.refused_by || []).map(group);
          refused.forEach(function (x) {
            tw.appendChild(why(x, function () { showPoolEntry(v.name + " " + v.status + " pool " + p.name, null, x); }));
          });
          if (v.error && !refused.length) { tw.appendChild(el("div", null, v.error)); }
          tr.appendChild(tw); vb.appendChild(tr);
        });
        vt.appendChild(vb); box.appendChild(vt);
      }
      root.appendChild(box);
    });
  }

  // ------------------------------------------------------------------ header
  var sum = D.summary || {}, st = sum.status || {};
  document.getElementById("meta").textContent = (D.g ? "generated " + D.g + " \u00b7 " : "") + "profiles: " +
    ((D.inputs || {}).profiles || []).join(", ") + " \u00b7 parameters: " + JSON.stringify((D.inputs || {}).params || {});
  document.getElementById("summary").textContent = (sum.hosts || 0) + " hosts (" + (st.fail || 0) + " fail, " + (st.warn || 0) +
    " warn, " + (st.pass || 0) + " pass, " + (sum.hosts_without_facts || 0) + " without facts) \u00b7 " + (sum.requirements || 0) +
    " requirements \u00b7 " + (sum.vms || 0) + " VMs \u00b7 " + (sum.pools || 0) + " migration pools";
  show((location.hash || "#hosts").slice(1));
  document.body.dataset.ready = "1";
  if (window.performance && performance.mark) { performance.mark("report-ready"); }
})();
"""
