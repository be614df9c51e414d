"""Run an oracle QEMU inside a test-bed guest: does this VM configuration realize, and what does QEMU say?

The test-bed root (tests/testbed/build-root.sh) carries two QEMU releases, the
"oracles" against which the gate's verdicts are checked: QEMU 11.1.x from
Debian trixie-backports (installed) and 10.0.x from trixie (unpacked under
/opt/qemu-10.0). Each is addressed by its release through a wrapper,
``/usr/local/bin/qemu-<release>``, listed in the root's /etc/testbed/ORACLES
(``release upstream debian-version wrapper suite`` per line).

:func:`run` starts one of them inside a booted guest as a nested TCG process
that only realizes the devices and stops::

    qemu-<release> -machine q35,accel=tcg -nodefaults -display none -S -qmp stdio <device args>

with ``{"execute":"qmp_capabilities"}`` then ``{"execute":"quit"}`` on stdin.
QEMU either realizes every device, answers both commands and exits 0
(``started`` is True), or refuses the configuration and exits 1 with its reason
on stderr (``started`` False; the reason is in ``messages``). The guest must
hold the devices the arguments name (e.g. bind 0000:00:09.0 to vfio-pci first,
tests/integration/guestops.py). One run takes about 2 s in an idle guest.

Example::

    import oracle
    res = oracle.run(guest, "11.1", ["-object", "iommufd,id=fd0",
                                     "-device", "intel-iommu,caching-mode=on,aw-bits=39",
                                     "-device", "vfio-pci,host=0000:00:09.0,iommufd=fd0"])
    res.started, res.rc, res.messages, res.replies, res.as_dict()

By hand, in a guest (``testbed.py ssh intel``)::

    printf '{"execute":"qmp_capabilities"}\\n{"execute":"quit"}\\n' | qemu-10.0 -machine q35,accel=tcg \\
        -nodefaults -display none -S -qmp stdio -device intel-iommu,caching-mode=on ...

Only the Python standard library is used on both sides; in the guest the
root's /usr/bin/python3 times the run and enforces the timeout.
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import asdict, dataclass, field

ORACLES_FILE = "/etc/testbed/ORACLES"
BASE_ARGS = ("-nodefaults", "-display", "none", "-S", "-qmp", "stdio")
QMP_INPUT = '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n'

# Runs in the guest: start QEMU, feed QMP, collect everything, print one JSON document.
_DRIVER = r'''
import json, subprocess, sys, time
argv, timeout, feed = json.loads(sys.argv[1]), float(sys.argv[2]), sys.argv[3].encode()
t0 = time.monotonic()
try:
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
except OSError as e:
    print(json.dumps({"rc": None, "stdout": "", "stderr": "cannot start %s: %s" % (argv[0], e),
                      "seconds": 0.0, "timed_out": False}))
    sys.exit(0)
timed_out = False
try:
    out, err = p.communicate(feed, timeout=timeout)
except subprocess.TimeoutExpired:
    p.kill()
    out, err = p.communicate()
    timed_out = True
print(json.dumps({"rc": p.returncode, "stdout": out.decode("utf-8", "replace"),
                  "stderr": err.decode("utf-8", "replace"),
                  "seconds": round(time.monotonic() - t0, 3), "timed_out": timed_out}))
'''

# "qemu-system-x86_64: " and then, for an error tied to an option, "-device <opts>: ".
_PROG = re.compile(r"^(?:[\w./-]*/)?qemu[\w.-]*: ")
_OPTION = re.compile(r"^-(?:device|object|machine|M|global|drive|netdev|chardev|accel) [^ ]*?: ")


class OracleError(RuntimeError):
    """The oracle could not be asked (no such release, SSH failure, driver output unreadable)."""


@dataclass(frozen=True)
class Oracle:
    release: str          # "11.1"
    version: str          # upstream, "11.1.3"
    debian: str           # Debian package version, "1:11.1.3+ds-1~bpo13+1"
    wrapper: str          # "/usr/local/bin/qemu-11.1"
    suite: str            # "trixie-backports"


@dataclass
class OracleResult:
    """What one oracle run gave. ``started``: QEMU realized every device and answered
    both QMP commands (rc 0). ``messages``: QEMU's stderr lines without the
    ``qemu-system-x86_64: `` and ``-device <opts>: `` prefixes (errors and warnings)."""
    release: str
    argv: list
    started: bool
    rc: int | None
    stderr: str
    replies: list = field(default_factory=list)      # every QMP message, greeting and events included
    messages: list = field(default_factory=list)
    seconds: float = 0.0
    timed_out: bool = False

    @property
    def qemu_version(self) -> str | None:
        """major.minor.micro from the QMP greeting (None when QEMU refused before it)."""
        for r in self.replies:
            v = r.get("QMP", {}).get("version", {}).get("qemu")
            if v:
                return "%d.%d.%d" % (v["major"], v["minor"], v["micro"])
        return None

    @property
    def errors(self) -> list:
        """The messages that are not warnings."""
        return [m for m in self.messages if not m.startswith("warning:")]

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self):
        return "oracle %s: started=%s rc=%s %.1fs\n  command: %s\n  messages: %s" % (
            self.release, self.started, self.rc, self.seconds, shlex.join(self.argv),
            "\n            ".join(self.messages) or "-")


def parse_oracles(text: str) -> dict:
    """{release: Oracle} from the ORACLES file's text."""
    found = {}
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) != 5:
            raise OracleError("malformed ORACLES line: %r" % line)
        found[words[0]] = Oracle(*words)
    return found


_cache = {}


def oracles(guest) -> dict:
    """{release: Oracle} of the guest's root (read once per guest)."""
    key = (str(guest.dir), guest.pid)
    if key not in _cache:
        res = guest.run(["cat", ORACLES_FILE], timeout=60)
        if res.rc != 0:
            raise OracleError("%s: cannot read %s (rc %d): %s" % (guest.name, ORACLES_FILE, res.rc, res.stderr))
        _cache[key] = parse_oracles(res.stdout)
    return _cache[key]


def parse_messages(stderr: str) -> list:
    """QEMU's stderr lines without program and option prefixes."""
    out = []
    for line in stderr.splitlines():
        line = _PROG.sub("", line.rstrip(), count=1)
        line = _OPTION.sub("", line, count=1)
        if line:
            out.append(line)
    return out


def parse_replies(stdout: str) -> list:
    replies = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            replies.append(json.loads(line))
        except ValueError:
            continue
    return replies


def command(wrapper: str, device_args, machine: str = "q35,accel=tcg", extra_args=()) -> list:
    """The oracle's argv (see the module docstring)."""
    return [wrapper, "-machine", machine] + list(BASE_ARGS) + list(extra_args) + list(device_args)


def run(guest, release: str, device_args, machine: str = "q35,accel=tcg", extra_args=(),
        timeout: float = 120) -> OracleResult:
    """Run oracle ``release`` ("11.1", "10.0") in ``guest`` with the given QEMU arguments
    (``["-device", "intel-iommu,...", ...]``) until it realized the devices and quit, refused
    them, or ``timeout`` seconds passed (then it is killed and ``timed_out`` is True)."""
    known = oracles(guest)
    if release not in known:
        raise OracleError("%s: no QEMU %s oracle in the root (has: %s)"
                          % (guest.name, release, ", ".join(sorted(known)) or "none"))
    argv = command(known[release].wrapper, device_args, machine, extra_args)
    res = guest.run(["python3", "-c", _DRIVER, json.dumps(argv), str(timeout), QMP_INPUT],
                    timeout=timeout + 60)
    if res.rc != 0:
        raise OracleError("%s: oracle driver failed (rc %d): %s" % (guest.name, res.rc, res.stderr.strip()))
    try:
        data = json.loads(res.stdout)
    except ValueError:
        raise OracleError("%s: unreadable driver output: %r" % (guest.name, res.stdout[-2000:])) from None
    replies = parse_replies(data["stdout"])
    returns = [r for r in replies if "return" in r]
    started = (data["rc"] == 0 and not data["timed_out"] and len(returns) == 2
               and any("QMP" in r for r in replies))
    return OracleResult(release=release, argv=argv, started=started, rc=data["rc"], stderr=data["stderr"],
                        replies=replies, messages=parse_messages(data["stderr"]),
                        seconds=data["seconds"], timed_out=data["timed_out"])
