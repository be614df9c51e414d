"""Fixtures for the real-kernel test-bed suite (tests/testbed/testbed.py).

Mark tests ``@pytest.mark.testbed`` (all profiles) or
``@pytest.mark.testbed("intel", "amd")`` (only those). Fixtures:

``testbed_kernel``    the bzImage (runs tests/testbed/build-kernel.sh, which
                      answers from its cache in seconds once built; set
                      TESTBED_KERNEL=path to skip it, TESTBED_BUILD_KERNEL=0 to
                      use the newest cached build instead of building).
``testbed_root``      the guests' root directory (runs tests/testbed/build-root.sh,
                      which answers from its cache in seconds once built; set
                      TESTBED_ROOT=dir to skip it, TESTBED_BUILD_ROOT=0 to use
                      the newest cached root instead of building).
``testbed``           session-wide pool of guests. ``testbed.boot("intel", ...)``
                      returns {name: Guest}; the first call boots every profile
                      any collected test asks for, in parallel; guests are
                      reused by later tests and always stopped at session end.
                      ``testbed["intel"]`` is one guest; ``testbed.restart(name)``
                      gives a test a freshly booted one.
``testbed_guests``    {name: Guest} for the profiles of the test's marker.
``inventory_path``    Ansible YAML inventory of those guests (group ``testbed``).
``ansible_playbook``  run(playbook, ...) -> PlaybookResult(rc, stdout, stderr, json).
``testbed_adhoc``     pytest-ansible host manager for those guests (in-process).

When the kernel, the root, QEMU or OpenSSH is missing the tests skip with the reason,
or fail with it under CI=true. Guest boot failures always fail (with the
serial log). TESTBED_KEEP=1 keeps the session's run dir (logs, disk images);
it is also kept when a test failed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "testbed"))
import testbed as tb  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import guestops  # noqa: E402

VENV_BIN = REPO / ".venv" / "bin"
COLLECTIONS = REPO / "build" / "collections"
CALLBACKS = REPO / "tests" / "testbed" / "callback_plugins"
BOOT_TIMEOUT = float(os.environ.get("TESTBED_BOOT_TIMEOUT") or 300)


def unavailable(reason: str):
    """Skip, or fail under CI=true: the test bed cannot run on this machine."""
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail("test bed unavailable (CI=true): %s" % reason, pytrace=False)
    pytest.skip("test bed unavailable: %s" % reason)


def _build_running() -> bool:
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        if "build-kernel.sh" in tb.pid_cmdline(int(entry)):
            return True
    return False


def marker_profiles(item) -> list:
    """Profiles a test asks for: @pytest.mark.testbed("a", "b"), or all of them."""
    mark = item.get_closest_marker("testbed")
    if mark is None:
        return []
    names = list(mark.args) or list(mark.kwargs.get("profiles", ())) or tb.default_profiles()
    unknown = [n for n in names if n not in tb.PROFILES]
    if unknown:
        raise pytest.UsageError("%s: unknown test-bed profile(s) %s" % (item.nodeid, unknown))
    return names


# ---------------------------------------------------------------------------
# kernel and guests
# ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def testbed_kernel() -> Path:
    if os.environ.get("TESTBED_KERNEL"):
        try:
            return tb.find_kernel()
        except tb.MissingDependency as e:
            unavailable(str(e))
    build = os.environ.get("TESTBED_BUILD_KERNEL", "1") != "0"
    if build and _build_running():
        cached = tb.cached_kernels()
        unavailable("build-kernel.sh is running (a build in progress%s); not starting a second one"
                    % (", cached: %s" % cached[0] if cached else ""))
    try:
        return tb.find_kernel(build=build)
    except tb.MissingDependency as e:
        unavailable(str(e))


@pytest.fixture(scope="session")
def testbed_root() -> Path:
    build = os.environ.get("TESTBED_BUILD_ROOT", "1") != "0" and not os.environ.get("TESTBED_ROOT")
    try:
        root = tb.find_root(build=build)
    except tb.MissingDependency as e:
        unavailable(str(e))
    problems = tb.root_problems(root)
    if problems:
        unavailable("; ".join(problems))
    return root


class TestbedPool:
    """Session-wide guests, booted lazily and in parallel, stopped at the end."""

    def __init__(self, kernel: Path, run_dir: Path, wanted: list, timeout: float, root: Path = None):
        self.kernel = kernel
        self.root = root
        self.run_dir = run_dir
        self.wanted = list(wanted)      # every profile the collected tests ask for
        self.timeout = timeout
        self.guests = {}
        self.failures = {}
        self.boot_log = []              # (names, seconds) per parallel boot
        self.arch_unavailable = {}      # arch -> why its kernel/root cannot be had (arm64 build failed)

    def boot(self, *names) -> dict:
        names = list(names) or tb.default_profiles()
        for n in names:
            if tb.PROFILES[n].arch in self.arch_unavailable:
                unavailable(self.arch_unavailable[tb.PROFILES[n].arch])
            if n in self.failures:
                pytest.fail("guest %s failed to boot earlier in this session:\n%s"
                            % (n, self.failures[n]), pytrace=False)
        missing = [n for n in names if n not in self.guests or not self.guests[n].is_running()]
        if missing:
            # boot everything the session will need at once: parallel boots are cheaper
            # (other architectures' guests only with their own: one failing boot fails its whole batch)
            arches = set(tb.PROFILES[n].arch for n in missing)
            batch = [n for n in dict.fromkeys(missing + self.wanted)
                     if (n not in self.guests or not self.guests[n].is_running()) and n not in self.failures
                     and (n in missing or tb.PROFILES[n].arch in arches)]
            t0 = time.time()
            try:
                self.guests.update(tb.boot_many(batch, run_dir=self.run_dir, kernel=self.kernel,
                                                root=self.root, timeout=self.timeout))
            except tb.MissingDependency as e:
                unavailable(str(e))
            except tb.BootError as e:
                for n in batch:
                    self.failures[n] = str(e)
                pytest.fail("test-bed boot failed:\n%s" % e, pytrace=False)
            self.boot_log.append((batch, round(time.time() - t0, 1)))
        return {n: self.guests[n] for n in names}

    def __getitem__(self, name) -> tb.Guest:
        return self.boot(name)[name]

    def restart(self, name, extra_kernel_args=None) -> tb.Guest:
        """A freshly booted guest (new disk image) for a test that must not see earlier changes."""
        old = self.guests.pop(name, None)
        if old is not None:
            old.stop()
        self.guests.update(tb.boot_many([name], run_dir=self.run_dir, kernel=self.kernel,
                                        root=self.root, timeout=self.timeout,
                                        extra_kernel_args=tuple(extra_kernel_args or ())))
        return self.guests[name]

    def inventory(self, names=None) -> Path:
        names = list(names) if names else sorted(self.guests)
        guests = self.boot(*names)
        return tb.inventory(guests.values(), self.run_dir / ("inventory-%s.yml" % "-".join(names)))

    def stop(self):
        tb.stop_all(list(self.guests.values()))


@pytest.fixture(scope="session")
def testbed(request, testbed_kernel, testbed_root):
    problems = tb.host_problems()
    if problems:
        unavailable("; ".join(problems))
    wanted = []
    for item in request.session.items:
        for n in marker_profiles(item):
            # the batch: the 9p-root guests (Profile.default); the disk-booted, SR-IOV and arm64 guests
            # boot alone when a test asks for them (under pytest-xdist each worker boots its own)
            if n not in wanted and tb.PROFILES[n].default:
                wanted.append(n)
    # Other architectures' kernel and root (arm64: build-kernel-arm64.sh, build-root-arm64.sh), built or
    # found in the cache once, when a collected test asks for such a guest; if that fails, only those
    # tests are unavailable.
    arch_unavailable = {}
    build = os.environ.get("TESTBED_BUILD_KERNEL", "1") != "0"
    for arch in sorted(set(tb.PROFILES[n].arch for item in request.session.items
                           for n in marker_profiles(item)) - {"x86_64"}):
        try:
            tb.ARCH_ARTIFACTS[arch] = tb.find_arch_artifacts(arch, build=build)
            problems = tb.root_problems(tb.ARCH_ARTIFACTS[arch][1])
            if problems:
                raise tb.MissingDependency("; ".join(problems))
        except tb.MissingDependency as e:
            arch_unavailable[arch] = "%s guests: %s" % (arch, e)
    base = tb.DEFAULT_RUN_DIR
    base.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="pytest-", dir=base))
    pool = TestbedPool(testbed_kernel, run_dir, wanted, BOOT_TIMEOUT, root=testbed_root)
    pool.arch_unavailable = arch_unavailable
    try:
        yield pool
    finally:
        pool.stop()
        failed = request.session.testsfailed
        if os.environ.get("TESTBED_KEEP") or failed or pool.failures:
            sys.stderr.write("\ntest-bed run dir kept: %s\n" % run_dir)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
        if pool.boot_log:
            sys.stderr.write("test-bed boots: %s\n" % "; ".join(
                "%s in %ss" % (",".join(n), s) for n, s in pool.boot_log))


@pytest.fixture
def testbed_guests(request, testbed) -> dict:
    return testbed.boot(*(marker_profiles(request.node) or tb.default_profiles()))


@pytest.fixture
def inventory_path(request, testbed, testbed_guests) -> Path:
    return testbed.inventory(list(testbed_guests))


# ---------------------------------------------------------------------------
# ansible-playbook
# ---------------------------------------------------------------------------

@dataclass
class PlaybookResult:
    rc: int
    stdout: str
    stderr: str
    json: dict | None
    command: list = field(default_factory=list)

    @property
    def stats(self) -> dict:
        return (self.json or {}).get("stats", {})

    def task_results(self, host: str) -> list:
        """[(task name, result dict)] for one host, in order."""
        out = []
        for play in (self.json or {}).get("plays", []):
            for task in play.get("tasks", []):
                if host in task.get("hosts", {}):
                    out.append((task["task"]["name"], task["hosts"][host]))
        return out

    def result(self, host: str, task_name: str | None = None) -> dict:
        """The result of the named task (default: the last task) on a host."""
        results = self.task_results(host)
        if task_name is not None:
            results = [r for r in results if r[0] == task_name]
        if not results:
            raise KeyError("no result for host %s task %r" % (host, task_name))
        return results[-1][1]

    def __str__(self):
        return "ansible-playbook rc=%d\n--- stdout ---\n%s\n--- stderr ---\n%s" % (
            self.rc, self.stdout[-20000:], self.stderr[-10000:])


def ansible_env(extra=None) -> dict:
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_STDOUT_CALLBACK": "testbed_json",
        "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACKS),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_TIMEOUT": "60",          # TCG guests answer slowly when the machine is busy
        "ANSIBLE_FORKS": "8",
        "PATH": "%s:%s" % (VENV_BIN, os.environ.get("PATH", "")),
    })
    env.pop("ANSIBLE_CONFIG", None)
    env.update(extra or {})
    return env


def run_playbook(playbook, inventory, limit=None, extra_vars=None, args=(), env=None,
                 timeout: float = 1800, workdir=None) -> PlaybookResult:
    """Run ansible-playbook from the venv. ``playbook``: a path, or plays (list/dict) to write as YAML."""
    if not isinstance(playbook, (str, os.PathLike)):
        workdir = Path(workdir or tempfile.mkdtemp(prefix="playbook-"))
        path = workdir / "playbook.yml"
        path.write_text(json.dumps(playbook if isinstance(playbook, list) else [playbook], indent=2))
        playbook = path
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(playbook)]
    if limit:
        cmd += ["--limit", limit if isinstance(limit, str) else ",".join(limit)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    cmd += list(args)
    try:
        proc = subprocess.run(cmd, cwd=str(REPO), env=ansible_env(env), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout, check=False)
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:
        rc = -1
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = (e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")) + \
            "\n(ansible-playbook timed out after %ds)" % timeout
    data = None
    start = out.find("{")
    if start >= 0:
        try:
            data = json.loads(out[start:])
        except ValueError:
            data = None
    return PlaybookResult(rc, out, err, data, cmd)


@pytest.fixture
def ansible_playbook(request, tmp_path):
    """run(playbook, inventory=None, limit=None, extra_vars=None, args=(), env=None, timeout=1800).

    Without ``inventory``, the test's guests (its testbed marker) are the inventory.
    """
    def run(playbook, inventory=None, **kwargs):
        if inventory is None:
            inventory = request.getfixturevalue("inventory_path")
        kwargs.setdefault("workdir", tmp_path)
        return run_playbook(playbook, inventory, **kwargs)
    return run


@pytest.fixture
def testbed_adhoc(request, inventory_path):
    """pytest-ansible host manager for the test's guests (runs Ansible in-process):
    ``testbed_adhoc.intel.command("uname -r")`` or ``testbed_adhoc.all.ping()``."""
    plugin = request.config.pluginmanager.getplugin("ansible")
    if plugin is None:
        pytest.skip("pytest-ansible is not installed")
    os.environ.setdefault("ANSIBLE_HOST_KEY_CHECKING", "False")
    return plugin.initialize(request.config, request, inventory=str(inventory_path),
                             host_pattern="testbed", connection="ssh", user="root")


@pytest.fixture(autouse=True)
def restore_drivers():
    """Give back, after each test, the devices it bound with guestops.bind_vfio."""
    yield
    guestops.restore_bound()


# Files whose tests boot guests of their own and reboot them (minutes each) run first, so that
# pytest-xdist's workers (make test-bed: -n 2 --dist loadfile --no-loadscope-reorder) start on them and
# finish together; the rest keeps its order.
LONG_FIRST = ("test_early_binding_testbed.py", "test_bootloader_testbed.py", "test_sriov_testbed.py",
              "test_arm64_testbed.py")


def pytest_collection_modifyitems(config, items):
    for item in items:  # validate profile names early
        marker_profiles(item)
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FIRST)))
