"""iommu.host.kernel_args against a real GRUB configuration in a real-kernel guest.

The intel guest boots Linux 7.3.4 with ``intel_iommu=on`` (tests/testbed). Its
root is an overlay on the host's read-only root, so GRUB's ``grub-probe``
cannot resolve ``/`` to a device ("failed to get canonical path of
`overlay'") and ``update-grub`` fails there. The test therefore gives GRUB a
root on a real block device: the guest's own ext4 disk (/dev/vda, the
overlay's upper layer) is mounted a second time, a directory on it becomes
the root of a chroot, and the guest's /usr, /etc, /root, /tmp, /var, /proc,
/sys, /dev and /run are bind-mounted into it (/boot is a real directory on
/dev/vda). Ansible runs the module with an interpreter wrapper that chroots
there, so the module, Debian's ``update-grub`` / ``grub-mkconfig`` /
``grub-probe`` (package ``grub2-common`` on the host) and the generated
``/boot/grub/grub.cfg`` are all real; /proc/cmdline is the guest kernel's.

The guest kernel is started by QEMU (-kernel), not by GRUB, so a guest reboot
keeps the files but not the arguments; a guest booted with ``iommu=pt`` shows
reboot_required turning false.
"""
import pytest

CHROOT = "/run/kargs-disk/kargs-root"
WRAPPER = "/usr/local/sbin/kargs-chroot-python"
KERNEL = "vmlinuz-7.3.4-testbed"      # a stand-in image name for GRUB's 10_linux to list

SETUP = r"""
set -e
command -v update-grub >/dev/null || {{ echo "NO-GRUB: update-grub is not installed (grub2-common)"; exit 3; }}
D=/run/kargs-disk R={root}
mkdir -p $D
mountpoint -q $D || mount -t ext4 -o noatime /dev/vda $D
mkdir -p $R
mountpoint -q $R || mount --bind $R $R
for d in usr etc root tmp var proc sys dev run; do
  mkdir -p $R/$d
  mountpoint -q $R/$d || mount --rbind /$d $R/$d
done
for l in bin sbin lib lib64; do [ -e $R/$l ] || ln -s usr/$l $R/$l; done
mkdir -p $R/boot/grub
[ -e $R/boot/{kernel} ] || printf 'MZ' > $R/boot/{kernel}
[ -e /etc/default/grub ] || cp /usr/share/grub/default/grub /etc/default/grub
mkdir -p $(dirname {wrapper})
printf '#!/bin/sh\nexec chroot {root} /usr/bin/python3 "$@"\n' > {wrapper}
chmod 755 {wrapper}
chroot $R grub-probe --target=device /
"""

TEARDOWN = r"""
umount -R {root} 2>/dev/null || true
umount /run/kargs-disk 2>/dev/null || true
rm -f {wrapper} /etc/default/grub /etc/default/grub.*~
"""


def setup_grub_root(guest):
    res = guest.run(SETUP.format(root=CHROOT, kernel=KERNEL, wrapper=WRAPPER), timeout=120)
    if res.rc == 3:
        pytest.skip(res.stdout.strip())
    assert res.rc == 0, res
    assert res.stdout.strip().splitlines()[-1] == "/dev/vda", res    # grub-probe sees a real device


def guest_file(guest, path):
    return guest.run(["cat", path], timeout=60, check=True).stdout


def linux_lines(guest):
    """The ``linux`` lines of the generated grub.cfg (normal entries, not recovery)."""
    cfg = guest_file(guest, CHROOT + "/boot/grub/grub.cfg")
    return [ln.strip() for ln in cfg.splitlines()
            if ln.strip().startswith("linux") and KERNEL in ln and " single" not in ln]


def play(args, state="present", **options):
    task = {"args": args, "state": state}
    task.update(options)
    return {"hosts": "intel", "gather_facts": False,
            "vars": {"ansible_python_interpreter": WRAPPER},
            "tasks": [{"name": "kargs", "iommu.host.kernel_args": task, "register": "kargs"}]}


def run_module(ansible_playbook, args, state="present", check=False, **options):
    result = ansible_playbook(play(args, state, **options), args=["--check", "--diff"] if check else ["--diff"])
    assert result.rc == 0, result
    return result.result("intel", "kargs")


@pytest.fixture
def grub_guest(testbed):
    guest = testbed["intel"]
    setup_grub_root(guest)
    yield guest
    guest.run(TEARDOWN.format(root=CHROOT, wrapper=WRAPPER), timeout=120)


@pytest.mark.testbed("intel")
def test_kernel_args_edits_real_grub(grub_guest, ansible_playbook):
    guest = grub_guest
    proc = guest_file(guest, "/proc/cmdline").split()
    assert "intel_iommu=on" in proc and "iommu=pt" not in proc
    template = guest_file(guest, "/etc/default/grub")
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n' in template

    # check mode: predicts, writes and runs nothing
    out = run_module(ansible_playbook, ["intel_iommu=on", "iommu=pt"], check=True)
    assert out["changed"] is True and out["bootloader"] == "grub"
    assert out["commands"] == ["/usr/sbin/update-grub"] and out["backup_files"] == []
    assert guest_file(guest, "/etc/default/grub") == template
    assert guest.run(["test", "-e", CHROOT + "/boot/grub/grub.cfg"], timeout=60).rc != 0

    # iommu=pt is not on the running kernel's command line: reboot required
    out = run_module(ansible_playbook, ["intel_iommu=on", "iommu=pt"])
    assert out["changed"] is True and out["bootloader"] == "grub"
    assert out["reboot_required"] is True and out["pending"] == ["iommu=pt"]
    assert out["cmdline"].split() == proc
    assert out["files"] == ["/etc/default/grub"] and out["commands"] == ["/usr/sbin/update-grub"]
    assert len(out["backup_files"]) == 1
    assert guest_file(guest, out["backup_files"][0]) == template
    after = guest_file(guest, "/etc/default/grub")
    assert after == template.replace('GRUB_CMDLINE_LINUX_DEFAULT="quiet"',
                                     'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"')
    # the real grub-mkconfig put them on the kernel line
    lines = linux_lines(guest)
    assert lines and all(ln.endswith("ro  quiet intel_iommu=on iommu=pt") for ln in lines), lines
    assert "root=/dev/vda" in lines[0]

    # second run: nothing to change, update-grub not run, still a reboot pending
    out = run_module(ansible_playbook, ["intel_iommu=on", "iommu=pt"])
    assert out["changed"] is False and out["commands"] == [] and out["reboot_required"] is True

    # intel_iommu=on alone: already active in the running kernel
    out = run_module(ansible_playbook, ["intel_iommu=on"])
    assert out["changed"] is False and out["reboot_required"] is False and out["pending"] == []

    # value replacement and removal, through GRUB_CMDLINE_LINUX with grub-mkconfig -o
    out = run_module(ansible_playbook, ["iommu=nopt"], grub_variable="GRUB_CMDLINE_LINUX",
                     grub_cfg="/boot/grub/grub.cfg")
    assert out["changed"] is True and out["commands"] == ["/usr/sbin/grub-mkconfig -o /boot/grub/grub.cfg"]
    assert 'GRUB_CMDLINE_LINUX="iommu=nopt"\n' in guest_file(guest, "/etc/default/grub")
    out = run_module(ansible_playbook, ["iommu"], state="absent", grub_variable="GRUB_CMDLINE_LINUX",
                     grub_cfg="/boot/grub/grub.cfg")
    assert out["changed"] is True and out["reboot_required"] is False
    out = run_module(ansible_playbook, ["iommu"], state="absent")
    assert out["changed"] is True
    assert all(ln.endswith("ro  quiet intel_iommu=on") for ln in linux_lines(guest)), linux_lines(guest)

    # a reboot keeps the edited file (the guest's disk); QEMU boots the kernel directly, not via GRUB,
    # so the running command line is unchanged
    out = run_module(ansible_playbook, ["iommu=pt"])
    assert out["changed"] is True and out["reboot_required"] is True
    guest.reboot()
    setup_grub_root(guest)
    out = run_module(ansible_playbook, ["iommu=pt"])
    assert out["changed"] is False and out["reboot_required"] is True


@pytest.mark.testbed("intel")
def test_kernel_args_malformed_grub_untouched(grub_guest, ansible_playbook):
    guest = grub_guest
    bad = 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet splash\nGRUB_CMDLINE_LINUX=""\n'
    guest.run("cat > /etc/default/grub", input=bad, timeout=60, check=True)
    result = ansible_playbook(play(["iommu=pt"]))
    assert result.rc != 0
    out = result.result("intel", "kargs")
    assert out["msg"].startswith("/etc/default/grub line 2: unbalanced double quote"), out
    assert guest_file(guest, "/etc/default/grub") == bad
    assert guest.run("ls /etc/default/ | grep -c '^grub\\..*~$'", timeout=60).stdout.strip() == "0"


@pytest.mark.testbed("intel")
def test_reboot_required_false_when_booted_with_args(testbed, ansible_playbook):
    """A guest booted with iommu=pt: the same request changes the file but needs no reboot."""
    guest = testbed.restart("intel", extra_kernel_args=["iommu=pt"])
    try:
        assert "iommu=pt" in guest_file(guest, "/proc/cmdline").split()
        setup_grub_root(guest)
        out = run_module(ansible_playbook, ["intel_iommu=on", "iommu=pt"])
        assert out["changed"] is True and out["reboot_required"] is False and out["pending"] == []
        out = run_module(ansible_playbook, ["iommu=pt"], state="absent")
        assert out["changed"] is True and out["reboot_required"] is True and out["pending"] == ["iommu=pt"]
        guest.run(TEARDOWN.format(root=CHROOT, wrapper=WRAPPER), timeout=120)
    finally:
        testbed.restart("intel")   # later tests get a guest booted as the profile says
