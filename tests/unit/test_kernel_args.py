# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu.host.kernel_args and module_utils/iommu_bootargs.py.

Fixture files (tests/fixtures/boot/) are real layouts: Debian 12's and SUSE's
/etc/default/grub, an Ubuntu cloud-image drop-in, RHEL 9 ``grubby --info=ALL``
output and an /etc/kernel/cmdline. The module body runs in-process against a
fake root (module_utils ``run(module, root)``), and end to end through
``ansible-playbook -c local`` with a fake ``update-grub`` on PATH.
"""

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.iommu.host.plugins.module_utils import iommu_bootargs as B

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(REPO, "tests", "fixtures", "boot")
VENV_BIN = os.path.join(REPO, ".venv", "bin")
LINUX_DEFAULT = "GRUB_CMDLINE_LINUX_DEFAULT"
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fixture(name):
    with open(os.path.join(FIX, name), "rb") as f:
        return f.read()


def pairs(*args):
    return [B.validate_arg(a) for a in args]


def edit(text, args, state="present", variable=LINUX_DEFAULT):
    return B.edit_grub_default(text, variable, pairs(*args), state)


def var_line(text, variable=LINUX_DEFAULT):
    return [ln for ln in text.split("\n") if ln.lstrip().startswith(variable + "=")
            or ln.lstrip().startswith("export " + variable + "=")]


def other_lines(text, variable=LINUX_DEFAULT):
    return [ln for ln in text.split("\n") if ln not in var_line(text, variable)]


# ---------------------------------------------------------------------------
# tokens and arguments
# ---------------------------------------------------------------------------

def test_tokenize_kernel_quotes_and_separators():
    line = B.tokenize('  BOOT_IMAGE=/vmlinuz ro  dyndbg="file x.c +p"\tquiet ')
    assert line.texts() == ["BOOT_IMAGE=/vmlinuz", "ro", 'dyndbg="file x.c +p"', "quiet"]
    assert line.raw() == '  BOOT_IMAGE=/vmlinuz ro  dyndbg="file x.c +p"\tquiet '
    assert B.split_key('dyndbg="file x.c +p"') == ("dyndbg", "file x.c +p")
    assert B.split_key('"acpi_osi=Linux"') == ("acpi_osi", "Linux")
    assert B.split_key("quiet") == ("quiet", None)
    assert B.split_key("iommu=") == ("iommu", "")


def test_tokenize_double_quoted_shell_value():
    line = B.tokenize(r'quiet dyndbg=\"file x +p\" \$HOME', "double")
    assert line.texts() == ["quiet", 'dyndbg="file x +p"', "$HOME"]
    assert line.tokens[1].raw == r'dyndbg=\"file x +p\"'


@pytest.mark.parametrize("arg", ["", "a b", "it's", "a\\b", "$x", "`id`", 'x="y', '"q"=1', "=1", "--",
                                 'k=a"b"', "k=\n"])
def test_invalid_args(arg):
    with pytest.raises(B.BootArgsError):
        B.validate_arg(arg)


def test_valid_args():
    assert B.validate_arg("iommu=pt") == ("iommu", "pt")
    assert B.validate_arg("quiet") == ("quiet", None)
    assert B.validate_arg('dyndbg="file a +p"') == ("dyndbg", "file a +p")
    assert B.validate_arg("crashkernel=1G-4G:192M,4G-:256M") == ("crashkernel", "1G-4G:192M,4G-:256M")


def test_present_replaces_value_in_place_and_drops_duplicates():
    line = B.tokenize("ro iommu=nopt quiet iommu=off splash")
    new, changes = B.apply_args(line, pairs("iommu=pt"), "present")
    assert new.raw() == "ro iommu=pt quiet splash"
    assert changes == ["-iommu=nopt", "-iommu=off", "+iommu=pt"]


def test_present_last_occurrence_wins():
    line = B.tokenize("iommu=nopt iommu=pt")
    assert B.apply_args(line, pairs("iommu=pt"), "present")[1] == []
    line = B.tokenize("iommu=pt iommu=nopt")
    assert B.apply_args(line, pairs("iommu=pt"), "present")[0].raw() == "iommu=pt"


def test_present_repeated_key_kept_in_order():
    line = B.tokenize("ro console=tty0 quiet")
    new, _x = B.apply_args(line, pairs("console=tty0", "console=ttyS0,115200"), "present")
    assert new.raw() == "ro console=tty0 console=ttyS0,115200 quiet"
    assert B.apply_args(new, pairs("console=tty0", "console=ttyS0,115200"), "present")[1] == []


def test_present_inserts_before_init_arguments():
    new, _x = B.apply_args(B.tokenize("ro -- single iommu=x"), pairs("iommu=pt"), "present")
    assert new.raw() == "ro iommu=pt -- single iommu=x"
    new, _x = B.apply_args(B.tokenize("-- single"), pairs("iommu=pt"), "present")
    assert new.raw() == "iommu=pt -- single"


def test_absent_any_value_or_one_value():
    line = B.tokenize("quiet iommu=pt splash iommu")
    assert B.apply_args(line, pairs("iommu"), "absent")[0].raw() == "quiet splash"
    assert B.apply_args(line, pairs("iommu=pt"), "absent")[0].raw() == "quiet splash iommu"
    assert B.apply_args(line, pairs("iommu=nopt"), "absent")[1] == []
    assert B.apply_args(B.tokenize("iommu=pt quiet"), pairs("iommu"), "absent")[0].raw() == "quiet"


def test_pending_against_proc_cmdline():
    proc = B.tokenize("BOOT_IMAGE=/vmlinuz root=/dev/vda ro intel_iommu=on iommu=nopt").texts()
    args = [B.validate_arg(a) + (a,) for a in ("intel_iommu=on", "iommu=pt")]
    assert B.pending_args(proc, args, "present") == ["iommu=pt"]
    assert B.pending_args(proc, [("intel_iommu", "on", "intel_iommu=on")], "present") == []
    assert B.pending_args(proc, [("iommu", None, "iommu")], "absent") == ["iommu"]
    assert B.pending_args(proc, [("iommu", "pt", "iommu=pt")], "absent") == []


# ---------------------------------------------------------------------------
# /etc/default/grub
# ---------------------------------------------------------------------------

def test_debian_grub_present_then_idempotent():
    before = fixture("debian12-grub").decode()
    after, changes, lines = edit(before, ["intel_iommu=on", "iommu=pt"])
    assert changes == ["+intel_iommu=on", "+iommu=pt"] and lines == [9]
    assert var_line(after) == ['GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"']
    assert other_lines(after) == other_lines(before)
    assert len(after) == len(before) + len(" intel_iommu=on iommu=pt")
    again, changes2, _x = edit(after, ["intel_iommu=on", "iommu=pt"])
    assert again == after and changes2 == []


def test_debian_grub_cmdline_linux_variable():
    before = fixture("debian12-grub").decode()
    after, _x, lines = edit(before, ["iommu=pt"], variable="GRUB_CMDLINE_LINUX")
    assert lines == [10]
    assert 'GRUB_CMDLINE_LINUX="iommu=pt"\n' in after and 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n' in after


def test_single_quoted_grub_keeps_quotes_tab_and_comment():
    before = fixture("ubuntu-single-quoted-grub").decode()
    after, changes, _x = edit(before, ["iommu=pt", "intel_iommu=on"])
    assert "GRUB_CMDLINE_LINUX_DEFAULT='quiet splash iommu=pt intel_iommu=on'\t# tuned by hand\n" in after
    assert changes == ["-iommu=nopt", "+iommu=pt", "+intel_iommu=on"]
    assert other_lines(after) == other_lines(before)
    # a kernel-quoted value inside single quotes is read as the kernel sees it
    after2, ch2, _x = edit(before, ['console="ttyS0,115200n8"'], variable="GRUB_CMDLINE_LINUX")
    assert ch2 == [] and after2 == before


def test_unquoted_value_gets_double_quotes_when_needed_crlf_kept():
    before = "GRUB_TIMEOUT=3\r\nexport GRUB_CMDLINE_LINUX_DEFAULT=quiet\r\nGRUB_CMDLINE_LINUX=\r\n"
    after, _x, _x = edit(before, ["iommu=pt"])
    assert after == 'GRUB_TIMEOUT=3\r\nexport GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\r\nGRUB_CMDLINE_LINUX=\r\n'
    after, _x, _x = edit(before, ["iommu=pt"], variable="GRUB_CMDLINE_LINUX")
    assert after.endswith("GRUB_CMDLINE_LINUX=iommu=pt\r\n")
    after, _x, _x = edit(before, ["quiet"], state="absent")
    assert "export GRUB_CMDLINE_LINUX_DEFAULT=\r\n" in after


def test_suse_grub_replace_and_absent():
    before = fixture("suse-grub").decode()
    after, changes, _x = edit(before, ["mitigations=off"])
    assert changes == ["-mitigations=auto", "+mitigations=off"]
    assert ('GRUB_CMDLINE_LINUX_DEFAULT="splash=silent resume=/dev/disk/by-uuid/0d9b5e3c-7a3c-4b85-8d6f-7d2a1c4f8e21 '
            'mitigations=off quiet security=apparmor"') in after
    after2, changes2, _x = edit(after, ["splash", "quiet"], state="absent")
    assert changes2 == ["-splash=silent", "-quiet"]
    assert ('GRUB_CMDLINE_LINUX_DEFAULT="resume=/dev/disk/by-uuid/0d9b5e3c-7a3c-4b85-8d6f-7d2a1c4f8e21 '
            'mitigations=off security=apparmor"') in after2
    assert edit(after2, ["splash", "quiet"], state="absent")[1] == []


def test_selfref_edits_last_assignment_keeps_escapes():
    before = fixture("selfref-grub").decode()
    after, changes, lines = edit(before, ["iommu=pt"])
    assert lines == [3] and changes == ["-iommu=nopt", "+iommu=pt"]
    assert ('    GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT \\"dyndbg=file drivers/iommu/* +p\\" '
            'iommu=pt"\n') in after
    # absent edits every assignment
    after2, changes2, lines2 = edit(before, ["quiet", "dyndbg"], state="absent")
    assert lines2 == [1, 3] and changes2 == ["-quiet", '-"dyndbg=file drivers/iommu/* +p"']
    assert after2.startswith('GRUB_CMDLINE_LINUX_DEFAULT=""\n')


def test_missing_variable_is_appended():
    after, _x, lines = edit("GRUB_TIMEOUT=5", ["iommu=pt"])
    assert after == 'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="iommu=pt"\n' and lines == [2]
    assert edit("", ["iommu=pt"])[0] == 'GRUB_CMDLINE_LINUX_DEFAULT="iommu=pt"\n'
    assert edit("GRUB_TIMEOUT=5\n", ["iommu"], state="absent")[1] == []


def test_value_with_spaces_escaped_in_double_quotes():
    after, _x, _x = edit(fixture("debian12-grub"), ['dyndbg="file drivers/iommu/* +p"'])
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet dyndbg=\\"file drivers/iommu/* +p\\""\n' in after
    assert edit(after, ['dyndbg="file drivers/iommu/* +p"'])[1] == []


def test_assignment_inside_multiline_string_is_not_an_assignment():
    text = 'X="first\nGRUB_CMDLINE_LINUX_DEFAULT="a"\nY=1\n'
    # the shell reads X="first\nGRUB_CMDLINE_LINUX_DEFAULT=" then a, then a quote opened on line 2
    with pytest.raises(B.BootArgsError) as e:
        edit(text, ["iommu=pt"])
    assert e.value.line == 2
    text = 'X="first\nGRUB_CMDLINE_LINUX_DEFAULT=nope"\n'
    after, _x, lines = edit(text, ["iommu=pt"])
    assert lines == [3] and after == text + 'GRUB_CMDLINE_LINUX_DEFAULT="iommu=pt"\n'


@pytest.mark.parametrize("name,line,words", [
    ("malformed-unbalanced-grub", 2, "unbalanced double quote"),
    ("malformed-concat-grub", 2, "concatenated quoting"),
    ("malformed-kernel-quote-grub", 1, "unbalanced double quote in argument"),
    ("malformed-open-quote-grub", 2, "never closed"),
])
def test_malformed_grub_files(name, line, words):
    with pytest.raises(B.BootArgsError) as e:
        B.edit_grub_default(fixture(name), LINUX_DEFAULT, pairs("iommu=pt"), "present", path="/etc/default/grub")
    assert e.value.line == line and words in e.value.message
    assert str(e.value).startswith("/etc/default/grub line %d: " % line)


@pytest.mark.parametrize("text,line", [
    (b'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n\x00\x01junk\n', 3),
    (b'GRUB_DEFAULT=0\n\xff\xfe\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', 2),
    (b'GRUB_CMDLINE_LINUX_DEFAULT="quiet" ; reboot\n', 1),
    (b'GRUB_CMDLINE_LINUX_DEFAULT=quiet splash\n', 1),
    (b'GRUB_CMDLINE_LINUX_DEFAULT=$X\n', 1),
    (b'GRUB_X=1 \\\n', 1),
])
def test_malformed_grub_bytes(text, line):
    with pytest.raises(B.BootArgsError) as e:
        B.edit_grub_default(text, LINUX_DEFAULT, pairs("iommu=pt"), "present")
    assert e.value.line == line


def test_dropin_findings():
    files = [(os.path.join(FIX, "grub.d", n), fixture(os.path.join("grub.d", n)))
             for n in ("40-extend.cfg", "50-cloudimg-settings.cfg")]
    found = B.grub_dropin_findings(files, LINUX_DEFAULT, pairs("iommu=pt"), "present")
    assert found == [(files[1][0], 11, "overrides")]
    found = B.grub_dropin_findings(files, "GRUB_CMDLINE_LINUX", pairs("iommu"), "absent")
    assert found == [(files[0][0], 1, "extends"), (files[0][0], 1, "contains")]
    assert B.grub_dropin_findings([("x", b'GRUB_CMDLINE_LINUX="a\n')], "GRUB_CMDLINE_LINUX", [], "present") == \
        [("x", 1, "unparsable")]


# ---------------------------------------------------------------------------
# /etc/kernel/cmdline and grubby
# ---------------------------------------------------------------------------

def test_kernel_cmdline_edit():
    before = fixture("kernel-cmdline").decode()
    after, changes = B.edit_kernel_cmdline(before, pairs("intel_iommu=on", "iommu=pt"), "present")
    assert after == ("root=UUID=6a1c1f0e-2b1e-4b5a-9d2e-1c2b3a4d5e6f rw quiet  splash systemd.show_status=auto "
                     "intel_iommu=on iommu=pt -- emergency\n")
    assert B.edit_kernel_cmdline(after, pairs("intel_iommu=on", "iommu=pt"), "present") == (after, [])
    back, _x = B.edit_kernel_cmdline(after, pairs("intel_iommu", "iommu"), "absent")
    assert back == before
    assert B.edit_kernel_cmdline("", pairs("iommu=pt"), "present")[0] == "iommu=pt\n"
    assert B.edit_kernel_cmdline("ro", pairs("iommu=pt"), "present")[0] == "ro iommu=pt"


@pytest.mark.parametrize("text,line", [
    (fixture("malformed-kernel-cmdline-two-lines"), 2),
    (b'ro dyndbg="x +p\n', 1),
    (b"ro\x00\n", 1),
])
def test_kernel_cmdline_malformed(text, line):
    with pytest.raises(B.BootArgsError) as e:
        B.edit_kernel_cmdline(text, pairs("iommu=pt"), "present", path="/etc/kernel/cmdline")
    assert e.value.line == line and "/etc/kernel/cmdline" in str(e.value)


def test_grubby_info_and_plan():
    entries = B.parse_grubby_info(fixture("grubby-info-rhel9.txt").decode())
    assert [e.get("index") for e in entries] == ["0", "1", "2"]
    assert entries[0]["kernel"] == "/boot/vmlinuz-5.14.0-427.13.1.el9_4.x86_64"
    assert entries[0]["args"].endswith("rhgb quiet iommu=nopt") and "args" not in entries[2]
    plan = B.grubby_plan(entries, pairs("intel_iommu=on", "iommu=pt"), "present")
    assert [(p[0]["index"], p[3]) for p in plan] == [
        ("0", ["+intel_iommu=on", "-iommu=nopt", "+iommu=pt"]), ("1", ["+iommu=pt"])]
    cmds = B.grubby_commands("/usr/sbin/grubby", plan, pairs("intel_iommu=on", "iommu=pt"), "present")
    assert cmds == [["/usr/sbin/grubby", "--update-kernel=ALL", "--remove-args=iommu"],
                    ["/usr/sbin/grubby", "--update-kernel=ALL", "--args=intel_iommu=on iommu=pt"]]
    plan = B.grubby_plan(entries, pairs("intel_iommu"), "absent")
    assert [p[0]["index"] for p in plan] == ["1"]
    assert B.grubby_commands("g", plan, pairs("intel_iommu"), "absent") == [
        ["g", "--update-kernel=ALL", "--remove-args=intel_iommu"]]
    assert B.grubby_plan(entries, pairs("ro", "quiet"), "present") == []
    assert B.parse_grubby_info("garbage\n\x00=\n") == [{"\x00": ""}]


# ---------------------------------------------------------------------------
# property tests
# ---------------------------------------------------------------------------

_chars = st.sampled_from(list("ab=_-.,/ \t\"'\\$`#;\n\r") + ["\x00", "é"])
garbage = st.text(alphabet=_chars, max_size=60)
arg_st = st.builds(lambda k, v: k if v is None else "%s=%s" % (k, v),
                   st.sampled_from(["iommu", "intel_iommu", "quiet", "console", "a.b"]),
                   st.one_of(st.none(), st.sampled_from(["pt", "on", "", "ttyS0,115200", '"x y"'])))


@PROPS
@given(garbage, st.sampled_from(["raw", "double", "single"]))
def test_tokenize_round_trips_garbage(text, style):
    assert B.tokenize(text, style).raw() == text


@PROPS
@given(garbage, st.lists(arg_st, min_size=1, max_size=4), st.sampled_from(["present", "absent"]))
def test_grub_editor_never_raises_unexpectedly(body, args, state):
    text = "GRUB_TIMEOUT=5\n" + body + "\n"
    for candidate in (text, 'GRUB_CMDLINE_LINUX_DEFAULT="%s"\n' % body):
        try:
            out, changes, _x = B.edit_grub_default(candidate, LINUX_DEFAULT, pairs(*args), state)
        except B.BootArgsError:
            continue
        # idempotent, and nothing but the edited lines change
        again, changes2, _x = B.edit_grub_default(out, LINUX_DEFAULT, pairs(*args), state)
        assert again == out and changes2 == []
        if not changes:
            assert out == candidate


@PROPS
@given(st.lists(st.sampled_from(["ro", "quiet", "iommu=nopt", "iommu=pt", "console=tty0", 'x="a b"', "--",
                                 "intel_iommu=off", "splash"]), max_size=8),
       st.lists(arg_st, min_size=1, max_size=4), st.sampled_from(["present", "absent"]))
def test_apply_is_idempotent_and_effective(tokens, args, state):
    line = B.tokenize(" ".join(tokens))
    p = pairs(*args)
    new, _x = B.apply_args(line, p, state)
    assert B.apply_args(new, p, state)[1] == []
    full = [a + (o,) for a, o in zip(p, args)]
    assert B.pending_args(new.texts(), full, state) == []
    # the init part after "--" is untouched
    if "--" in tokens:
        assert new.texts()[new.texts().index("--"):] == tokens[tokens.index("--"):]


@PROPS
@given(garbage, st.lists(arg_st, min_size=1, max_size=3), st.sampled_from(["present", "absent"]))
def test_kernel_cmdline_editor_never_raises_unexpectedly(text, args, state):
    try:
        out, _x = B.edit_kernel_cmdline(text, pairs(*args), state)
    except B.BootArgsError:
        return
    assert B.edit_kernel_cmdline(out, pairs(*args), state) == (out, [])


@PROPS
@given(garbage)
def test_grubby_parser_never_raises(text):
    B.parse_grubby_info(text)
    B.shell_scan(text)


# ---------------------------------------------------------------------------
# the module body on a fake root
# ---------------------------------------------------------------------------

class Failed(Exception):
    pass


class FakeModule:
    """What iommu_bootargs.run uses of AnsibleModule."""

    def __init__(self, params, bins=None, check_mode=False, diff=False, rc=0):
        self.params = dict(state="present", bootloader="auto", update=True, backup=True,
                           grub_file="/etc/default/grub", grub_variable=LINUX_DEFAULT, grub_cfg=None)
        self.params.update(params)
        self.bins = bins or {}
        self.check_mode = check_mode
        self._diff = diff
        self.rc = rc
        self.ran = []
        self.outputs = {}
        self.warnings = []

    def warn(self, msg):
        self.warnings.append(msg)

    def get_bin_path(self, name, required=False):
        if name not in self.bins and required:
            raise Failed("missing %s" % name)
        return self.bins.get(name)

    def run_command(self, argv):
        self.ran.append(list(argv))
        if argv[0] in self.outputs:
            return 0, self.outputs[argv[0]], ""
        return self.rc, "", "boom" if self.rc else ""

    def backup_local(self, path):
        dest = path + ".bak"
        shutil.copy2(path, dest)
        return dest

    def fail_json(self, msg, **kw):
        raise Failed(msg, kw)


def make_root(tmp_path, proc="BOOT_IMAGE=/vmlinuz root=/dev/vda ro intel_iommu=on", files=()):
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "proc" / "cmdline").write_text(proc + "\n")
    for rel, data in files:
        p = root / rel.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def test_run_grub_end_to_end(tmp_path):
    root = make_root(tmp_path, files=[("/etc/default/grub", fixture("debian12-grub")),
                                      ("/boot/grub/grub.cfg", b"")])
    grub = root / "etc/default/grub"
    os.chmod(grub, 0o600)
    m = FakeModule({"args": ["intel_iommu=on", "iommu=pt"]}, bins={"update-grub": "/usr/sbin/update-grub"},
                   diff=True)
    res = B.run(m, root=str(root))
    assert res["changed"] is True and res["bootloader"] == "grub"
    assert res["reboot_required"] is True and res["pending"] == ["iommu=pt"]
    assert res["cmdline"] == "BOOT_IMAGE=/vmlinuz root=/dev/vda ro intel_iommu=on"
    assert res["files"] == [str(grub)] and res["backup_files"] == [str(grub) + ".bak"]
    assert res["commands"] == ["/usr/sbin/update-grub"] and m.ran == [["/usr/sbin/update-grub"]]
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"' in grub.read_text()
    assert stat.S_IMODE(os.stat(grub).st_mode) == 0o600
    assert res["diff"][0]["before"] == fixture("debian12-grub").decode()
    assert sorted(p.name for p in grub.parent.iterdir()) == ["grub", "grub.bak"]   # no temp file left
    # second run: nothing to do, still a reboot pending
    m2 = FakeModule({"args": ["intel_iommu=on", "iommu=pt"]}, bins={"update-grub": "/usr/sbin/update-grub"})
    res2 = B.run(m2, root=str(root))
    assert res2["changed"] is False and res2["reboot_required"] is True and m2.ran == []
    # intel_iommu=on alone is active already
    res3 = B.run(FakeModule({"args": ["intel_iommu=on"]}), root=str(root))
    assert res3["changed"] is False and res3["reboot_required"] is False and res3["pending"] == []


def test_atomic_write_keeps_symlink_and_mode(tmp_path):
    target = tmp_path / "real"
    target.write_bytes(b"old\n")
    target.chmod(0o640)
    link = tmp_path / "link"
    link.symlink_to("real")
    B.atomic_write(str(link), b"new\n")
    assert link.is_symlink() and target.read_bytes() == b"new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_run_grub_check_mode_predicts_and_writes_nothing(tmp_path):
    root = make_root(tmp_path, files=[("/etc/default/grub", fixture("suse-grub")),
                                      ("/boot/grub2/grub.cfg", b"")])
    m = FakeModule({"args": ["iommu=pt"], "backup": True}, bins={"grub2-mkconfig": "/usr/sbin/grub2-mkconfig"},
                   check_mode=True, diff=True)
    res = B.run(m, root=str(root))
    assert res["changed"] is True and res["backup_files"] == [] and m.ran == []
    assert res["commands"] == ["/usr/sbin/grub2-mkconfig -o /boot/grub2/grub.cfg"]
    assert (root / "etc/default/grub").read_bytes() == fixture("suse-grub")
    assert 'iommu=pt"' in res["diff"][0]["after"]
    assert sorted(os.listdir(root / "etc/default")) == ["grub"]


def test_run_grub_dropin_warning(tmp_path):
    root = make_root(tmp_path, files=[
        ("/etc/default/grub", fixture("debian12-grub")),
        ("/etc/default/grub.d/50-cloudimg-settings.cfg", fixture("grub.d/50-cloudimg-settings.cfg"))])
    m = FakeModule({"args": ["iommu=pt"], "update": False})
    res = B.run(m, root=str(root))
    assert res["changed"] is True and res["commands"] == [] and "warnings" not in res
    assert len(m.warnings) == 1 and "50-cloudimg-settings.cfg line 11 sets GRUB_CMDLINE_LINUX_DEFAULT" \
        in m.warnings[0]
    # editing the drop-in itself: no later drop-in, no warning
    m = FakeModule({"args": ["iommu=pt"], "update": False,
                    "grub_file": "/etc/default/grub.d/50-cloudimg-settings.cfg"})
    res = B.run(m, root=str(root))
    assert m.warnings == [] and res["changed"] is True


def test_run_grub_regeneration_failure_restores_file(tmp_path):
    root = make_root(tmp_path, files=[("/etc/default/grub", fixture("debian12-grub"))])
    m = FakeModule({"args": ["iommu=pt"], "backup": False}, bins={"update-grub": "/bin/update-grub"}, rc=1)
    with pytest.raises(Failed) as e:
        B.run(m, root=str(root))
    assert "update-grub failed (rc=1); restored" in e.value.args[0]
    assert (root / "etc/default/grub").read_bytes() == fixture("debian12-grub")


def test_run_grub_no_regeneration_tool_fails_before_editing(tmp_path):
    root = make_root(tmp_path, files=[("/etc/default/grub", fixture("debian12-grub"))])
    with pytest.raises(Failed) as e:
        B.run(FakeModule({"args": ["iommu=pt"]}), root=str(root))
    assert "none of update-grub, grub2-mkconfig, grub-mkconfig" in e.value.args[0]
    assert (root / "etc/default/grub").read_bytes() == fixture("debian12-grub")


@pytest.mark.parametrize("name", ["malformed-unbalanced-grub", "malformed-concat-grub", "malformed-open-quote-grub"])
def test_run_malformed_file_untouched(tmp_path, name):
    root = make_root(tmp_path, files=[("/etc/default/grub", fixture(name))])
    with pytest.raises(Failed) as e:
        B.run(FakeModule({"args": ["iommu=pt"]}, bins={"update-grub": "/u"}), root=str(root))
    assert e.value.args[0].startswith(str(root / "etc/default/grub") + " line ")
    assert (root / "etc/default/grub").read_bytes() == fixture(name)
    assert os.listdir(root / "etc/default") == ["grub"]


def test_run_systemd_boot(tmp_path):
    release = os.uname()[2]
    root = make_root(tmp_path, files=[("/etc/kernel/cmdline", fixture("kernel-cmdline")),
                                      ("/lib/modules/%s/vmlinuz" % release, b"MZ")])
    m = FakeModule({"args": ["iommu=pt"]}, bins={"kernel-install": "/usr/bin/kernel-install"})
    res = B.run(m, root=str(root))
    assert res["bootloader"] == "systemd-boot" and res["changed"] is True
    assert m.ran == [["/usr/bin/kernel-install", "add", release, "/lib/modules/%s/vmlinuz" % release]]
    assert "iommu=pt -- emergency" in (root / "etc/kernel/cmdline").read_text()
    # without kernel-install: edited, with guidance
    m = FakeModule({"args": ["quiet"], "state": "absent"})
    res = B.run(m, root=str(root))
    assert res["changed"] is True and "kernel-install add %s" % release in m.warnings[0]


def test_run_grubby(tmp_path):
    root = make_root(tmp_path, proc="ro intel_iommu=on iommu=pt")
    m = FakeModule({"args": ["intel_iommu=on", "iommu=pt"]}, bins={"grubby": "/usr/sbin/grubby"}, diff=True)
    m.outputs["/usr/sbin/grubby"] = fixture("grubby-info-rhel9.txt").decode()
    res = B.run(m, root=str(root))
    assert res["bootloader"] == "grubby" and res["changed"] is True and res["reboot_required"] is False
    assert m.ran[0] == ["/usr/sbin/grubby", "--info=ALL"]
    assert res["commands"] == ["/usr/sbin/grubby --update-kernel=ALL --remove-args=iommu",
                               "/usr/sbin/grubby --update-kernel=ALL --args=intel_iommu=on iommu=pt"]
    assert "iommu=nopt" in res["diff"][0]["before"] and "iommu=nopt" not in res["diff"][0]["after"]
    m = FakeModule({"args": ["ro"]}, bins={"grubby": "/usr/sbin/grubby"}, check_mode=True)
    m.outputs["/usr/sbin/grubby"] = fixture("grubby-info-rhel9.txt").decode()
    res = B.run(m, root=str(root))
    assert res["changed"] is False and res["commands"] == [] and m.ran == [["/usr/sbin/grubby", "--info=ALL"]]


def test_run_auto_detection_order_and_failure(tmp_path):
    root = make_root(tmp_path)
    with pytest.raises(Failed) as e:
        B.run(FakeModule({"args": ["iommu=pt"]}), root=str(root))
    assert "grubby command on PATH, /etc/kernel/cmdline (systemd-boot/UKI) and /etc/default/grub" in e.value.args[0]
    assert B.detect_bootloader(str(root), {"grubby": "/g"}.get) == "grubby"
    (root / "etc/default").mkdir(parents=True)
    (root / "etc/default/grub").write_text("")
    assert B.detect_bootloader(str(root), {}.get) == "grub"
    (root / "etc/kernel").mkdir()
    (root / "etc/kernel/cmdline").write_text("ro\n")
    assert B.detect_bootloader(str(root), {}.get) == "systemd-boot"


def test_run_rejects_bad_args(tmp_path):
    root = make_root(tmp_path, files=[("/etc/default/grub", b"")])
    with pytest.raises(Failed) as e:
        B.run(FakeModule({"args": ["iommu=pt", "a'b"]}), root=str(root))
    assert "a'b" in e.value.args[0]


# ---------------------------------------------------------------------------
# ansible-playbook -c local, the real module
# ---------------------------------------------------------------------------

FAKE_UPDATE_GRUB = """#!/bin/sh
echo "update-grub $*" >> "{log}"
"""


def test_module_through_ansible_playbook(tmp_path):
    grub = tmp_path / "grub"
    grub.write_bytes(fixture("debian12-grub"))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "update-grub.log"
    (bindir / "update-grub").write_text(FAKE_UPDATE_GRUB.format(log=log))
    (bindir / "update-grub").chmod(0o755)
    task = {"iommu.host.kernel_args": {"args": ["intel_iommu=on", "iommu=pt"], "state": "present",
                                       "bootloader": "grub", "grub_file": str(grub)},
            "environment": {"PATH": "%s:/usr/bin:/bin" % bindir}}
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [
        dict(task, name="first", register="kargs"),
        dict(task, name="second", register="again"),
        {"name": "show", "ansible.builtin.debug": {"msg": "{{ {'first': kargs, 'second': again} | to_json }}"}},
    ]}]
    pb = tmp_path / "play.yml"
    pb.write_text(json.dumps(play))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, "build", "collections"),
               ANSIBLE_STDOUT_CALLBACK="testbed_json", ANSIBLE_NOCOLOR="1", ANSIBLE_DIFF_ALWAYS="1",
               ANSIBLE_CALLBACK_PLUGINS=os.path.join(REPO, "tests", "testbed", "callback_plugins"))
    env.pop("ANSIBLE_CONFIG", None)
    proc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "-e", "ansible_python_interpreter=%s" % sys.executable, str(pb)],
                          cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    tasks = out["plays"][0]["tasks"]
    first = tasks[0]["hosts"]["localhost"]
    second = tasks[1]["hosts"]["localhost"]
    assert first["changed"] is True and second["changed"] is False
    assert first["bootloader"] == "grub" and first["files"] == [str(grub)]
    assert first["commands"] == [str(bindir / "update-grub")]
    assert len(first["backup_files"]) == 1 and os.path.exists(first["backup_files"][0])
    with open("/proc/cmdline") as f:
        proc_tokens = B.tokenize(f.read()).texts()
    want = [a for a in ("intel_iommu=on", "iommu=pt") if a not in proc_tokens]
    assert first["pending"] == want and first["reboot_required"] is bool(want)
    assert second["reboot_required"] is first["reboot_required"]
    assert log.read_text() == "update-grub \n"
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\n' in grub.read_text()
    assert "iommu=pt" in first["diff"][0]["after"]
