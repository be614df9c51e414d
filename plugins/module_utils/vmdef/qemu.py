# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""QEMU command line -> requirements.

Input: a whole command line as ``virsh domxml-to-native qemu-argv`` prints it (environment
assignments, the binary, options continued over lines with ``\\``, shell quoting), a shell-style
string of options, or a list of argv words. Grammar followed:

* shell words: POSIX sh quoting - single quotes, double quotes (``\\`` escapes ``$ ` " \\`` and
  newline), backslash escapes, backslash-newline continuation, ``#`` comments. Unexpanded
  ``$VARIABLES`` are reported; shell operators (``; | & < > ( )``) are refused.
* option arguments: QEMU's QemuOpts syntax (util/qemu-option.c, get_opt_name_value() and
  opts_do_parse()): ``key=value`` pairs separated by ``,``; ``,,`` is a literal comma in a value;
  the first element without ``=`` is the implied key (``driver`` for -device, ``qom-type`` for
  -object, ``type`` for -machine and -numa, ``size`` for -m, ``guest`` for -name); a bare ``key``
  means ``key=on`` and a bare ``nokey`` means ``key=off`` (short-form booleans, deprecated since
  QEMU 6.0); a repeated key keeps every value (``-numa node,cpus=0-1,cpus=4-5``).
* JSON: ``-device '{"driver": ...}'`` and ``-object '{"qom-type": ...}'`` (QEMU >= 6.2 / 6.0; what
  libvirt emits) are read as JSON when the argument starts with ``{``.
* ``-global driver.prop=value`` and ``-global driver=d,property=p,value=v`` apply to every device
  of that QOM type or a subtype (x86-iommu globals reach intel-iommu and amd-iommu);
  ``-set device.<id>.<prop>=<value>`` changes one device.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import re

from ansible_collections.iommu.host.plugins.module_utils.vmdef.common import (
    MAX_INPUT_CHARS,
    MAX_WORDS,
    QOM_PARENTS,
    VIOMMU_DRIVERS,
    Definition,
    VMDefinitionError,
    format_nodeset,
    mdev_uuid,
    norm_props,
    norm_value,
    parse_nodeset,
    pci_address,
    qemu_size,
    text,
)

__metaclass__ = type

# Options that take no argument (qemu-options.hx entries without HAS_ARG), current and historic.
NOARG = frozenset((
    "S", "s", "snapshot", "nographic", "no-user-config", "nodefaults", "nodefconfig", "no-shutdown",
    "no-reboot", "enable-kvm", "no-kvm", "daemonize", "no-hpet", "no-acpi", "mem-prealloc", "enable-fips",
    "usb", "full-screen", "singlestep", "one-insn-per-tb", "no-fd-bootchk", "only-migratable", "preconfig",
    "win2k-hack", "rtc-td-hack", "no-kvm-irqchip", "no-kvm-pit", "no-kvm-pit-reinjection", "no-quit",
    "alt-grab", "ctrl-grab", "portrait", "no-frame", "sdl", "curses", "localtime", "old-param", "semihosting",
    "version", "help", "h", "xen-attach", "xen-domid-restrict", "perfmap", "jitdump", "no-kvm-pit-reinjection",
    "enable-sync-profile", "nouserconfig", "static-prealloc",
))

# Options that certainly take an argument (the ones read here and common ones).
WITHARG = frozenset((
    "machine", "M", "m", "device", "object", "global", "set", "numa", "name", "mem-path", "overcommit",
    "realtime", "readconfig", "incoming", "accel", "cpu", "smp", "drive", "blockdev", "netdev", "net",
    "chardev", "mon", "monitor", "serial", "display", "vga", "boot", "uuid", "rtc", "kernel", "initrd",
    "append", "bios", "pflash", "cdrom", "hda", "hdb", "hdc", "hdd", "fda", "fdb", "audiodev", "msg",
    "sandbox", "compat", "fsdev", "virtfs", "vnc", "spice", "qmp", "qmp-pretty", "pidfile", "D", "d",
    "L", "k", "watchdog-action", "action", "trace", "plugin", "run-with", "add-fd", "iscsi", "smbios",
    "acpitable", "fw_cfg", "loadvm", "option-rom", "parallel", "debugcon", "gdb", "icount", "seed",
    "tpmdev", "usbdevice", "runas", "chroot", "async-teardown", "xen-domid", "semihosting-config",
    "mem-share", "nic", "tb-size", "sd", "mtdblock", "dtb", "device-tree", "cpu-pm", "msg",
))

_IMPLIED = {"device": "driver", "object": "qom-type", "machine": "type", "numa": "type", "m": "size",
            "name": "guest", "accel": "accel", "netdev": "type", "smp": "cpus", "overcommit": None,
            "realtime": None, "global": None, "set": None}

_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_ARCH_RE = re.compile(r"qemu-system-([A-Za-z0-9_]+)$")
_HUGE_SIZE_RE = re.compile(r"huge(?:pages?|tlbfs|tlb)?[-_]?([0-9]+)([kmg])(?:i?b)?(?![a-z0-9])")
_SHELL_OPERATORS = ";|&<>()`"

VFIO_PCI = ("vfio-pci", "vfio-pci-nohotplug")
# VFIO devices the gate does not judge (platform, s390, vfio-user): each becomes a problem.
VFIO_OTHER = ("vfio-platform", "vfio-amba", "vfio-calxeda-xgmac", "vfio-ap", "vfio-ccw", "vfio-user-pci",
              "pci-assign", "kvm-pci-assign")  # the last two: legacy KVM assignment, removed in QEMU 2.12


# ---------------------------------------------------------------------------------------------
# Shell words

def shell_words(line):
    """argv words of a POSIX sh command line; raises VMDefinitionError on unbalanced quotes or on
    shell operators. Returns (words, notes) where notes lists unexpanded variables."""
    words, cur, notes = [], [], []
    in_word = False
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c == "\\":
            if i + 1 < n:
                if line[i + 1] == "\n":
                    i += 2
                    continue
                cur.append(line[i + 1])
                in_word = True
                i += 2
                continue
            cur.append(c)
            in_word = True
            i += 1
            continue
        if c == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise VMDefinitionError("malformed command line: unterminated single quote at character %d" % i)
            cur.append(line[i + 1:end])
            in_word = True
            i = end + 1
            continue
        if c == '"':
            in_word = True
            i += 1
            while True:
                if i >= n:
                    raise VMDefinitionError("malformed command line: unterminated double quote")
                c = line[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\" and i + 1 < n and line[i + 1] in '$`"\\\n':
                    if line[i + 1] != "\n":
                        cur.append(line[i + 1])
                    i += 2
                    continue
                if c == "$" and i + 1 < n and (line[i + 1].isalpha() or line[i + 1] in "_{("):
                    notes.append(_variable_at(line, i))
                if c == "`":
                    notes.append("`...` command substitution")
                cur.append(c)
                i += 1
            continue
        if c in " \t\r\n":
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
            i += 1
            continue
        if c == "#" and not in_word:
            end = line.find("\n", i)
            i = n if end < 0 else end
            continue
        if c in _SHELL_OPERATORS:
            raise VMDefinitionError(
                "malformed command line: shell operator %r at character %d; give one QEMU command "
                "(as `virsh domxml-to-native qemu-argv` prints it), not a shell script" % (c, i))
        if c == "$" and i + 1 < n and (line[i + 1].isalpha() or line[i + 1] in "_{"):
            notes.append(_variable_at(line, i))
        cur.append(c)
        in_word = True
        i += 1
    if in_word:
        words.append("".join(cur))
    return words, notes


def _variable_at(line, i):
    m = re.match(r"\$(\{[^}]*\}?|[A-Za-z_][A-Za-z0-9_]*|\()", line[i:i + 80])
    return m.group(0) if m else "$"


# ---------------------------------------------------------------------------------------------
# QemuOpts

def _value(arg, k):
    """(value, index after it) of a QemuOpts value starting at k: up to a single ',' (',,' is a
    literal comma)."""
    n, value = len(arg), []
    while k < n:
        if arg[k] == ",":
            if k + 1 < n and arg[k + 1] == ",":
                value.append(",")
                k += 2
                continue
            break
        value.append(arg[k])
        k += 1
    return "".join(value), k + 1


def parse_opts(arg, implied=None):
    """[(key, value)] of a QemuOpts argument, in order (see the module docstring)."""
    pairs = []
    i, n = 0, len(arg)
    first = True
    while i < n:
        # key: up to '=' or ','
        j = i
        while j < n and arg[j] not in "=,":
            j += 1
        key = arg[i:j]
        if j < n and arg[j] == "=":
            value, i = _value(arg, j + 1)
            pairs.append((key, value))
        elif first and implied:
            # the implied key's value may contain ',,' escapes too
            value, i = _value(arg, i)
            pairs.append((implied, value))
        else:
            if key:
                if key.startswith("no") and len(key) > 2:
                    pairs.append((key[2:], "off"))
                else:
                    pairs.append((key, "on"))
            i = j + 1
        first = False
    return pairs


def opts_dict(pairs):
    """{key: value} of QemuOpts pairs; a repeated key keeps the last value, except list-valued keys
    QEMU collects (cpus, host-nodes) which keep all of them."""
    out = {}
    for key, value in pairs:
        if key in ("cpus", "host-nodes") and key in out:
            prev = out[key]
            out[key] = (prev if isinstance(prev, list) else [prev]) + [value]
        else:
            out[key] = value
    return out


def parse_props(arg, implied, what):
    """Properties of a -device / -object argument, JSON or QemuOpts; raises on malformed JSON."""
    stripped = arg.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError as e:
            raise VMDefinitionError("malformed %s JSON argument: %s" % (what, e))
        except RecursionError:
            raise VMDefinitionError("malformed %s JSON argument: nested too deeply" % what)
        if not isinstance(data, dict):
            raise VMDefinitionError("malformed %s JSON argument: not an object" % what)
        return data
    return opts_dict(parse_opts(arg, implied))


# ---------------------------------------------------------------------------------------------
# The command line

def _option_name(word):
    if word.startswith("--") and len(word) > 2:
        return word[2:]
    return word[1:]


def split_options(words, defn, has_binary=True):
    """[(option, argument or None)] after the environment and the binary."""
    i, n = 0, len(words)
    if has_binary:
        while i < n and _ENV_RE.match(words[i]):
            i += 1
        if i < n and words[i] == "env":
            i += 1
            while i < n and (words[i] in ("-i", "--ignore-environment", "-") or _ENV_RE.match(words[i])):
                i += 1
        if i < n and words[i] == "exec":
            i += 1
        if i < n and not words[i].startswith("-"):
            binary = words[i]
            m = _ARCH_RE.search(os.path.basename(binary))
            if m:
                defn.arch = m.group(1)
            i += 1
    out = []
    while i < n:
        word = words[i]
        if not word.startswith("-") or word == "-":
            i += 1  # a positional argument (a disk image): not read
            continue
        name = _option_name(word)
        if name in NOARG:
            out.append((name, None))
            i += 1
            continue
        has_next = i + 1 < n
        next_is_option = has_next and words[i + 1].startswith("-") and len(words[i + 1]) > 1 \
            and _option_name(words[i + 1]) in NOARG | WITHARG
        if name not in WITHARG and (not has_next or next_is_option):
            out.append((name, None))  # an unknown flag
            i += 1
            continue
        if not has_next:
            raise VMDefinitionError("malformed command line: option -%s at the end has no argument" % name)
        out.append((name, words[i + 1]))
        i += 2
    return out


class _State(object):
    def __init__(self):
        self.machine = {}
        self.devices = []   # (props, origin)
        self.objects = {}   # id -> props
        self.object_order = []
        self.globals = []   # (driver, prop, value)
        self.sets = []      # (group, id, prop, value)
        self.numa = []      # props of -numa node
        self.mem = {}       # -m props
        self.mem_path = None
        self.mlock = None


def _read_options(options, defn, st):
    for name, arg in options:
        if name in ("machine", "M"):
            st.machine.update(opts_dict(parse_opts(arg, "type")))
        elif name == "m":
            st.mem.update(opts_dict(parse_opts(arg, "size")))
        elif name == "device":
            props = parse_props(arg, "driver", "-device")
            if props.get("driver") in ("help", "?") or props.get("help") is not None:
                defn.problem("-device %s asks QEMU for help; it defines no device" % text(arg))
                continue
            st.devices.append((props, "-device"))
        elif name == "object":
            props = parse_props(arg, "qom-type", "-object")
            oid = props.get("id")
            key = oid if isinstance(oid, str) and oid else "#%d" % len(st.object_order)
            st.objects[key] = props
            st.object_order.append(key)
        elif name == "global":
            _read_global(arg, defn, st)
        elif name == "set":
            m = re.match(r"^([^.=]+)\.([^.=]+)\.([^=]+)=(.*)$", arg, re.S)
            if not m:
                defn.problem("-set %s is not group.id.property=value; ignored" % text(arg))
            else:
                st.sets.append(m.groups())
        elif name == "numa":
            props = opts_dict(parse_opts(arg, "type"))
            if props.get("type", "node") == "node":
                st.numa.append(props)
        elif name == "name":
            guest = opts_dict(parse_opts(arg, "guest")).get("guest")
            if guest:
                defn.name = guest
        elif name == "mem-path":
            st.mem_path = arg
        elif name == "overcommit":
            lock = opts_dict(parse_opts(arg, None)).get("mem-lock")
            if lock is not None:
                st.mlock = lock
        elif name == "realtime":
            lock = opts_dict(parse_opts(arg, None)).get("mlock")
            if lock is not None:
                st.mlock = lock
        elif name == "readconfig":
            defn.problem("-readconfig %s: devices and properties in that file are not read; the gate cannot "
                         "judge what it defines" % text(arg))
        elif name == "incoming":
            defn.problem("-incoming %s: QEMU starts as a migration destination; the definition does not say "
                         "whether the VM must migrate again (add the live_migration profile to judge that)" % text(arg))


def _read_global(arg, defn, st):
    pairs = opts_dict(parse_opts(arg, None))
    if "driver" in pairs and "property" in pairs:
        st.globals.append((pairs["driver"], pairs["property"], pairs.get("value", "")))
        return
    for key, value in pairs.items():
        if "." not in key:
            defn.problem("-global %s is not driver.property=value; ignored" % text(arg))
            continue
        driver, prop = key.split(".", 1)
        st.globals.append((driver, prop, value))


def _globals_for(driver, st):
    chain = [driver]
    for parent in QOM_PARENTS.get(driver, ()):
        chain.append(parent)
        chain.extend(QOM_PARENTS.get(parent, ()))
    out = {}
    # the most generic class first, so a global for the exact type wins
    for klass in reversed(chain):
        for gdriver, prop, value in st.globals:
            if gdriver == klass:
                out[prop] = value
    return out


def _norm_props(props):
    return norm_props(props)


def _apply_sets(st, defn):
    for group, oid, prop, value in st.sets:
        if group == "device":
            hits = [dev[0] for dev in st.devices if dev[0].get("id") == oid]
            if not hits:
                defn.problem("-set device.%s.%s: no -device with id %s" % (oid, prop, oid))
            for props in hits:
                props[prop] = value
        elif group == "object":
            if oid in st.objects:
                st.objects[oid][prop] = value
            else:
                defn.problem("-set object.%s.%s: no -object with id %s" % (oid, prop, oid))


def _vfio_device(props, origin, defn, st):
    props = dict(_globals_for(props.get("driver"), st), **props)
    norm = _norm_props(props)
    label = norm.get("id") if isinstance(norm.get("id"), str) else None
    entry = {"props": norm, "iommufd": False, "label": label}
    host = props.get("host")
    sysfsdev = props.get("sysfsdev")
    if isinstance(host, str) and host:
        addr = pci_address(host)
        if addr:
            entry["address"] = addr
        else:
            defn.problem("%s host=%s is not a PCI address: device ignored" % (props.get("driver"), text(host)))
            return
    elif isinstance(sysfsdev, str) and sysfsdev:
        base = os.path.basename(sysfsdev.rstrip("/"))
        if mdev_uuid(base):
            entry["mdev"] = mdev_uuid(base)
        elif pci_address(base):
            entry["address"] = pci_address(base)
        else:
            defn.problem("%s sysfsdev=%s names neither a PCI function nor an mdev: device ignored" % (
                props.get("driver"), text(sysfsdev)))
            return
    elif props.get("fd") is not None:
        defn.problem("%s%s is passed by file descriptor (fd=%s) without host= or sysfsdev=: the gate cannot "
                     "tell which device it is" % (props.get("driver"), " id=%s" % label if label else "",
                                                  text(props.get("fd"))))
        return
    else:
        defn.problem("%s%s has neither host=, sysfsdev= nor fd= (QEMU refuses it): device ignored" % (
            props.get("driver"), " id=%s" % label if label else ""))
        return
    backend = props.get("iommufd")
    if isinstance(backend, str) and backend:
        entry["iommufd"] = True
        obj = st.objects.get(backend)
        if obj is None or obj.get("qom-type") != "iommufd":
            defn.problem("%s iommufd=%s names no -object iommufd" % (props.get("driver"), text(backend)))
    defn.devices.append(entry)


def _viommu_device(props, origin, defn, st):
    driver = props.get("driver")
    model = VIOMMU_DRIVERS[driver]
    merged = dict(_globals_for(driver, st), **props)
    merged.pop("driver", None)
    defn.viommus.append((model, _norm_props(merged), "%s %s" % (origin, driver)))


def _resolve(defn, st):
    _apply_sets(st, defn)
    # machine
    mtype = st.machine.get("type")
    if mtype:
        defn.machine = mtype
    defn.machine_props = dict((k.replace("_", "-"), v) for k, v in st.machine.items())
    iommu = defn.machine_props.get("iommu")
    if isinstance(iommu, str) and iommu.lower() == "smmuv3":
        defn.viommus.append(("arm-smmuv3", {}, "-machine iommu=smmuv3"))
    elif norm_value(iommu) is True:
        defn.viommus.append(("intel-iommu", {}, "-machine iommu=on"))
        defn.problem("-machine iommu=on is the QEMU 2.x Intel vIOMMU switch (removed); read as intel-iommu "
                     "with QEMU's defaults")
    # devices
    for props, origin in st.devices:
        driver = props.get("driver")
        if not isinstance(driver, str):
            defn.problem("a %s argument has no driver: ignored" % origin)
            continue
        if driver in VIOMMU_DRIVERS:
            _viommu_device(props, origin, defn, st)
        elif driver in VFIO_PCI:
            _vfio_device(props, origin, defn, st)
        elif driver in VFIO_OTHER:
            defn.problem("%s device%s: the gate judges PCI devices on vfio-pci and mdevs only" % (
                driver, " id=%s" % props["id"] if isinstance(props.get("id"), str) else ""))
        elif driver != "AMDVI-PCI" and ("iommu" in driver.lower() or "smmu" in driver.lower()):
            defn.problem("unknown IOMMU-like device %s: not judged" % driver)
    defn.iommufd_objects = [k for k in st.object_order if st.objects[k].get("qom-type") == "iommufd"]
    _memory(defn, st)


def _backend_info(obj):
    """(source, hugepage size or None, hugepages?) of a memory backend object."""
    qtype = obj.get("qom-type")
    if qtype == "memory-backend-memfd":
        if norm_value(obj.get("hugetlb")) is True:
            return "memfd", qemu_size(obj.get("hugetlbsize", 0)) or None, True
        return "memfd", None, False
    if qtype == "memory-backend-file":
        path = obj.get("mem-path")
        if isinstance(path, str) and "huge" in path.lower():
            return "hugetlbfs", _path_page_size(path), True
        return "file", None, False
    return "anonymous", None, False


def _path_page_size(path):
    m = _HUGE_SIZE_RE.search(path.lower())
    return qemu_size(m.group(1) + m.group(2)) if m else None


def _memory(defn, st):
    mem = defn.memory
    if st.mem:
        size = st.mem.get("size")
        if size is not None:
            mem["size"] = qemu_size(size, "m")
            if mem["size"] is None:
                defn.problem("-m size %s is not a size" % text(size))
        if "maxmem" in st.mem:
            mem["max_size"] = qemu_size(st.mem["maxmem"])
        if "slots" in st.mem:
            slots = norm_value(st.mem["slots"])
            mem["slots"] = slots if isinstance(slots, int) and not isinstance(slots, bool) else None
    if st.mlock is not None:
        mem["locked"] = norm_value(st.mlock) is True or st.mlock == "on-fault"
    backends = dict((k, v) for k, v in st.objects.items() if str(v.get("qom-type", "")).startswith("memory-backend-"))
    main_id = defn.machine_props.get("memory-backend")
    if main_id in backends:
        obj = backends[main_id]
        source, page, huge = _backend_info(obj)
        mem["source"] = source
        mem["shared"] = norm_value(obj.get("share")) is True
        if huge:
            mem["hugepages"].append({"size": page, "nodeset": None})
        nodes = parse_nodeset(obj.get("host-nodes"))
        mem["host_nodes"] = format_nodeset(nodes)
        mem["policy"] = obj.get("policy")
        if mem["size"] is None:
            mem["size"] = qemu_size(obj.get("size"))
    elif main_id:
        defn.problem("-machine memory-backend=%s names no -object memory-backend-*" % text(main_id))
    for index, node in enumerate(st.numa):
        nid = norm_value(node.get("nodeid", index))
        cpus = node.get("cpus")
        cell = {"id": nid, "cpus": ",".join(cpus) if isinstance(cpus, list) else cpus, "size": None,
                "host_nodes": None, "policy": None, "hugepage_size": None}
        memdev = node.get("memdev")
        if memdev is not None:
            obj = backends.get(memdev)
            if obj is None:
                defn.problem("-numa node memdev=%s names no memory backend" % text(memdev))
            else:
                source, page, huge = _backend_info(obj)
                mem["source"] = mem["source"] or source
                mem["shared"] = mem["shared"] or norm_value(obj.get("share")) is True
                cell["size"] = qemu_size(obj.get("size"))
                cell["host_nodes"] = format_nodeset(parse_nodeset(obj.get("host-nodes")))
                cell["policy"] = obj.get("policy")
                if huge:
                    cell["hugepage_size"] = page
                    _add_hugepage(mem, page, nid)
        elif node.get("mem") is not None:
            cell["size"] = qemu_size(node.get("mem"), "m")
        mem["numa"].append(cell)
    if st.mem_path is not None and not mem["hugepages"]:
        if "huge" in st.mem_path.lower():
            mem["source"] = "hugetlbfs"
            mem["hugepages"].append({"size": _path_page_size(st.mem_path), "nodeset": None})
        else:
            mem["source"] = "file"
    if mem["source"] is None and mem["size"] is not None:
        mem["source"] = "anonymous"


def _add_hugepage(mem, page, node):
    for entry in mem["hugepages"]:
        if entry["size"] == page and entry["nodeset"] is not None:
            nodes = parse_nodeset(entry["nodeset"]) or set()
            if isinstance(node, int):
                nodes.add(node)
            entry["nodeset"] = format_nodeset(nodes)
            return
    mem["hugepages"].append({"size": page, "nodeset": "%d" % node if isinstance(node, int) else None})


def words_of(data):
    """argv words of a command line given as a string or a list of words."""
    if isinstance(data, str):
        if len(data) > MAX_INPUT_CHARS:
            raise VMDefinitionError("the command line is longer than %d characters" % MAX_INPUT_CHARS)
        words, notes = shell_words(data.replace("\r\n", "\n"))
        return words, notes
    if isinstance(data, (list, tuple)):
        if len(data) > MAX_WORDS:
            raise VMDefinitionError("the command line has more than %d words" % MAX_WORDS)
        total = 0
        words = []
        for w in data:
            if not isinstance(w, str):
                raise VMDefinitionError("an argv word is not a string: %s" % text(w))
            total += len(w)
            words.append(w)
        if total > MAX_INPUT_CHARS:
            raise VMDefinitionError("the command line is longer than %d characters" % MAX_INPUT_CHARS)
        return words, []
    raise VMDefinitionError("a QEMU command line must be a string or a list of words, not %s" % type(data).__name__)


def read_args(words, defn, has_binary=True):
    """Read QEMU options into defn (used for whole command lines and for libvirt's
    <qemu:commandline> arguments)."""
    st = _State()
    _read_options(split_options(words, defn, has_binary), defn, st)
    return st


def from_qemu(data):
    """Definition of a QEMU command line (string or argv list)."""
    words, notes = words_of(data)
    if not words:
        raise VMDefinitionError("the command line is empty")
    defn = Definition("qemu")
    for note in notes:
        defn.problem("the command line uses the shell expression %s, which is not expanded here" % note)
    st = read_args(words, defn)
    _resolve(defn, st)
    return defn


def resolve_embedded(defn, st):
    """Resolve the devices, objects and globals of <qemu:commandline> into a libvirt Definition
    (machine and memory stay libvirt's)."""
    _apply_sets(st, defn)
    for props, origin in st.devices:
        driver = props.get("driver")
        if not isinstance(driver, str):
            defn.problem("a <qemu:commandline> -device has no driver: ignored")
        elif driver in VIOMMU_DRIVERS:
            _viommu_device(props, "<qemu:commandline> -device", defn, st)
        elif driver in VFIO_PCI:
            _vfio_device(props, origin, defn, st)
        elif driver in VFIO_OTHER:
            defn.problem("%s device in <qemu:commandline>: the gate judges PCI devices on vfio-pci and mdevs only"
                         % driver)
    if st.machine:
        defn.problem("<qemu:commandline> has -machine %s: machine options there are not merged with libvirt's"
                     % text(",".join("%s=%s" % kv for kv in st.machine.items())))
    return st
