# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""NUMA node and CPU sets as libvirt, QEMU and sysfs write them (``0-3,^2,5``). Pure.

One parser and one formatter for the VM definitions (vmdef) and the memory checks (policy), which
must not import each other's layers.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

MAX_NODE = 65535
_PART_RE = re.compile(r"^(\^?)([0-9]{1,7})(?:-([0-9]{1,7}))?$")


def parse(value):
    """The set of ints of ``0-3,^2,5``, of an int, or of a list of either; None when absent or unreadable
    (a malformed part, a number above MAX_NODE, a descending range, a negative or boolean value)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return {value} if 0 <= value <= MAX_NODE else None
    if isinstance(value, (list, tuple, set, frozenset)):
        out = set()
        for item in value:
            sub = parse(item)
            if sub is None:
                return None
            out |= sub
        return out
    if not isinstance(value, str) or len(value) > 4096:
        return None
    include, exclude = set(), set()
    for part in value.replace(" ", "").split(","):
        if not part:
            continue
        m = _PART_RE.match(part)
        if not m:
            return None
        lo = int(m.group(2))
        hi = int(m.group(3)) if m.group(3) is not None else lo
        if hi < lo or hi > MAX_NODE:
            return None
        (exclude if m.group(1) else include).update(range(lo, hi + 1))
    return include - exclude


def text(nodes):
    """``0-3,5`` for a set (or any iterable) of ints; "" for none."""
    out, run = [], []
    for n in sorted(nodes or ()):
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            out.append("%d-%d" % (run[0], run[-1]) if len(run) > 1 else "%d" % run[0])
        run = [n]
    if run:
        out.append("%d-%d" % (run[0], run[-1]) if len(run) > 1 else "%d" % run[0])
    return ",".join(out)
