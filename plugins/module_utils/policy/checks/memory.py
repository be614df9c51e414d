# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Memory checks (profile memory): the VM's guest RAM, hugepage backing and NUMA placement against
the host's memory, hugepage pools and NUMA nodes (facts ``memory``, ``devices[a].numa_node``).

The VM's memory is the parameter ``guest_memory``: the ``memory`` dict of iommu.host.vm_requirements
({size, hugepages: [{size, nodeset}], numa: [{id, size, host_nodes, policy}], host_nodes, policy,
locked, hard_limit, ...}); check(vm=) and placement pass it, and select this profile, whenever the
VM definition gives its memory. Sizes are bytes, or strings with a binary unit (``4G``, ``2048k``).

memory.hugepages (host)  every hugepage size the VM uses exists on the host and has enough free pages
                         (on the host nodes the VM's memory is bound to). QEMU maps hugetlbfs/memfd
                         backends with MAP_SHARED|MAP_POPULATE-free reservations: a pool that cannot
                         reserve the pages fails the mmap ("unable to map backing store for guest RAM:
                         Cannot allocate memory", system/physmem.c file_ram_alloc via qemu_ram_mmap),
                         node-bound preallocation fails in qemu_prealloc_mem ("qemu_prealloc_mem:
                         preallocating memory failed").
memory.size (host)       the guest RAM that is not hugepage-backed fits the host's MemAvailable (warn) and
                         MemTotal less the hugepage pools (fail), on the bound nodes when the memory is
                         bound; the bound nodes exist (QEMU: "cannot bind memory to host NUMA nodes");
                         with VFIO all guest RAM is pinned (no overcommit, no swap), and a libvirt
                         hard_limit (= the memlock limit) below it makes the DMA map fail.
memory.numa_locality     (device) an assigned device sits on a host node the VM's memory is bound to.

Hosts whose facts have no memory section (gathered by an older collection, or /proc/meminfo unreadable)
get not_applicable for memory.size and memory.numa_locality and a warning for memory.hugepages, whose
failure QEMU would refuse; docs/memory.md.
"""

from __future__ import absolute_import, division, print_function

import re

from ansible_collections.iommu.host.plugins.module_utils import nodeset
from ansible_collections.iommu.host.plugins.module_utils.policy.facts import _dict, _int, _list, path
from ansible_collections.iommu.host.plugins.module_utils.policy.registry import FAIL, NA, PASS, WARN, _check, _r

__metaclass__ = type

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30

_UNITS = {"": 1, "b": 1, "k": KIB, "kb": KIB, "kib": KIB, "m": MIB, "mb": MIB, "mib": MIB,
          "g": GIB, "gb": GIB, "gib": GIB, "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40}
_SIZE_RE = re.compile(r"^\s*([0-9]{1,20})\s*([A-Za-z]{0,3})\s*$")
_NODE_KEY = re.compile(r"^[0-9]{1,5}$")
# numatune modes / memory-backend policies that confine the memory to its node set
_BINDING = (None, "strict", "bind", "restrictive", "interleave")

# QEMU's words (system/physmem.c, backends/hostmem.c, util/oslib-posix.c, hw/vfio/listener.c), checked
# against the strings of Debian's QEMU 11.1.3 binary
QEMU_MAP_BACKING = "unable to map backing store for guest RAM: Cannot allocate memory"
QEMU_PREALLOC = "qemu_prealloc_mem: preallocating memory failed: Bad address"
QEMU_BIND = "cannot bind memory to host NUMA nodes: Invalid argument"
QEMU_SETUP_RAM = "cannot set up guest memory 'pc.ram': Cannot allocate memory"
QEMU_DMA_MAP = ("vfio %s: memory listener initialization failed: Region pc.ram: vfio_container_dma_map(...) = -12 "
                "(Cannot allocate memory)")

_SOURCE = "/proc/meminfo, /sys/kernel/mm/hugepages, /sys/devices/system/node"
_VM = "params.guest_memory (the VM definition)"


# ---------------------------------------------------------------------------
# The VM's memory


def size_bytes(value):
    """Bytes from an int or a size string with a binary unit (``4G``, ``2048kB``, ``512MiB``); None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if value >= 0 and value.is_integer() else None
    if not isinstance(value, str):
        return None
    m = _SIZE_RE.match(value)
    if not m or m.group(2).lower() not in _UNITS:
        return None
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


# ``0-3,^2`` node sets (shared with the VM definitions' parser)
node_set = nodeset.parse
nodes_text = nodeset.text


def human(size):
    """``2 MiB``, ``1 GiB``, ``1.5 GiB`` for a byte count."""
    if size is None:
        return "unknown"
    for unit, name in ((1 << 40, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if size >= unit:
            value = size / float(unit)
            return ("%d %s" % (value, name)) if value == int(value) else ("%.1f %s" % (value, name))
    return "%d B" % size


def vm_memory(raw):
    """The VM's memory, normalised: (memory dict or None, [problems]).

    The dict: size (bytes or None), hugepages [{size (None = host default), cells (guest cells or None =
    all)}], numa [{id, size, host_nodes, policy}], host_nodes (set or None), policy, locked, hard_limit.
    """
    if raw is None:
        return None, []
    if not isinstance(raw, dict):
        return None, ["params.guest_memory is not a dict (the memory of iommu.host.vm_requirements)"]
    problems = []

    def sized(key, value, where):
        out = size_bytes(value)
        if value is not None and out is None:
            problems.append("%s %s=%r is not a size" % (where, key, value))
        return out

    def nodes(key, value, where):
        out = node_set(value)
        if value is not None and out is None:
            problems.append("%s %s=%r is not a node set" % (where, key, value))
        elif out is not None and not out:
            problems.append("%s %s=%r names no node; taken as not bound" % (where, key, value))
            out = None
        return out

    mem = {"size": sized("size", raw.get("size"), "memory"),
           "host_nodes": nodes("host_nodes", raw.get("host_nodes"), "memory"),
           "policy": str(raw["policy"]).lower() if isinstance(raw.get("policy"), str) else None,
           "locked": raw.get("locked") is True,
           "hard_limit": sized("hard_limit", raw.get("hard_limit"), "memory"),
           "hugepages": [], "numa": []}
    for entry in _list(raw.get("hugepages")):
        if not isinstance(entry, dict):
            problems.append("memory.hugepages entry %r is not a dict" % (entry,))
            continue
        mem["hugepages"].append({"size": sized("size", entry.get("size"), "hugepages entry"),
                                 "cells": nodes("nodeset", entry.get("nodeset"), "hugepages entry")})
    for index, cell in enumerate(_list(raw.get("numa"))):
        if not isinstance(cell, dict):
            problems.append("memory.numa entry %r is not a dict" % (cell,))
            continue
        cid = _int(cell.get("id"))
        mem["numa"].append({"id": cid if cid is not None else index,
                            "size": sized("size", cell.get("size"), "guest NUMA cell"),
                            "host_nodes": nodes("host_nodes", cell.get("host_nodes"), "guest NUMA cell"),
                            "policy": str(cell["policy"]).lower() if isinstance(cell.get("policy"), str)
                            else mem["policy"]})
    return mem, problems


def _binds(policy):
    return policy in _BINDING


def hugepage_demand(mem):
    """[{size (None = host default), nodes (host nodes the pages must come from, or None), bytes, what}].

    Guest NUMA cells take the hugepage entry naming their cell (libvirt <page nodeset=>, a -numa node's
    memdev), else the entry without a node set; a cell no entry covers is not hugepage-backed.
    """
    pages = mem["hugepages"]
    if not pages:
        return []
    cells = mem["numa"]
    out = []
    if cells and all(c["size"] is not None for c in cells):
        for cell in cells:
            entry = next((p for p in pages if p["cells"] is not None and cell["id"] in p["cells"]), None) or \
                next((p for p in pages if p["cells"] is None), None)
            if entry is None:
                continue
            nodes = cell["host_nodes"] if cell["host_nodes"] is not None else mem["host_nodes"]
            out.append({"size": entry["size"], "nodes": nodes if _binds(cell["policy"]) else None,
                        "bytes": cell["size"], "what": "guest NUMA cell %s" % cell["id"]})
        return out
    if mem["size"] is None:
        return []
    entry = next((p for p in pages if p["cells"] is None), pages[0])
    out.append({"size": entry["size"], "nodes": mem["host_nodes"] if _binds(mem["policy"]) else None,
                "bytes": mem["size"], "what": "guest RAM"})
    return out


def vm_nodes(mem):
    """Host nodes the VM's memory is placed on (any policy), or None when not placed."""
    nodes = set(mem["host_nodes"] or ())
    for cell in mem["numa"]:
        nodes |= set(cell["host_nodes"] or ())
    return nodes or None


def _bound_normal(mem, huge_cells):
    """Host nodes the non-hugepage memory is confined to (None = anywhere)."""
    sets = []
    if mem["numa"]:
        for cell in mem["numa"]:
            if cell["id"] in huge_cells:
                continue
            nodes = cell["host_nodes"] if cell["host_nodes"] is not None else mem["host_nodes"]
            if nodes is None or not _binds(cell["policy"]):
                return None
            sets.append(nodes)
    elif mem["host_nodes"] is not None and _binds(mem["policy"]):
        sets.append(mem["host_nodes"])
    if not sets:
        return None
    out = set()
    for s in sets:
        out |= s
    return out


# ---------------------------------------------------------------------------
# The host's memory


def _host(ctx):
    """The memory facts, or None when the facts carry none (older facts, unreadable /proc/meminfo)."""
    mem = _dict(ctx.facts.get("memory"))
    return mem if _int(mem.get("total")) is not None else None


def _host_nodes(host):
    """{"<n>": node facts} for the well-formed node entries."""
    return dict((k, v) for k, v in _dict(host.get("nodes")).items()
                if isinstance(v, dict) and isinstance(k, str) and _NODE_KEY.match(k))


def _node_ids(nodes):
    return set(int(k) for k in nodes)


def _not_given(what):
    return _r(NA, "No VM memory given (params.guest_memory; check(vm=) and placement take it from the VM definition): "
                  "%s is not judged." % what, {"params.guest_memory": None}, _VM)


def _unknown_host(status=NA):
    return _r(status, "The host's facts carry no memory section (gathered by an iommu.host release without memory "
                      "facts, or /proc/meminfo was unreadable): the VM's memory cannot be judged on this host.",
              {"memory.total": None}, _SOURCE,
              "Gather the facts again with this collection's iommu.host.iommu_facts." if status != NA else None)


def _vm_memory_and_host(ctx, params, what, host_unknown=NA, need=None):
    """The prelude of the memory checks: (mem, problems, host, None), or (.., result) when the check ends
    here: no VM memory given, VM memory unreadable, ``need(mem, problems)`` gives a result, or no
    memory facts for the host (judged ``host_unknown``)."""
    mem, problems = vm_memory(params.get("guest_memory"))
    if mem is None and not problems:
        return None, problems, None, _not_given(what)
    if mem is None:
        return None, problems, None, _r(
            WARN, "The VM's memory cannot be read: %s." % "; ".join(problems), {"params.guest_memory": "invalid"},
            _VM, "Give params.guest_memory as iommu.host.vm_requirements returns it.")
    if need is not None:
        absent = need(mem, problems)
        if absent is not None:
            return mem, problems, None, absent
    host = _host(ctx)
    if host is None:
        return mem, problems, None, _unknown_host(host_unknown)
    return mem, problems, host, None


def _pool_label(size):
    return "%s (hugepages-%dkB)" % (human(size), size // KIB)


def _vm_problems(problems):
    return (" Part of params.guest_memory was not understood: %s." % "; ".join(problems)) if problems else ""


# ---------------------------------------------------------------------------
# memory.hugepages


@_check("memory.hugepages", "host", "Hugepage backing of the VM fits the host's free hugepages",
        "memory.{hugepages,hugepage_size_default,nodes}, params.guest_memory",
        "QEMU system/physmem.c file_ram_alloc(): \"unable to map backing store for guest RAM\" (the hugetlbfs or "
        "memfd mapping reserves every page at mmap time); util/oslib-posix.c qemu_prealloc_mem(): \"qemu_prealloc_mem:"
        " preallocating memory failed\" (pages of a node-bound backend); Linux mm/hugetlb.c reservations")
def _hugepages(ctx, params):
    mem, problems, host, done = _vm_memory_and_host(
        ctx, params, "hugepage backing", WARN,
        lambda m, probs: None if m["hugepages"] else _r(
            NA, "The VM's memory is not backed by hugepages.%s" % _vm_problems(probs),
            {"params.guest_memory.hugepages": []}, _VM))
    if done:
        return done
    pools = dict((k, v) for k, v in _dict(host.get("hugepages")).items() if isinstance(v, dict))
    default = _int(host.get("hugepage_size_default"))
    nodes = _host_nodes(host)
    demand = hugepage_demand(mem)
    ev = {path("memory", "hugepage_size_default"): host.get("hugepage_size_default"),
          "params.guest_memory.hugepages": [{"size": p["size"], "nodeset": nodes_text(p["cells"]) if p["cells"]
                                             else None} for p in mem["hugepages"]]}
    if not demand:
        return _r(WARN, "The VM uses hugepages but its memory size is unknown, so the pages it needs cannot be "
                        "counted.%s" % _vm_problems(problems), ev, _VM,
                  "Give the VM's memory size (libvirt <memory>, QEMU -m).")
    fails, warns, lines, pools_judged = [], [], [], set()
    # group the demand by (page size, host node set)
    groups = {}
    for d in demand:
        size = d["size"] or default
        key = (size, tuple(sorted(d["nodes"])) if d["nodes"] is not None else None)
        groups.setdefault(key, []).append(d)
    for (size, bound), items in sorted(groups.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1] or ())):
        what = ", ".join(d["what"] for d in items)
        if size is None:
            fails.append(("The VM asks for the host's default hugepage size (%s), and the host reports none "
                          "(no Hugepagesize in /proc/meminfo: a kernel without hugetlbfs)." % what,
                          "Use a kernel with CONFIG_HUGETLBFS, or back the VM with normal memory."))
            continue
        key = "%dkB" % (size // KIB)
        pool = pools.get(key)
        need_bytes = sum(d["bytes"] for d in items)
        need = -(-need_bytes // size)
        if need_bytes % size:
            warns.append(("%s of %s is not a multiple of the %s page size; QEMU checks a hugepage backend's size "
                          "against its page size (\"backend 'memory-backend-file' memory size must be multiple of "
                          "%s\")." % (human(need_bytes), what, human(size), human(size)),
                          "Make the memory size a multiple of %s." % human(size)))
        if pool is None:
            supported = sorted(_int(p.get("size")) or 0 for p in pools.values())
            fails.append(("The host offers no %s hugepages (%s): /sys/kernel/mm/hugepages/hugepages-%dkB does not "
                          "exist, so QEMU cannot map the backend of %s: \"%s\"." % (
                              human(size), "sizes it offers: %s" % ", ".join(human(s) for s in supported)
                              if supported else "it offers no hugepage size at all", size // KIB, what,
                              QEMU_MAP_BACKING),
                          "Choose a page size the host offers (%s), or use a host whose CPU supports %s pages (x86: "
                          "the pdpe1gb CPU flag for 1 GiB pages) and a kernel with CONFIG_HUGETLBFS." % (
                              ", ".join(human(s) for s in supported) or "none", human(size))))
            continue
        total, free = _int(pool.get("total")), _int(pool.get("free"))
        reserved = _int(pool.get("reserved")) or 0
        ev[path("memory", "hugepages", key, "total")] = pool.get("total")
        ev[path("memory", "hugepages", key, "free")] = pool.get("free")
        ev[path("memory", "hugepages", key, "reserved")] = pool.get("reserved")
        if free is None:
            warns.append(("The free count of the %s pool is unknown." % _pool_label(size), None))
            continue
        usable = max(free - reserved, 0)
        global_need = sum(-(-sum(d["bytes"] for d in its) // size) for (s, _b), its in groups.items()
                          if s == size)
        judge_pool = size not in pools_judged     # the pool as a whole, once per page size
        pools_judged.add(size)
        if bound is not None:
            missing = [n for n in bound if "%d" % n not in nodes]
            if missing:
                fails.append(("The VM's hugepages for %s are bound to host node(s) %s, and the host has no node %s: "
                              "QEMU refuses the backend: \"%s\"." % (
                                  what, nodes_text(bound), nodes_text(missing), QEMU_BIND),
                              "Bind the memory to host nodes that exist (%s)." % (
                                  nodes_text(_node_ids(nodes)) or "none")))
                continue
            node_free = 0
            for n in bound:
                npool = _dict(_dict(nodes["%d" % n].get("hugepages")).get(key))
                ev[path("memory", "nodes", "%d" % n, "hugepages", key, "free")] = npool.get("free")
                node_free += _int(npool.get("free")) or 0
            if need > node_free:
                short = need - node_free
                first = sorted(bound)[0]
                node_nr = _int(_dict(_dict(nodes["%d" % first].get("hugepages")).get(key)).get("total")) or 0
                fails.append(("For %s, %d free %s pages are needed on host node(s) %s, which have %d: QEMU cannot "
                              "allocate them on those nodes (\"%s\"; or \"%s\" when the pool as a whole is "
                              "short)." % (what, need, human(size), nodes_text(bound), node_free,
                                           QEMU_PREALLOC, QEMU_MAP_BACKING),
                              "Reserve %d more %s pages on node %d: echo %d > /sys/devices/system/node/node%d/"
                              "hugepages/hugepages-%dkB/nr_hugepages, or at boot: hugepagesz=%s hugepages=%d:%d "
                              "on the kernel command line." % (
                                  short, human(size), first, node_nr + short, first, size // KIB,
                                  _cmdline_size(size), first, node_nr + short)))
                continue
            lines.append("%s: %d %s pages on node(s) %s (%d free there)" % (
                what, need, human(size), nodes_text(bound), node_free))
        else:
            lines.append("%s: %d %s pages (%d free, %d of them reserved)" % (
                what, need, human(size), free, reserved))
        if judge_pool and global_need > usable:
            short = global_need - usable
            overcommit = _int(pool.get("overcommit")) or 0
            surplus = _int(pool.get("surplus")) or 0
            if short <= max(overcommit - surplus, 0):
                warns.append(("The %s pool has %d usable free pages for %d needed; the %d missing may come from "
                              "surplus pages (nr_overcommit_hugepages=%d), which the kernel allocates only if "
                              "contiguous memory is free at that moment." % (_pool_label(size), usable,
                                                                             global_need, short, overcommit),
                              "Reserve the pages: echo %d > /sys/kernel/mm/hugepages/hugepages-%dkB/nr_hugepages."
                              % ((total or 0) + short, size // KIB)))
            else:
                fails.append(("The VM needs %d %s pages and the host has %d free (%d free, %d reserved by other "
                              "mappings): QEMU cannot map the hugepage backend: \"%s\"." % (
                                  global_need, human(size), usable, free, reserved, QEMU_MAP_BACKING),
                              "Reserve %d more: echo %d > /sys/kernel/mm/hugepages/hugepages-%dkB/nr_hugepages (may "
                              "fall short when memory is fragmented), or at boot: hugepagesz=%s hugepages=%d on the "
                              "kernel command line." % (short, (total or 0) + short, size // KIB,
                                                        _cmdline_size(size), (total or 0) + short)))
    # one message per failure, the first failure sets the remedy
    if fails:
        return _r(FAIL, " ".join(m for m, _rem in fails) + _vm_problems(problems), ev, _SOURCE,
                  " ".join(rem for _m, rem in fails if rem), effect="refuse")
    if warns:
        return _r(WARN, " ".join(m for m, _rem in warns) + (" Fits: %s." % "; ".join(lines) if lines else "")
                  + _vm_problems(problems), ev, _SOURCE, " ".join(rem for _m, rem in warns if rem) or None)
    return _r(PASS, "The host's free hugepages cover the VM: %s.%s" % ("; ".join(lines), _vm_problems(problems)),
              ev, _SOURCE)


def _cmdline_size(size):
    """The kernel command line's spelling of a page size (hugepagesz=2M, 1G)."""
    if size % GIB == 0:
        return "%dG" % (size // GIB)
    if size % MIB == 0:
        return "%dM" % (size // MIB)
    return "%dK" % (size // KIB)


# ---------------------------------------------------------------------------
# memory.size


def _viommu(params):
    model = params.get("viommu")
    return model if isinstance(model, str) and model not in ("none", "auto", "") else None


def memlock_libvirt(mem, n_vfio, viommu):
    """The RLIMIT_MEMLOCK libvirt sets for QEMU (qemuDomainGetMemLockLimitBytes, x86): the memtune hard_limit
    when set, unlimited (None) with <locked/>, else factor x guest memory + 1 GiB with VFIO devices, where the
    factor is the number of VFIO devices when the VM has a vIOMMU and 1 otherwise; 0 (not raised) without VFIO."""
    if mem["hard_limit"] is not None:
        return mem["hard_limit"]
    if mem["locked"]:
        return None
    if not n_vfio or mem["size"] is None:
        return 0
    factor = n_vfio if viommu else 1
    return factor * mem["size"] + GIB


@_check("memory.size", "host", "Guest RAM fits the host's memory (VFIO pins it)",
        "memory.{total,available,hugetlb,swap_total,overcommit_memory,commit_limit,committed,nodes}, "
        "params.guest_memory",
        "Linux mm/util.c __vm_enough_memory (overcommit), drivers/vfio/vfio_iommu_type1.c and "
        "drivers/iommu/iommufd/pages.c (pinned pages, RLIMIT_MEMLOCK); QEMU backends/hostmem.c "
        "host_memory_backend_memory_complete(): \"cannot bind memory to host NUMA nodes\"; libvirt "
        "qemuDomainGetMemLockLimitBytes")
def _size(ctx, params):
    mem, problems, host, done = _vm_memory_and_host(
        ctx, params, "the guest RAM", NA,
        lambda m, probs: None if m["size"] is not None else _r(
            NA, "The VM's memory size is not given.%s" % _vm_problems(probs), {"params.guest_memory.size": None}, _VM))
    if done:
        return done
    nodes = _host_nodes(host)
    demand = hugepage_demand(mem)
    default = _int(host.get("hugepage_size_default"))
    huge = sum(d["bytes"] for d in demand if (d["size"] or default))
    normal = max(mem["size"] - huge, 0)
    huge_cells = set()
    for cell in mem["numa"]:
        if any(d["what"] == "guest NUMA cell %s" % cell["id"] for d in demand):
            huge_cells.add(cell["id"])
    n_vfio = len(ctx.pci) + len(ctx.mdevs)
    viommu = _viommu(params)
    memlock = memlock_libvirt(mem, n_vfio, viommu)
    ev = {"params.guest_memory.size": mem["size"], "hugepage-backed": huge, "not hugepage-backed": normal,
          path("memory", "total"): host.get("total"), path("memory", "available"): host.get("available"),
          path("memory", "hugetlb"): host.get("hugetlb"), "vfio devices": n_vfio, "params.viommu": viommu,
          "libvirt memlock limit": "unlimited" if memlock is None else memlock}
    if n_vfio and viommu:
        pinned = ("With VFIO behind the %s vIOMMU, QEMU pins the guest RAM the guest maps for DMA (often all of "
                  "it), each device's address space on its own, so it cannot be swapped or overcommitted." % viommu)
    elif n_vfio:
        pinned = ("With VFIO, QEMU pins all guest RAM when it starts (mapped for DMA), so it cannot be swapped, "
                  "ballooned or overcommitted.")
    elif mem["locked"]:
        pinned = "The VM's memory is locked (<locked/> / mem-lock=on): all of it stays resident."
    else:
        pinned = ""
    pinned_at_start = bool(n_vfio and not viommu)

    bound = _bound_normal(mem, huge_cells)
    all_bound = set(mem["host_nodes"] or ())
    for cell in mem["numa"]:
        all_bound |= set(cell["host_nodes"] or ())
    missing = sorted(n for n in all_bound if "%d" % n not in nodes)
    if missing and nodes:
        ev[path("memory", "nodes_online")] = host.get("nodes_online")
        return _r(FAIL, "The VM's memory is bound to host node(s) %s, and this host has no node %s (nodes: %s): QEMU "
                        "refuses the backend: \"%s\" (libvirt refuses earlier: NUMA node ... is unavailable)." % (
                            nodes_text(all_bound), nodes_text(missing), nodes_text(_node_ids(nodes)),
                            QEMU_BIND), ev, _SOURCE,
                  "Bind the VM's memory (numatune nodeset, memnode, memory-backend host-nodes) to nodes this host has.",
                  effect="refuse")

    if mem["hard_limit"] is not None and n_vfio and mem["hard_limit"] < mem["size"]:
        at_start = ": QEMU fails at start: \"%s\"" % (QEMU_DMA_MAP % ctx.first_device())
        return _r(FAIL, "The VM's memtune hard_limit (%s) is below its guest RAM (%s): libvirt makes the hard_limit the "
                        "RLIMIT_MEMLOCK of QEMU, and VFIO cannot pin the guest RAM within it%s." % (
                            human(mem["hard_limit"]), human(mem["size"]),
                            at_start if pinned_at_start else " (the DMA maps of the guest fail once it maps that much)"),
                  ev, _SOURCE, "Raise hard_limit to at least guest RAM + 1 GiB (x the number of VFIO devices with a "
                               "vIOMMU), or remove it so that libvirt computes the memlock limit.",
                  effect="refuse" if pinned_at_start else "requirement")

    if bound is not None and nodes:
        totals = [_int(nodes["%d" % n].get("total")) for n in sorted(bound)]
        frees = [_int(nodes["%d" % n].get("free")) for n in sorted(bound)]
        for n in sorted(bound):
            ev[path("memory", "nodes", "%d" % n, "total")] = nodes["%d" % n].get("total")
            ev[path("memory", "nodes", "%d" % n, "free")] = nodes["%d" % n].get("free")
        if None in totals or None in frees:
            return _r(WARN, "The memory of host node(s) %s is unknown: the VM's %s not backed by hugepages cannot "
                            "be judged there." % (nodes_text(bound), human(normal)), ev, _SOURCE,
                      "Gather the facts again as root.")
        pool_bytes = 0
        for n in bound:
            for pool in _dict(nodes["%d" % n].get("hugepages")).values():
                if isinstance(pool, dict):
                    pool_bytes += (_int(pool.get("total")) or 0) * (_int(pool.get("size")) or 0)
        limit, avail, where = sum(totals) - pool_bytes, sum(frees), "host node(s) %s" % nodes_text(bound)
        avail_name = "MemFree"
    else:
        total = _int(host.get("total"))
        limit = total - (_int(host.get("hugetlb")) or 0)
        avail = _int(host.get("available"))
        if avail is None:
            avail = _int(host.get("free"))
        where, avail_name = "the host", "MemAvailable"
    tail = (" " + pinned) if pinned else ""
    if normal > limit:
        swap = _int(host.get("swap_total")) or 0
        overcommit = _int(host.get("overcommit_memory"))
        refuse_alloc = bound is None and (
            (overcommit in (0, None) and normal > limit + swap) or
            (overcommit == 2 and _int(host.get("commit_limit")) is not None and _int(host.get("committed")) is not None
             and normal > _int(host.get("commit_limit")) - _int(host.get("committed"))))
        ev[path("memory", "swap_total")] = host.get("swap_total")
        ev[path("memory", "overcommit_memory")] = host.get("overcommit_memory")
        if pinned_at_start:
            effect, quote = "refuse", " QEMU fails at start when VFIO pins it: \"%s\"." % (
                QEMU_DMA_MAP % ctx.first_device())
        elif refuse_alloc:
            effect, quote = "refuse", " QEMU cannot allocate it: \"%s\"." % QEMU_SETUP_RAM
        else:
            effect, quote = "requirement", " QEMU starts, and the guest is swapped or OOM-killed once it uses it."
        return _r(FAIL, "The VM's %s not backed by hugepages exceed the memory of %s outside the hugepage pools (%s)."
                        "%s%s%s" % (human(normal), where, human(limit), quote, tail, _vm_problems(problems)),
                  ev, _SOURCE, "Give the VM less memory, or place it on a host (or nodes) with more; memory in "
                               "hugepage pools is not available to normal allocations.", effect=effect)
    if normal == 0:
        return _r(PASS, "All of the VM's %s come from hugepage pools (memory.hugepages judges them).%s%s" % (
            human(mem["size"]), tail, _vm_problems(problems)), ev, _SOURCE)
    if avail is not None and normal > avail:
        return _r(WARN, "The VM's %s not backed by hugepages fit %s (%s outside the hugepage pools) but exceed its %s "
                        "(%s): the kernel must reclaim page cache or swap other processes to start it.%s%s" % (
                            human(normal), where, human(limit), avail_name, human(avail), tail, _vm_problems(problems)),
                  ev, _SOURCE, "Free memory on the host, or place the VM where more is available.")
    return _r(PASS, "The VM's %s not backed by hugepages fit %s's %s (%s)%s.%s%s" % (
        human(normal), where, avail_name, human(avail),
        (", and %s come from hugepage pools" % human(huge)) if huge else "", tail, _vm_problems(problems)),
        ev, _SOURCE)


# ---------------------------------------------------------------------------
# memory.numa_locality


@_check("memory.numa_locality", "device", "Assigned device on a host NUMA node of the VM's memory",
        "devices.<a>.numa_node, mdevs.<u>.numa_node, memory.nodes, params.guest_memory",
        "Linux drivers/pci/pci-sysfs.c numa_node (the firmware's _PXM/SRAT proximity); DMA to another node's "
        "memory crosses the interconnect", mdev=True)
def _numa_locality(ctx, addr, dev, params):
    mem, problems, host, done = _vm_memory_and_host(ctx, params, "NUMA locality")
    if done:
        return done
    nodes = _host_nodes(host)
    where = "mdevs" if ctx.is_mdev(addr) else "devices"
    ev = {path("memory", "nodes_online"): host.get("nodes_online"),
          path(where, addr, "numa_node"): dev.get("numa_node")}
    if len(nodes) <= 1:
        return _r(NA, "The host has %s NUMA node: every device and all memory are local." % (
            "a single" if nodes else "no"), ev, _SOURCE)
    placed = vm_nodes(mem)
    if placed is None:
        return _r(NA, "The VM's memory is not bound to host NUMA nodes (no numatune / memnode / host-nodes): the "
                      "kernel places it where its threads run, so locality is not decided by the definition.",
                  ev, _VM)
    ev["VM memory host nodes"] = nodes_text(placed)
    if "numa_node" not in dev:
        return _r(NA, "The facts have no numa_node for %s (gathered by an iommu.host release without it)." % addr,
                  ev, _SOURCE)
    node = dev.get("numa_node")
    if isinstance(node, bool) or not isinstance(node, int):
        return _r(NA, "The firmware gives %s no NUMA node (numa_node -1): its locality is unknown." % addr, ev,
                  _SOURCE)
    if node in placed:
        return _r(PASS, "%s is on host node %d, where the VM's memory is (nodes %s)." % (
            addr, node, nodes_text(placed)), ev, _SOURCE)
    return _r(WARN, "%s is on host node %d, and the VM's memory is on node(s) %s: every DMA of the device crosses the "
                    "interconnect between the nodes (lower bandwidth, higher latency)." % (addr, node,
                                                                                           nodes_text(placed)),
              ev, _SOURCE, "Bind the VM's memory (numatune nodeset / memnode, memory-backend host-nodes) to node %d, "
                           "or assign a device that sits on node(s) %s." % (node, nodes_text(placed)))
