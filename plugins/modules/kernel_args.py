#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kernel_args
short_description: Make kernel boot arguments present or absent (grubby, GRUB, systemd-boot)
version_added: "0.1.0"
description:
  - Adds or removes kernel command line arguments in the boot configuration of the host, for the
    next boot, and tells whether a reboot is needed for them to take effect.
  - C(grubby) (RHEL, Fedora) - reads C(grubby --info=ALL) and runs
    C(grubby --update-kernel=ALL --args=...) or C(--remove-args=...) for every kernel entry.
  - C(grub) (Debian, Ubuntu, SUSE) - edits one variable (O(grub_variable)) of O(grub_file) keeping its
    quoting and every other line byte for byte, then regenerates C(grub.cfg) with C(update-grub) when it
    is on PATH, else C(grub2-mkconfig -o) / C(grub-mkconfig -o) O(grub_cfg). A drop-in
    C(/etc/default/grub.d/*.cfg) sourced after O(grub_file) that sets the same variable is reported in a
    warning (its value wins).
  - C(systemd-boot) (and unified kernel images) - edits the single line of C(/etc/kernel/cmdline), then runs
    C(kernel-install add RELEASE /lib/modules/RELEASE/vmlinuz) for the running kernel's release when both
    exist; otherwise a warning says what to run.
  - A file is changed only when an argument is missing (or, for O(state=absent), present). It is written to
    a temporary file in the same directory, flushed to disk and renamed over the original, keeping mode and
    owner. If the regeneration command fails, the file gets its previous content back and the task fails.
  - A malformed file (unbalanced quotes in the variable, a value spanning lines, concatenated quoting, binary
    content, a variable that cannot be appended safely) makes the task fail with the file and line, leaving
    the file untouched.
author:
  - iommu.host maintainers (@iommu-host)
options:
  args:
    description:
      - Kernel arguments, each C(key) or C(key=value). A value with spaces is written C(key="a b").
      - With O(state=present), C(key=value) replaces a different value of the same key
        (C(iommu=pt) replaces C(iommu=nopt)); every other occurrence of the key is removed, so the
        kernel sees exactly the given value(s). Several entries with the same key (C(console=tty0),
        C(console=ttyS0)) are kept together in that order.
      - With O(state=absent), C(key) removes the key whatever its value, C(key=value) only that value.
      - Single quotes, backslashes, C($) and backticks are refused.
    type: list
    elements: str
    required: true
  state:
    description: Whether the arguments must be present or absent.
    type: str
    choices: [present, absent]
    default: present
  bootloader:
    description:
      - Which boot setup to edit. C(auto) picks C(grubby) when the C(grubby) command is on PATH, else
        C(systemd-boot) when C(/etc/kernel/cmdline) exists, else C(grub) when C(/etc/default/grub) exists,
        else fails listing what it looked for.
    type: str
    choices: [auto, grubby, grub, systemd-boot]
    default: auto
  update:
    description:
      - Run the regeneration command after an edit (C(update-grub) / C(grub-mkconfig),
        C(kernel-install)). Not used by C(grubby), which applies changes itself.
      - The command runs only when the file changed.
    type: bool
    default: true
  backup:
    description: Keep a timestamped copy of each edited file next to it (C(backup_local)).
    type: bool
    default: true
  grub_file:
    description: The GRUB defaults file to edit (C(grub) only); may be a drop-in of C(/etc/default/grub.d).
    type: path
    default: /etc/default/grub
  grub_variable:
    description:
      - The variable to edit (C(grub) only). C(GRUB_CMDLINE_LINUX_DEFAULT) applies to normal boots,
        C(GRUB_CMDLINE_LINUX) also to recovery entries.
    type: str
    choices: [GRUB_CMDLINE_LINUX_DEFAULT, GRUB_CMDLINE_LINUX]
    default: GRUB_CMDLINE_LINUX_DEFAULT
  grub_cfg:
    description:
      - The C(grub.cfg) to generate with C(grub2-mkconfig -o) / C(grub-mkconfig -o) (C(grub) only). When
        set, C(update-grub) is not used. Default is C(/boot/grub2/grub.cfg) or C(/boot/grub/grub.cfg),
        whichever exists.
    type: path
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Nothing is written or run except the read-only C(grubby --info=ALL); RV(commands) lists the
      commands that would run.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: Before and after of each edited file; for C(grubby), the arguments of each changed kernel entry.
notes:
  - Needs root to edit the boot configuration.
  - RV(reboot_required) compares the wanted arguments with C(/proc/cmdline) of the running kernel, whether or
    not a file changed, so a second run before the reboot still reports it.
  - Arguments after C(--) (passed to init) are never touched.
  - For C(grub), an assignment that refers to itself (C(VAR="$VAR quiet")) is edited as text; arguments
    that come from the referenced value are not seen.
seealso:
  - name: Kernel parameters
    description: The kernel's documentation of its command line.
    link: https://docs.kernel.org/admin-guide/kernel-parameters.html
"""

EXAMPLES = r"""
- name: Enable the Intel IOMMU in passthrough mode
  iommu.host.kernel_args:
    args: [intel_iommu=on, iommu=pt]
    state: present
  register: kargs

- name: Reboot when the running kernel lacks them
  ansible.builtin.reboot:
  when: kargs.reboot_required

- name: Remove any iommu= setting
  iommu.host.kernel_args:
    args: [iommu]
    state: absent

- name: Edit GRUB_CMDLINE_LINUX in a drop-in and write a specific grub.cfg
  iommu.host.kernel_args:
    args: [amd_iommu=on]
    bootloader: grub
    grub_file: /etc/default/grub.d/50-iommu.cfg
    grub_variable: GRUB_CMDLINE_LINUX
    grub_cfg: /boot/grub/grub.cfg

- name: Only edit /etc/kernel/cmdline (the UKI is rebuilt by another task)
  iommu.host.kernel_args:
    args: [intel_iommu=on]
    bootloader: systemd-boot
    update: false
"""

RETURN = r"""
bootloader:
  description: The boot setup edited (C(grubby), C(grub) or C(systemd-boot)).
  returned: success
  type: str
  sample: grub
reboot_required:
  description: Whether the running kernel's C(/proc/cmdline) differs from the wanted state (a present argument
    missing from it, an absent one still in it). Computed also when nothing changed.
  returned: success
  type: bool
  sample: true
cmdline:
  description: The running kernel's command line (C(/proc/cmdline)); null when unreadable.
  returned: success
  type: str
  sample: BOOT_IMAGE=/vmlinuz-6.1.0-13-amd64 root=/dev/sda1 ro quiet intel_iommu=on
pending:
  description: The requested arguments not yet in effect in the running kernel.
  returned: success
  type: list
  elements: str
  sample: [iommu=pt]
files:
  description: Files edited (or, in check mode, that would be); for C(grubby), the kernels of the entries changed.
  returned: success
  type: list
  elements: str
  sample: [/etc/default/grub]
backup_files:
  description: Backup copies made (O(backup=true)).
  returned: success
  type: list
  elements: str
  sample: [/etc/default/grub.12345.2026-11-25@17:00:00~]
commands:
  description: Commands run to apply the change (in check mode, the commands that would run).
  returned: success
  type: list
  elements: str
  sample: [/usr/sbin/update-grub]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.iommu.host.plugins.module_utils import iommu_bootargs


def main():
    module = AnsibleModule(
        argument_spec=dict(
            args=dict(type="list", elements="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            bootloader=dict(type="str", default="auto", choices=["auto", "grubby", "grub", "systemd-boot"]),
            update=dict(type="bool", default=True),
            backup=dict(type="bool", default=True),
            grub_file=dict(type="path", default=iommu_bootargs.DEFAULT_GRUB_FILE),
            grub_variable=dict(type="str", default="GRUB_CMDLINE_LINUX_DEFAULT",
                               choices=list(iommu_bootargs.GRUB_VARIABLES)),
            grub_cfg=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**iommu_bootargs.run(module, root="/"))


if __name__ == "__main__":
    main()
