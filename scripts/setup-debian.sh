#!/usr/bin/env bash
# Idempotent setup of a Debian machine for iommu.host development.
#   setup-debian.sh venv     python venv (.venv) with the dev requirements
#   setup-debian.sh sanity   + git and shellcheck for ansible-test sanity
#   setup-debian.sh kernel   + kernel build dependencies, trixie-backports source
#   setup-debian.sh kernel-arm64  + the arm64 cross compiler (gcc-aarch64-linux-gnu)
#   setup-debian.sh root     + debootstrap for the test-bed guests' Debian root
#   setup-debian.sh testbed  + QEMU, the SSH client and debootstrap for the real-kernel test bed
#   setup-debian.sh browser  + Debian's chromium for the fleet report's browser tests (Playwright drives it)
#   setup-debian.sh disk     + what build-disk.sh needs (sfdisk, mtools, dosfstools, qemu-img, OVMF)
#   setup-debian.sh all      all of the above (make test: one apt run before the targets run in parallel)
# Never upgrades the base system: backports are added with their default
# (NotAutomatic) priority and only named packages are installed from them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$root/.venv}
log() { printf '[setup] %s\n' "$*" >&2; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

apt_updated=""
apt_update() {
  [ -n "$apt_updated" ] && return 0
  log "apt-get update"
  $SUDO apt-get update -qq >&2
  apt_updated=1
}
need_debs() {  # install the Debian packages not yet installed
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} = 0 ] && return 0
  apt_update
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

setup_venv() {
  local py=${PYTHON:-python3}
  if ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then need_debs python3-venv; fi
  if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv"
    "$py" -m venv "$venv"
  fi
  local stamp=$venv/.requirements.sha
  local want; want=$(sha256sum "$root/requirements-dev.txt" | cut -c1-64)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "pip install -r requirements-dev.txt"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/requirements-dev.txt" >&2
    echo "$want" > "$stamp"
  fi
}

setup_kernel() {
  need_debs build-essential bc flex bison libelf-dev libssl-dev cpio zstd xz-utils
  local src=/etc/apt/sources.list.d/iommu-host-trixie-backports.sources
  if [ ! -f "$src" ]; then
    log "adding trixie-backports (for linux-source-7.3 only)"
    $SUDO tee "$src" >/dev/null <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt_updated=""
  fi
  if ! apt-cache policy linux-source-7.3 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    apt_update
  fi
}

setup_sanity() {
  need_debs git shellcheck
}

setup_root() {
  # tests/testbed/build-root.sh debootstraps the guests' own Debian trixie root.
  need_debs debootstrap debian-archive-keyring
}

setup_browser() {
  # Playwright (requirements-dev.txt) drives Debian's chromium; Playwright's own browsers are never downloaded.
  need_debs chromium
}

setup_testbed() {
  # The host only runs the outer QEMU and the SSH client: the guests boot their own
  # Debian trixie root (tests/testbed/build-root.sh), not the host's files.
  need_debs qemu-system-x86 openssh-client e2fsprogs util-linux
}

setup_disk() {
  # tests/testbed/build-disk.sh: disk images without loop devices (sfdisk on the file, mke2fs -d,
  # mkfs.fat + mtools), per-run qcow2 overlays (qemu-img), UEFI firmware for disk-sdboot (ovmf).
  need_debs debootstrap debian-archive-keyring e2fsprogs fdisk mtools dosfstools qemu-utils ovmf
}

want=${1:-venv}
setup_venv
case "$want" in
  venv) ;;
  sanity) setup_sanity ;;
  kernel) setup_kernel ;;
  kernel-arm64) setup_kernel; need_debs gcc-aarch64-linux-gnu ;;
  root) setup_root ;;
  disk) setup_disk ;;
  browser) setup_browser ;;
  testbed) setup_kernel; setup_testbed; setup_root; setup_disk ;;
  all) setup_kernel; need_debs gcc-aarch64-linux-gnu; setup_testbed; setup_root; setup_disk; setup_sanity
       setup_browser ;;
  *) echo "usage: $0 [venv|sanity|kernel|kernel-arm64|root|testbed|disk|browser|all]" >&2; exit 2 ;;
esac
