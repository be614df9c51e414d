# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel interface: host memory, hugepage pools and NUMA nodes, read from procfs and sysfs.

:func:`read_memory` builds the ``memory`` section of the facts (docs/memory.md) through an
:class:`iommu_sysfs.SysfsReader` (so it works below a fixture root and records unreadable files
in ``reader.errors``). Everything it reads:

- ``/proc/meminfo``: MemTotal, MemFree, MemAvailable, SwapTotal, CommitLimit, Committed_AS,
  Hugepagesize (the default hugepage size), Hugetlb (memory in all hugepage pools);
- ``/proc/sys/vm/overcommit_memory``;
- ``/sys/kernel/mm/hugepages/hugepages-<N>kB/{nr,free,resv,surplus,nr_overcommit}_hugepages``:
  one pool per page size the kernel offers (the directory exists for each size the CPU and
  kernel support, also with 0 pages);
- ``/sys/devices/system/node/online`` and, per node, ``node<N>/meminfo`` (MemTotal, MemFree),
  ``node<N>/cpulist``, ``node<N>/distance`` and ``node<N>/hugepages/hugepages-<N>kB/
  {nr,free,surplus}_hugepages`` (the kernel keeps no per-node reservation count).

Values that are missing or unreadable are None; nothing here raises on odd content. The pure
parsers (:func:`parse_meminfo`, :func:`parse_hugepage_dir`, :func:`parse_cpulist`,
:func:`parse_count`) are tested with hypothesis. Stdlib only.
"""

from __future__ import absolute_import, division, print_function

import re

__metaclass__ = type

MEMINFO = "/proc/meminfo"
OVERCOMMIT = "/proc/sys/vm/overcommit_memory"
HUGEPAGES = "/sys/kernel/mm/hugepages"
NODES = "/sys/devices/system/node"

#: Largest CPU or node number accepted from a list (the kernel's NR_CPUS/MAX_NUMNODES are far below).
MAX_ID = 1 << 16
#: Largest number of entries a CPU list may expand to.
MAX_LIST = 1 << 16

_MEMINFO_LINE = re.compile(r"^(?:Node\s+\d+\s+)?([A-Za-z0-9_()]+):\s*([0-9]+)(?:\s*(kB))?\s*$")
_HUGEPAGE_DIR = re.compile(r"^hugepages-([0-9]{1,12})kB\Z")
_NODE_DIR = re.compile(r"^node([0-9]{1,5})\Z")
_RANGE = re.compile(r"^([0-9]{1,7})(?:-([0-9]{1,7}))?\Z")
_DIGITS = re.compile(r"^[0-9]+\Z")

# meminfo keys kept in the facts: key -> facts name
_GLOBAL_KEYS = (("MemTotal", "total"), ("MemFree", "free"), ("MemAvailable", "available"),
                ("SwapTotal", "swap_total"), ("CommitLimit", "commit_limit"),
                ("Committed_AS", "committed"), ("Hugepagesize", "hugepage_size_default"),
                ("Hugetlb", "hugetlb"))
_POOL_FILES = (("nr_hugepages", "total"), ("free_hugepages", "free"), ("resv_hugepages", "reserved"),
               ("surplus_hugepages", "surplus"), ("nr_overcommit_hugepages", "overcommit"))
_NODE_POOL_FILES = (("nr_hugepages", "total"), ("free_hugepages", "free"), ("surplus_hugepages", "surplus"))


# ---------------------------------------------------------------------------
# Pure parsers


def parse_meminfo(text):
    """``/proc/meminfo`` or ``node<N>/meminfo`` text -> {key: int}.

    Values with the ``kB`` unit become bytes (the kernel's kB are KiB); values without a unit
    (``HugePages_Total``) stay counts. The ``Node <N>`` prefix of a node's meminfo is dropped.
    Lines that do not have this shape are skipped; a key seen twice keeps its first value.
    """
    out = {}
    if not isinstance(text, str):
        return out
    for line in text.splitlines():
        m = _MEMINFO_LINE.match(line.strip())
        if not m or len(m.group(2)) > 20:
            continue
        key, number, unit = m.group(1), int(m.group(2)), m.group(3)
        if key not in out:
            out[key] = number * 1024 if unit else number
    return out


def parse_hugepage_dir(name):
    """Page size in bytes from a pool directory name (``hugepages-2048kB`` -> 2097152); None otherwise."""
    if not isinstance(name, str):
        return None
    m = _HUGEPAGE_DIR.match(name)
    if not m:
        return None
    kib = int(m.group(1))
    return kib * 1024 if kib > 0 else None


def pool_key(size):
    """The facts key of a pool of ``size`` bytes: the kernel's directory suffix (``2048kB``)."""
    return "%dkB" % (size // 1024)


def parse_cpulist(text):
    """Sorted ints from a kernel CPU/node list (``0-3,8,10-11``; empty -> []); None when malformed."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    if not text:
        return []
    if len(text) > 65536:
        return None
    out = set()
    for part in text.split(","):
        m = _RANGE.match(part.strip())
        if not m:
            return None
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo or hi >= MAX_ID:
            return None
        out.update(range(lo, hi + 1))
        if len(out) > MAX_LIST:
            return None
    return sorted(out)


def parse_count(text):
    """A non-negative decimal count (``nr_hugepages``); None when absent or malformed."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    if not _DIGITS.match(text) or len(text) > 20:
        return None
    return int(text)


def parse_numa_node(text):
    """A PCI device's ``numa_node``: the node number, or None for -1 (no node) or malformed text."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    if _DIGITS.match(text) and len(text) <= 7 and int(text) < MAX_ID:
        return int(text)
    return None


def parse_distances(text):
    """``node<N>/distance`` (``10 21``) -> [10, 21]; None when malformed."""
    if not isinstance(text, str):
        return None
    words = text.split()
    if len(words) > 4096 or not all(_DIGITS.match(w) and len(w) <= 6 for w in words):
        return None
    return [int(w) for w in words]


# ---------------------------------------------------------------------------
# Readers


def _pool(reader, base, files):
    """One hugepage pool directory -> {total, free, ...} (None for a missing or malformed file)."""
    out = {}
    for name, key in files:
        text = reader.read("%s/%s" % (base, name))
        value = parse_count(text)
        if text is not None and value is None:
            reader._error("%s/%s" % (base, name), "not a count: %r" % text[:80])  # pylint: disable=protected-access
        out[key] = value
    return out


def _pools(reader, top, files):
    pools = {}
    for name in reader.listdir(top):
        size = parse_hugepage_dir(name)
        if size is None:
            continue
        base = "%s/%s" % (top, name)
        pool = {"size": size}
        pool.update(_pool(reader, base, files))
        pool["source"] = base
        pools[pool_key(size)] = pool
    return pools


def _node(reader, node_id):
    base = "%s/node%d" % (NODES, node_id)
    info = parse_meminfo(reader.read(base + "/meminfo", limit=1 << 16))
    cpulist = reader.read(base + "/cpulist")
    cpus = parse_cpulist(cpulist)
    if cpulist is not None and cpus is None:
        reader._error(base + "/cpulist", "not a CPU list: %r" % cpulist[:80])  # pylint: disable=protected-access
    return {
        "id": node_id,
        "total": info.get("MemTotal"),
        "free": info.get("MemFree"),
        "cpulist": cpulist,
        "cpus": cpus,
        "distances": parse_distances(reader.read(base + "/distance")),
        "hugepages": _pools(reader, base + "/hugepages", _NODE_POOL_FILES),
        "source": base,
    }


def read_memory(reader):
    """The ``memory`` facts (see the module docstring); ``reader`` is an iommu_sysfs.SysfsReader."""
    text = reader.read(MEMINFO, limit=1 << 16)
    info = parse_meminfo(text)
    memory = dict((name, info.get(key)) for key, name in _GLOBAL_KEYS)
    memory["source"] = MEMINFO if text is not None else None
    overcommit = parse_count(reader.read(OVERCOMMIT))
    memory["overcommit_memory"] = overcommit
    memory["hugepages"] = _pools(reader, HUGEPAGES, _POOL_FILES)
    memory["hugepages_source"] = HUGEPAGES if reader.exists(HUGEPAGES) else None

    online_text = reader.read(NODES + "/online")
    online = parse_cpulist(online_text)
    listed = sorted(int(m.group(1)) for m in (_NODE_DIR.match(n) for n in reader.listdir(NODES)) if m)
    node_ids = [n for n in listed if online is None or n in online]
    memory["nodes_online"] = online
    memory["nodes"] = dict(("%d" % n, _node(reader, n)) for n in node_ids)
    memory["nodes_source"] = NODES if reader.exists(NODES) else None
    return memory
