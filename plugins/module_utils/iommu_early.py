# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Early binding: make PCI devices belong to vfio-pci from early boot, before their native driver.

Two methods, chosen per host from how the running kernel ships vfio-pci
(``/lib/modules/<release>/modules.builtin`` lists ``vfio-pci.ko`` when it is built in):

``modprobe`` (vfio-pci is a loadable module)
    ``/etc/modprobe.d/<file>.conf`` gets ``options vfio-pci ids=VVVV:DDDD[,...]`` and, for each
    native driver that is a module, ``softdep <native> pre: vfio-pci``: when udev (or the
    initramfs) loads the native driver for the device's modalias, modprobe loads vfio-pci first,
    and vfio-pci's ``ids=`` makes it take every device with those IDs. When the native driver or
    vfio-pci is in the initramfs, the initramfs is regenerated (its copy of modprobe.d must agree).
    A native driver built into the kernel binds during the kernel's own initcalls, before any
    module can load: refused.

``kernel-arg`` (vfio-pci is built in)
    modprobe.d options do not reach a built-in driver; ``vfio-pci.ids=...`` goes on the kernel
    command line (through :mod:`iommu_bootargs`). vfio-pci then takes the devices during its own
    initcall, before any module loads. The softdep is still written for native drivers that are
    modules. A built-in native driver that the kernel initialises before vfio-pci (it comes
    first in modules.builtin, which is in link order; both use ``module_init``) binds the device
    first: refused.

``ids=`` binds by ID: every device with a listed vendor:device goes to vfio-pci. A device with
the same ID that was not selected is a failure unless the caller accepts it.

The file the module owns records each device (``# device <address> <ids> native=<m,..>``) and
the method, so a later run (or ``state=absent``) knows what it set up. Parsing and rendering are
pure; the I/O takes a root directory (``/`` on a host, a fake tree in tests). Stdlib only.
"""

from __future__ import absolute_import, division, print_function

import errno
import fnmatch
import glob
import os
import re

__metaclass__ = type

DEFAULT_MODPROBE_FILE = "/etc/modprobe.d/iommu-host-vfio.conf"
EARLY_MARK = "# Managed by iommu.host.vfio_pci: early binding to vfio-pci"
VFIO_MODULE = "vfio_pci"
KERNEL_ARG = "vfio-pci.ids"
METHODS = ("modprobe", "kernel-arg")
MODULE_DIRS = ("/lib/modules", "/usr/lib/modules")
MODPROBE_DIRS = ("/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d", "/lib/modprobe.d",
                 "/usr/lib/modprobe.d")

_ID_RE = re.compile(r"^([0-9a-fA-F]{4}):([0-9a-fA-F]{4})$")
_MODNAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DEVICE_RE = re.compile(r"^# device (\S+) (\S+) native=(\S+)(?: builtin=(\S+))?$")
_METHOD_RE = re.compile(r"^# method (\S+)(?: ids=(\S+))?")
_KO_RE = re.compile(r"\.ko(?:\.(?:xz|gz|zst|bz2|lz4))?$")
# initramfs: (tool, image pattern, lister, regenerate argv)
INITRAMFS_TOOLS = (
    ("update-initramfs", "/boot/initrd.img-%s", "lsinitramfs", ["-u", "-k", "all"]),
    ("dracut", "/boot/initramfs-%s.img", "lsinitrd", ["-f", "--regenerate-all"]),
)


class EarlyError(Exception):
    """A request that cannot be carried out; ``failures`` are dicts (device, code, message, remedy)."""

    def __init__(self, message, failures=None):
        super(EarlyError, self).__init__(message)
        self.failures = failures or []


def describe_oserror(path, e):
    """'<path>: Permission denied (EACCES)' - the errno's name and text."""
    code = getattr(e, "errno", None)
    if code:
        return "%s: %s (%s)" % (path, os.strerror(code), errno.errorcode.get(code, "errno %d" % code))
    return "%s: %s" % (path, e)


# ---------------------------------------------------------------------------
# parsing (pure; never raises on arbitrary text)


def norm_module(name):
    """Module name as the kernel keys it: '-' and '_' are the same ('vfio-pci' -> 'vfio_pci')."""
    return str(name).replace("-", "_")


def validate_id(text):
    """'10EC:8139' -> '10ec:8139'; None when not 4-hex:4-hex."""
    m = _ID_RE.match(str(text).strip()) if text is not None else None
    return "%s:%s" % (m.group(1).lower(), m.group(2).lower()) if m else None


def valid_module_name(name):
    return bool(name) and bool(_MODNAME_RE.match(str(name)))


def module_name_from_path(path):
    """'kernel/drivers/vfio/pci/vfio-pci.ko.zst' -> 'vfio_pci'; None when not a .ko path."""
    base = path.strip().rsplit("/", 1)[-1]
    m = _KO_RE.search(base)
    if not m or m.start() == 0:
        return None
    return norm_module(base[:m.start()])


def parse_modules_builtin(text):
    """modules.builtin -> module names in file order (which is the kernel's link order)."""
    out = []
    for line in (text or "").splitlines():
        name = module_name_from_path(line)
        if name and name not in out:
            out.append(name)
    return out


def parse_modules_dep(text):
    """modules.dep -> set of loadable module names (the part before ':' of each line)."""
    out = set()
    for line in (text or "").splitlines():
        head = line.split(":", 1)[0]
        name = module_name_from_path(head)
        if name:
            out.add(name)
    return out


def parse_modules_alias(text):
    """modules.alias -> [(pattern, module)] for 'alias <pattern> <module>' lines."""
    out = []
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "alias":
            out.append((parts[1], norm_module(parts[2])))
    return out


def parse_builtin_modinfo(data):
    """modules.builtin.modinfo (NUL-separated 'module.key=value') -> [(pattern, module)] of the aliases."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    out = []
    for rec in (data or "").split("\0"):
        mod, sep, rest = rec.partition(".alias=")
        if sep and mod and "." not in mod and rest and not any(c.isspace() for c in rest):
            out.append((rest, norm_module(mod)))
    return out


def match_modalias(modalias, aliases):
    """Modules whose alias pattern matches ``modalias`` (fnmatch, as modprobe does), in alias order."""
    out = []
    if not modalias:
        return out
    for pattern, mod in aliases:
        if mod not in out and fnmatch.fnmatchcase(modalias, pattern):
            out.append(mod)
    return out


def parse_modprobe_conf(text):
    """modprobe.d text -> [(line number, command, [words])]; '\\' at a line's end continues it,
    '#' starts a comment line (kmod's rules)."""
    out = []
    buf, start = "", None
    for i, line in enumerate((text or "").split("\n"), 1):
        if start is None:
            start = i
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        stripped, first = buf.strip(), start
        buf, start = "", None
        if not stripped or stripped.startswith("#"):
            continue
        words = stripped.split()
        out.append((first, words[0], words[1:]))
    return out


def vfio_ids_options(directives):
    """The ids= values given to vfio-pci by 'options' directives: [(line, value)]."""
    out = []
    for lineno, cmd, words in directives:
        if cmd == "options" and words and norm_module(words[0]) == VFIO_MODULE:
            for w in words[1:]:
                if w.startswith("ids="):
                    out.append((lineno, w[4:]))
    return out


def read_state(text):
    """The file this module owns -> {"managed": {address: {"ids", "native", "builtin"}}, "method", "ids"}."""
    state = {"managed": {}, "method": None, "ids": None, "ours": False}
    for line in (text or "").splitlines():
        line = line.strip()
        if line.startswith(EARLY_MARK):
            state["ours"] = True
        m = _DEVICE_RE.match(line)
        if m:
            ids = validate_id(m.group(2))
            native = [n for n in m.group(3).split(",") if n != "-" and valid_module_name(n)]
            builtin = [n for n in (m.group(4) or "").split(",") if n and valid_module_name(n)]
            state["managed"][m.group(1)] = {"ids": ids, "native": native, "builtin": builtin}
            continue
        m = _METHOD_RE.match(line)
        if m and m.group(1) in METHODS:
            state["method"] = m.group(1)
            state["ids"] = m.group(2)
    return state


def render(managed, method, release):
    """The owned modprobe.d text for ``managed`` ({address: {"ids", "native", "builtin"}}); '' when empty.

    ``native``: the device's native driver modules (softdep for those not in ``builtin``).
    """
    if not managed:
        return ""
    ids = sorted(set(info["ids"] for info in managed.values() if info.get("ids")))
    softdeps = sorted(set(n for info in managed.values() for n in info.get("native") or ()
                          if n not in (info.get("builtin") or ())))
    why = {"modprobe": "vfio-pci is a loadable module of %s: its ids= option below makes it take the devices "
                       "when modprobe loads it (the softdeps load it before each native driver)" % release,
           "kernel-arg": "vfio-pci is built into %s: modprobe.d options do not reach it, so %s=%s is on the "
                         "kernel command line; the softdeps keep module loads in the same order"
                         % (release, KERNEL_ARG, ",".join(ids))}[method]
    lines = [EARLY_MARK + " (state: absent removes devices, and the file with the last one).",
             "# %s." % why,
             "# ids= binds by vendor:device ID: every device with a listed ID goes to vfio-pci.",
             "# method %s ids=%s" % (method, ",".join(ids))]
    for addr in sorted(managed):
        info = managed[addr]
        lines.append("# device %s %s native=%s%s" % (
            addr, info.get("ids") or "-", ",".join(info.get("native") or ()) or "-",
            " builtin=%s" % ",".join(info["builtin"]) if info.get("builtin") else ""))
    if method == "modprobe":
        lines.append("options vfio-pci ids=%s" % ",".join(ids))
    for mod in softdeps:
        lines.append("softdep %s pre: vfio-pci" % mod)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# the host (reads below ``root``)


def host_path(root, path):
    return os.path.join(root, path.lstrip("/")) if root not in ("", "/") else path


def read_text(root, path, limit=64 << 20):
    """Text of a file (NULs kept), None when absent; other errors raise EarlyError with errno."""
    try:
        with open(host_path(root, path), "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except (IOError, OSError) as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise EarlyError("cannot read " + describe_oserror(path, e), [{
            "device": None, "code": "read_error", "message": "cannot read " + describe_oserror(path, e),
            "remedy": "Run as root."}])


class KernelModules:
    """What /lib/modules/<release> tells about the running kernel's modules."""

    def __init__(self, root, release):
        self.root = root
        self.release = release
        self.dir = None
        for d in MODULE_DIRS:
            cand = "%s/%s" % (d, release)
            if os.path.isdir(host_path(root, cand)):
                self.dir = cand
                break
        self.builtin = None
        self.loadable = None
        self.aliases = []
        self.sources = []
        if self.dir:
            text = read_text(root, self.dir + "/modules.builtin")
            if text is not None:
                self.builtin = parse_modules_builtin(text)
                self.sources.append(self.dir + "/modules.builtin")
            text = read_text(root, self.dir + "/modules.dep")
            if text is not None:
                self.loadable = parse_modules_dep(text)
                self.sources.append(self.dir + "/modules.dep")
            text = read_text(root, self.dir + "/modules.alias")
            if text is not None:
                self.aliases.extend(parse_modules_alias(text))
                self.sources.append(self.dir + "/modules.alias")
            text = read_text(root, self.dir + "/modules.builtin.modinfo")
            if text is not None:
                self.aliases.extend(parse_builtin_modinfo(text))
                self.sources.append(self.dir + "/modules.builtin.modinfo")

    def kind(self, module):
        """('builtin' | 'module' | None, evidence). The running kernel's /sys/module wins over the files."""
        name = norm_module(module)
        sysmod = "/sys/module/%s" % name
        if os.path.exists(host_path(self.root, sysmod + "/initstate")):
            return "module", "%s/initstate exists (a loaded module)" % sysmod
        if self.builtin is not None and name in self.builtin:
            return "builtin", "%s/modules.builtin lists %s" % (self.dir, name)
        if self.loadable is not None and name in self.loadable:
            return "module", "%s/modules.dep lists %s" % (self.dir, name)
        if os.path.isdir(host_path(self.root, sysmod)):
            return "builtin", "%s exists without initstate (built in)" % sysmod
        if self.builtin is not None and self.loadable is None:
            # modules.builtin is complete: a module it does not list is not built in
            return "module", "%s/modules.builtin does not list %s" % (self.dir, name)
        if self.builtin is not None:
            return None, "neither %s/modules.builtin nor modules.dep lists %s" % (self.dir, name)
        return None, ("no %s/modules.builtin for the running kernel %s and no /sys/module/%s"
                      % (self.dir or "%s/%s" % (MODULE_DIRS[0], self.release), self.release, name))

    def builtin_before(self, first, second):
        """True when built-in ``first`` initialises before built-in ``second`` (modules.builtin order);
        None when not both are listed."""
        if self.builtin is None:
            return None
        a, b = norm_module(first), norm_module(second)
        if a in self.builtin and b in self.builtin:
            return self.builtin.index(a) < self.builtin.index(b)
        return None


def device_modalias(reader, addr):
    base = "/sys/bus/pci/devices/%s" % addr
    text = reader.read(base + "/modalias")
    if text:
        return text.strip()
    for line in (reader.read(base + "/uevent") or "").splitlines():
        if line.startswith("MODALIAS="):
            return line[len("MODALIAS="):].strip()
    return None


def _is_vfio_module(name):
    return "vfio" in norm_module(name)


def native_drivers(reader, dev, kmods, resolver=None, recorded=None):
    """The device's native driver modules and where that came from: (modules, source).

    The driver bound now (when it is not a VFIO driver) wins; else the modalias matched against
    modules.alias and modules.builtin.modinfo (``resolver(modalias)``, e.g. ``modprobe -R``, when
    those files are missing); else what an earlier run recorded."""
    drv = dev.get("driver")
    if drv and "vfio" not in drv:
        mod = reader.driver_module("pci", drv) or drv
        return [norm_module(mod)], "bound driver %s (module %s)" % (drv, mod)
    modalias = device_modalias(reader, dev["address"])
    if modalias and kmods.aliases:
        found = [m for m in match_modalias(modalias, kmods.aliases) if not _is_vfio_module(m)]
        if found:
            return found, "modalias %s in %s" % (modalias, ", ".join(
                s for s in kmods.sources if "alias" in s or "modinfo" in s))
    if modalias and resolver:
        found = [norm_module(m) for m in resolver(modalias) or () if valid_module_name(m)]
        found = [m for m in found if not _is_vfio_module(m)]
        if found:
            return found, "modprobe -R %s" % modalias
    if recorded:
        return list(recorded), "recorded by an earlier run (or by the udev rule)"
    return [], "unknown (modalias %s matches no module)" % modalias


def other_vfio_ids(root, own_file):
    """ids= given to vfio-pci by modprobe.d files other than ``own_file``: [(path, line, value)]."""
    out = []
    own = os.path.abspath(host_path(root, own_file))
    for d in MODPROBE_DIRS:
        for path in sorted(glob.glob(host_path(root, d) + "/*.conf")):
            if os.path.abspath(path) == own:
                continue
            try:
                with open(path, "rb") as f:
                    text = f.read(1 << 20).decode("utf-8", "replace")
            except (IOError, OSError):
                continue
            for lineno, value in vfio_ids_options(parse_modprobe_conf(text)):
                out.append((path, lineno, value))
    return out


def cmdline_vfio_ids(cmdline):
    """vfio-pci.ids / vfio_pci.ids values on a kernel command line: [(key, value)]."""
    out = []
    for word in (cmdline or "").split():
        key, sep, value = word.partition("=")
        if sep and norm_module(key) == "vfio_pci.ids":
            out.append((key, value))
    return out


# ---------------------------------------------------------------------------
# the plan


def plan(reader, root, release, bind_plan, early, allow_shared_ids=False, modprobe_file=DEFAULT_MODPROBE_FILE,
         resolver=None, cmdline=None, original=None):
    """What early binding needs on this host. Pure apart from reads below ``root``.

    ``bind_plan``: the plan of :func:`iommu_vfio.build_plan` (its devices and state).
    ``early``: with state present, add the plan's vfio-pci targets to the early set; False leaves the
    file as it is. With state absent the released devices always leave the early set.
    Returns a dict (see the module's RETURN ``early``); raises EarlyError listing every problem.
    """
    state = bind_plan["state"]
    original = original or {}   # {address: the driver the udev rule recorded before the first bind}
    before_text = read_text(root, modprobe_file)
    old = read_state(before_text)
    out = {"method": None, "reason": None, "vfio_pci": None, "release": release, "ids": [], "remove_ids": [],
           "devices": [], "softdeps": [], "warnings": [],
           "file": {"path": modprobe_file, "before": before_text, "after": before_text, "changed": False,
                    "action": "unchanged"},
           "kernel_arg": None, "initramfs_modules": []}
    if before_text is not None and not old["ours"] and before_text.strip():
        raise EarlyError("%s exists and is not managed by iommu.host.vfio_pci" % modprobe_file, [{
            "device": None, "code": "foreign_file",
            "message": "%s exists and was not written by this module (no '%s' line)" % (modprobe_file, EARLY_MARK),
            "remedy": "Choose another modprobe_file, or move that file away."}])
    if state == "present" and not early:
        out["method"] = old["method"]
        out["ids"] = sorted(set(i["ids"] for i in old["managed"].values() if i.get("ids")))
        out["reason"] = "early is false: the early-binding file is left as it is"
        return out
    if state == "present" and bind_plan.get("driver") not in (None, "vfio-pci"):
        raise EarlyError("early binding supports vfio-pci only, not %s" % bind_plan["driver"], [{
            "device": None, "code": "early_driver",
            "message": "early binding is done with vfio-pci's ids= (vfio-pci only), not %s" % bind_plan["driver"],
            "remedy": "Drop early, or bind to vfio-pci."}])

    devices = reader.pci_devices()
    kmods = KernelModules(root, release)
    managed = dict(old["managed"])
    if state == "present":
        for entry in bind_plan["devices"]:
            if entry.get("driver_target", "vfio-pci") == "vfio-pci":
                managed[entry["address"]] = dict(old["managed"].get(entry["address"], {}))
    else:
        for entry in bind_plan["devices"]:
            managed.pop(entry["address"], None)

    failures = []
    if managed:
        vkind, vwhy = kmods.kind(VFIO_MODULE)
        if vkind is None:
            failures.append({"device": None, "code": "vfio_pci_unknown",
                             "message": "cannot tell whether vfio-pci is built in or a module: %s" % vwhy,
                             "remedy": "Install the running kernel's modules (/lib/modules/%s with modules.builtin "
                                       "and modules.dep; run depmod), or load vfio-pci once." % release})
            raise EarlyError(_summary(failures), failures)
        out["vfio_pci"] = vkind
        out["method"] = "modprobe" if vkind == "module" else "kernel-arg"
        out["reason"] = ("vfio-pci is a loadable module (%s): options in %s apply when modprobe loads it"
                         % (vwhy, modprobe_file) if vkind == "module" else
                         "vfio-pci is built into the kernel (%s): modprobe.d options do not apply to it, "
                         "so %s= goes on the kernel command line" % (vwhy, KERNEL_ARG))
    for addr in sorted(managed):
        info = managed[addr]
        dev = devices.get(addr)
        if dev is None:
            info.setdefault("native", [])
            info.setdefault("builtin", [])
            out["devices"].append({"address": addr, "ids": info.get("ids"), "native_drivers": info["native"],
                                   "native_builtin": info["builtin"], "source": "recorded (device absent now)"})
            continue
        ids = validate_id(_dev_ids(dev))
        if ids is None:
            failures.append({"device": addr, "code": "bad_id", "message": "%s has no valid vendor:device ID" % addr,
                             "remedy": "Check the device in lspci -nn."})
            continue
        recorded = info.get("native") or ([norm_module(original[addr])] if original.get(addr) else None)
        native, source = native_drivers(reader, dev, kmods, resolver, recorded)
        bad = [n for n in native if not valid_module_name(n)]
        if bad:
            failures.append({"device": addr, "code": "bad_module", "remedy": "Check modules.alias.",
                             "message": "%s: native driver name %r cannot be written to modprobe.d" % (addr, bad[0])})
            continue
        builtin = []
        for n in native:
            nkind, nwhy = kmods.kind(n)
            if nkind == "builtin":
                builtin.append(n)
                if out["method"] == "modprobe":
                    failures.append({
                        "device": addr, "code": "native_builtin",
                        "message": "%s: its native driver %s is built into the kernel (%s) while vfio-pci is a "
                                   "module: %s binds the device during boot, before any module (vfio-pci "
                                   "included) can load, so early binding cannot work" % (addr, n, nwhy, n),
                        "remedy": "Drop early for this device (the udev rule of persistent: true still moves it "
                                  "to vfio-pci after %s probed it), or use a kernel with vfio-pci built in "
                                  "or %s as a module." % (n, n)})
                elif out["method"] == "kernel-arg":
                    first = kmods.builtin_before(n, VFIO_MODULE)
                    if first:
                        failures.append({
                            "device": addr, "code": "native_builtin_first",
                            "message": "%s: its native driver %s is built in and the kernel initialises it before "
                                       "vfio-pci (%s/modules.builtin is in link order: %s comes first), so %s takes "
                                       "the device before vfio-pci.ids= can apply" % (addr, n, kmods.dir, n, n),
                            "remedy": "Drop early for this device (the udev rule of persistent: true still moves "
                                      "it to vfio-pci after boot), or use a kernel with %s as a module." % n})
                    elif first is None:
                        out["warnings"].append(
                            "%s: the native driver %s is built in and the order of its initialisation against "
                            "vfio-pci cannot be told (modules.builtin lists not both); vfio-pci.ids= takes the "
                            "device only if vfio-pci initialises first" % (addr, n))
            elif nkind is None:
                out["warnings"].append("%s: cannot tell whether the native driver %s is a module (%s); a softdep "
                                       "is written for it" % (addr, n, nwhy))
        if not native:
            out["warnings"].append("%s: no native driver found (%s); only ids= is set up" % (addr, source))
        info.update({"ids": ids, "native": native, "builtin": builtin})
        out["devices"].append({"address": addr, "ids": ids, "native_drivers": native, "native_builtin": builtin,
                               "source": source})

    early_ids = sorted(set(i["ids"] for i in managed.values() if i.get("ids")))
    out["ids"] = early_ids
    # IDs this file gave vfio-pci that leave it: the running vfio-pci still matches them (ids= made them
    # dynamic IDs), so a released device would go back to vfio-pci on the probe; remove_id drops them
    out["remove_ids"] = sorted(set(i["ids"] for i in old["managed"].values() if i.get("ids")) - set(early_ids)) \
        if state == "absent" else []
    shared = sorted(a for a, d in devices.items()
                    if a not in managed and not d.get("is_bridge") and validate_id(_dev_ids(d)) in early_ids)
    if shared:
        msg = ("ids=%s binds every device with those IDs, and %s %s not selected for early binding: "
               "vfio-pci takes %s at boot too" % (",".join(early_ids), ", ".join(
                   "%s (%s, on %s)" % (a, validate_id(_dev_ids(devices[a])), devices[a].get("driver") or "no driver")
                   for a in shared), "is" if len(shared) == 1 else "are", "it" if len(shared) == 1 else "them"))
        if allow_shared_ids:
            out["warnings"].append(msg + " (early_allow_shared_ids: true accepts that)")
        else:
            failures.append({"device": ", ".join(shared), "code": "shared_id", "message": msg,
                             "remedy": "Select every device with that ID (e.g. by vendor:device), or set "
                                       "early_allow_shared_ids: true to accept that they go to vfio-pci at boot."})
    if failures:
        raise EarlyError(_summary(failures), failures)

    method = out["method"] or old["method"]
    after_text = render(managed, out["method"], release) if managed else ""
    after = after_text or None
    f = out["file"]
    f["after"] = after
    f["changed"] = (before_text or None) != after
    f["action"] = ("unchanged" if not f["changed"] else "remove" if after is None
                   else "create" if before_text is None else "update")
    out["softdeps"] = sorted(set(n for i in managed.values() for n in i["native"] if n not in i["builtin"]))
    # the initramfs holds a copy of modprobe.d: what the file said before counts too (a removal)
    was = set(n for i in old["managed"].values() for n in i.get("native") or () if n not in (i.get("builtin") or ()))
    vkind = out["vfio_pci"] or (kmods.kind(VFIO_MODULE)[0] if old["managed"] else None)
    out["initramfs_modules"] = sorted(set(out["softdeps"]) | was) + ([VFIO_MODULE] if vkind == "module" else [])

    # the kernel argument: set while vfio-pci is built in and devices remain; removed when this file
    # had set it and no device remains (or vfio-pci became a module)
    if out["method"] == "kernel-arg":
        out["kernel_arg"] = {"state": "present", "args": ["%s=%s" % (KERNEL_ARG, ",".join(early_ids))]}
    elif method == "kernel-arg" or (old["method"] == "kernel-arg"):
        out["kernel_arg"] = {"state": "absent", "args": [KERNEL_ARG]}
    for path, lineno, value in other_vfio_ids(root, modprobe_file):
        out["warnings"].append("%s line %d also gives vfio-pci ids=%s; modprobe passes every options line and the "
                               "last ids= wins" % (path, lineno, value))
    for key, value in cmdline_vfio_ids(cmdline):
        if out["method"] == "modprobe" or key != KERNEL_ARG:
            out["warnings"].append("the running kernel's command line has %s=%s, which this module does not manage; "
                                   "it applies too" % (key, value))
        elif old["method"] != "kernel-arg" and value != ",".join(early_ids):
            out["warnings"].append("the running kernel's command line has %s=%s, set outside this module; the "
                                   "boot configuration gets %s=%s instead" % (key, value, key, ",".join(early_ids)))
    return out


def _dev_ids(dev):
    if not dev.get("vendor_id") or not dev.get("device_id"):
        return None
    return "%s:%s" % (dev["vendor_id"][2:], dev["device_id"][2:])


def _summary(failures):
    return " | ".join(("%s Remedy: %s" % (f["message"], f["remedy"])) if f.get("remedy") else f["message"]
                      for f in failures)


# ---------------------------------------------------------------------------
# initramfs


def initramfs_info(root, release, which):
    """Which initramfs tool this host has and its image for ``release``.

    Returns {"tool", "command" (argv to regenerate), "image", "image_exists", "lister"} (tool None
    when neither update-initramfs nor dracut is on PATH)."""
    for tool, pattern, lister, args in INITRAMFS_TOOLS:
        path = which(tool)
        if path:
            image = pattern % release
            return {"tool": tool, "command": [path] + list(args), "image": image,
                    "image_exists": os.path.exists(host_path(root, image)), "lister": which(lister)}
    return {"tool": None, "command": None, "image": None, "image_exists": False, "lister": None}


def modules_in_listing(listing, modules):
    """Which of ``modules`` have a .ko (any compression) in an initramfs file listing."""
    have = set()
    for line in (listing or "").splitlines():
        name = module_name_from_path(line.strip().split()[-1] if line.strip() else "")
        if name:
            have.add(name)
    return [m for m in modules if norm_module(m) in have]


def initramfs_decision(info, modules, listing, file_changed):
    """Whether to regenerate: {"regenerate", "reason", "contains"}.

    ``listing``: the image's file list (lsinitramfs/lsinitrd output), None when it could not be listed."""
    out = {"tool": info["tool"], "image": info["image"], "command": info["command"], "contains": [],
           "regenerate": False, "reason": None}
    if not info["tool"]:
        out["reason"] = "no initramfs tool (update-initramfs, dracut) on PATH"
        return out
    if not info["image_exists"]:
        out["reason"] = "no initramfs image %s for the running kernel" % info["image"]
        return out
    if listing is None:
        contains, known = list(modules), False
    else:
        contains, known = modules_in_listing(listing, modules), True
    out["contains"] = contains
    if not modules:
        out["reason"] = "no native driver module and no vfio-pci module whose loading the initramfs could see"
        return out
    if not contains:
        out["reason"] = "%s holds none of %s" % (info["image"], ", ".join(modules))
        return out
    if not file_changed:
        out["reason"] = "the modprobe.d file did not change"
        return out
    out["regenerate"] = True
    out["reason"] = ("%s holds %s and a copy of modprobe.d" % (info["image"], ", ".join(contains)) if known else
                     "%s could not be listed (%s missing or failed): regenerated to be safe"
                     % (info["image"], "lsinitramfs" if info["tool"] == "update-initramfs" else "lsinitrd"))
    return out


# ---------------------------------------------------------------------------
# carrying it out (the module passes itself; tests pass a fake with the same methods)


class _BootArgsModule:
    """What iommu_bootargs.run needs of AnsibleModule, with kernel_args' parameters."""

    def __init__(self, module, args, state, bootloader, update):
        self._module = module
        self.params = {"args": args, "state": state, "bootloader": bootloader, "update": update,
                       "backup": True, "grub_file": None, "grub_variable": "GRUB_CMDLINE_LINUX_DEFAULT",
                       "grub_cfg": None}
        self.check_mode = module.check_mode
        self._diff = True
        self.warnings = []
        self.failed = None

    def get_bin_path(self, name, required=False):
        return self._module.get_bin_path(name, required=required)

    def run_command(self, argv, **kw):
        return self._module.run_command(argv, **kw)

    def backup_local(self, path):
        return self._module.backup_local(path)

    def warn(self, msg):
        self.warnings.append(msg)

    def fail_json(self, msg, **kw):
        self.failed = dict(kw, msg=msg)
        raise EarlyError("kernel argument %s: %s" % (" ".join(self.params["args"]), msg), [{
            "device": None, "code": "kernel_arg", "message": msg,
            "remedy": "Set bootloader (and check the boot configuration it names)."}])


def write_file(root, path, text):
    """Atomically replace (or with None remove) the owned file; errno mapped in EarlyError."""
    real = host_path(root, path)
    try:
        if text is None:
            try:
                os.unlink(real)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise
            return
        d = os.path.dirname(real)
        if not os.path.lexists(d):
            os.makedirs(d, 0o755)
        tmp = "%s/.%s.iommu-host.tmp" % (d, os.path.basename(real))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, text.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o644)
        os.rename(tmp, real)
    except (IOError, OSError) as e:
        msg = "cannot write " + describe_oserror(path, e)
        raise EarlyError(msg, [{"device": None, "code": "write_error", "message": msg,
                                "remedy": "Run as root; check that the directory is writable."}])


def apply(module, early_plan, root="/", bootloader="auto", bootloader_update=True, update_initramfs=True,
          list_initramfs=None):
    """Write the file, set the kernel argument, regenerate the initramfs (nothing in check mode).

    ``list_initramfs(lister, image)`` returns the image's file list or None. Returns
    (result dict for RETURN ``early``, reboot_required, diffs). Raises EarlyError."""
    f = early_plan["file"]
    res = {k: early_plan[k] for k in ("method", "reason", "vfio_pci", "release", "ids", "remove_ids", "devices",
                                      "softdeps", "warnings")}
    res["file"] = {"path": f["path"], "action": f["action"], "changed": f["changed"]}
    res["kernel_arg"] = None
    res["initramfs"] = None
    res["changed"] = f["changed"]
    diffs = []
    if f["changed"]:
        diffs.append({"before_header": f["path"], "after_header": f["path"],
                      "before": f["before"] or "", "after": f["after"] or ""})
    reboot = f["changed"]

    info = initramfs_info(root, early_plan["release"], module.get_bin_path)
    listing = None
    if f["changed"] and info["tool"] and info["image_exists"] and early_plan["initramfs_modules"]:
        if list_initramfs and info["lister"]:
            listing = list_initramfs(info["lister"], info["image"])
    decision = initramfs_decision(info, early_plan["initramfs_modules"], listing, f["changed"])
    if not update_initramfs and decision["regenerate"]:
        decision["regenerate"] = False
        res["warnings"] = res["warnings"] + [
            "%s must be regenerated (%s) before the next boot; update_initramfs is false"
            % (decision["image"], decision["reason"])]
        decision["reason"] += "; not regenerated (update_initramfs: false)"
    res["initramfs"] = decision

    karg = early_plan.get("kernel_arg")
    if karg:
        proxy = _BootArgsModule(module, karg["args"], karg["state"], bootloader, bootloader_update)
        # iommu_bootargs is imported here so that this module stays usable without it (unit tests of the parsers)
        from ansible_collections.iommu.host.plugins.module_utils import iommu_bootargs
        kres = iommu_bootargs.run(proxy, root=root)
        res["kernel_arg"] = {"args": karg["args"], "state": karg["state"], "changed": kres["changed"],
                             "bootloader": kres["bootloader"], "pending": kres["pending"],
                             "files": kres["files"], "commands": kres["commands"],
                             "reboot_required": kres["reboot_required"]}
        res["warnings"] = res["warnings"] + proxy.warnings
        diffs.extend(kres.get("diff", []))
        res["changed"] = res["changed"] or kres["changed"]
        reboot = reboot or kres["reboot_required"]
    if module.check_mode:
        return res, reboot, diffs
    if f["changed"]:
        write_file(root, f["path"], f["after"])
    if decision["regenerate"]:
        rc, out, err = module.run_command(decision["command"])
        if rc != 0:
            # put the file back, so a rerun sees the change again and regenerates
            write_file(root, f["path"], f["before"])
            msg = "%s failed (rc=%d): %s; %s was restored to its previous content" % (
                " ".join(decision["command"]), rc, (err or out or "").strip()[-2000:], f["path"])
            raise EarlyError(msg, [{"device": None, "code": "initramfs", "message": msg,
                                    "remedy": "Fix the initramfs tool's error and run again."}])
    return res, reboot, diffs


def remove_dynamic_ids(root, ids):
    """Write 'VVVV DDDD' to vfio-pci's remove_id for each ID (before releasing its devices). An ID vfio-pci
    does not hold (ENODEV) or an absent driver is fine; other errors raise EarlyError with the errno."""
    done = []
    path = "/sys/bus/pci/drivers/vfio-pci/remove_id"
    if not os.path.exists(host_path(root, path)):
        return done
    for i in ids:
        vid = validate_id(i)
        if vid is None:
            continue
        try:
            fd = os.open(host_path(root, path), os.O_WRONLY)
            try:
                os.write(fd, vid.replace(":", " ").encode())
            finally:
                os.close(fd)
            done.append(vid)
        except (IOError, OSError) as e:
            if e.errno in (errno.ENODEV, errno.ENOENT):
                continue
            msg = "cannot write %s to %s" % (vid.replace(":", " "), describe_oserror(path, e))
            raise EarlyError(msg, [{"device": None, "code": "remove_id", "message": msg, "remedy": "Run as root."}])
    return done
