#!/usr/bin/env bash
# Build (or find cached) the test-bed guests' root file system: a Debian trixie
# minbase root (debootstrap) with what the guests need, QEMU 11.1.x from
# trixie-backports installed in it, and QEMU 10.0.x from trixie unpacked beside
# it under /opt/qemu-10.0. Both QEMUs are the "oracles" of the differential
# tests; each is addressed by its release through a wrapper:
#   /usr/local/bin/qemu-11.1   -> /usr/bin/qemu-system-x86_64 (installed package)
#   /usr/local/bin/qemu-10.0   -> /opt/qemu-10.0/usr/bin/qemu-system-x86_64 with its
#                                 own data (-L) and modules (QEMU_MODULE_DIR)
# (the names follow the releases apt resolves; ORACLES lists them).
#
# The guests boot this directory read-only over virtio-9p (tests/testbed/testbed.py);
# its /usr/local/sbin/testbed-init mounts the per-guest state share and runs
# guest-init.sh from there, so the init script can change without a rebuild.
#
# Cached outside the checkout in $IOMMU_HOST_CACHE/root/<key>/ (rootfs/, ORACLES,
# BUILDINFO, build.log), the key being the suite, the package list, the QEMU
# versions apt resolves for trixie and trixie-backports, the recipe number and this
# script (comments excluded). The versions are resolved with a private apt state in
# $IOMMU_HOST_CACHE/root/apt (the host's apt configuration is not touched), refreshed
# when older than ROOT_APT_MAX_AGE seconds (default one day). Built in a temporary
# directory and renamed into place, under a lock. Prints the rootfs path on its last
# line; progress goes to stderr.
#
# Needs root (debootstrap into a directory, chroot; no loop mounts, no binfmt).
# Environment: IOMMU_HOST_CACHE (default /var/cache/iommu-host), DEBIAN_MIRROR
# (default http://deb.debian.org/debian), ROOT_APT_MAX_AGE.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
self=$here/$(basename "$0")
cache=${IOMMU_HOST_CACHE:-/var/cache/iommu-host}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
max_age=${ROOT_APT_MAX_AGE:-86400}
suite=trixie
# Bump when the procedure below changes what it produces.
recipe=1
# What the guests run: guest-init.sh (mount, switch_root, ip, sshd, udevd), Ansible's
# modules (python3), the integration tests (pciutils, kmod, procps' pgrep, util-linux'
# dmesg/setsid, tar), iommu.host.kernel_args (grub2-common: update-grub, grub-probe).
packages=(python3 openssh-server openssh-sftp-server udev kmod pciutils iproute2 util-linux mount
          procps grub2-common hostname)
qemu_pkg=qemu-system-x86
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
log() { printf '[build-root] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_root() {  # building (and refreshing the private apt lists) needs root; a cache hit does not
  [ "$(id -u)" = 0 ] && return 0
  command -v sudo >/dev/null || die "needs root (debootstrap, chroot) and sudo is not installed"
  log "re-running as root (sudo) to $1"
  exec sudo IOMMU_HOST_CACHE="$cache" DEBIAN_MIRROR="$mirror" ROOT_APT_MAX_AGE="$max_age" "$self"
}

host=$(cat /etc/debian_version 2>/dev/null || echo unknown)
base=$cache/root

# ---- resolve the QEMU versions with a private apt state -------------------
aptdir=$base/apt
if [ ! -s "$aptdir/sources.list" ] || [ "$(id -u)" = 0 ]; then
  need_root "create $aptdir"
  mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial"
  : > "$aptdir/status"
  cat > "$aptdir/sources.list" <<EOF
deb [signed-by=$keyring] $mirror $suite main
deb [signed-by=$keyring] $mirror $suite-backports main
EOF
fi
apt_opts=(-o "Dir::Etc::SourceList=$aptdir/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
          -o "Dir::State::Lists=$aptdir/lists" -o "Dir::State::status=$aptdir/status"
          -o "Dir::Cache=$aptdir/cache" -o APT::Architecture=amd64 -o APT::Architectures=amd64
          -o APT::Sandbox::User=root)
stamp=$aptdir/lists/.updated
age=$(( $(date +%s) - $(stat -c %Y "$stamp" 2>/dev/null || echo 0) ))
if [ "$age" -gt "$max_age" ]; then
  need_root "refresh $aptdir"
  log "resolving $qemu_pkg in $suite and $suite-backports (apt-get update, private state in $aptdir)"
  if apt-get "${apt_opts[@]}" -qq update >&2; then
    touch "$stamp"
  else
    log "WARNING: apt-get update failed; using the package lists already there (if any)"
  fi
fi
version_in() {  # version of $qemu_pkg in suite $1
  apt-cache "${apt_opts[@]}" madison "$qemu_pkg" 2>/dev/null |
    awk -F'|' -v s=" $1/main " '$3 ~ s {gsub(/ /, "", $2); print $2; exit}'
}
upstream() { local v=${1#*:}; echo "${v%%[-+~]*}"; }   # 1:11.1.3+ds-1~bpo13+1 -> 11.1.3
release() { local u; u=$(upstream "$1"); echo "${u%.*}"; }  # -> 11.1
new=$(version_in "$suite-backports")
old=$(version_in "$suite")
if [ -z "$new" ] || [ -z "$old" ]; then
  # Offline with no lists: fall back to the newest root already built.
  cached=$(find "$base" -mindepth 2 -maxdepth 2 -name ORACLES -printf '%T@ %h\n' | sort -rn | head -n 1)
  [ -n "$cached" ] || die "cannot resolve $qemu_pkg in $suite/$suite-backports (no network?) and no root is cached"
  log "WARNING: cannot resolve $qemu_pkg versions; using the newest cached root"
  echo "${cached#* }/rootfs"; exit 0
fi
rel_new=$(release "$new"); rel_old=$(release "$old")
[ "$rel_new" != "$rel_old" ] || die "$suite and $suite-backports both resolve to QEMU $rel_new"

key=$( { echo "suite=$suite"; echo "packages=${packages[*]}"; echo "qemu-new=$new"; echo "qemu-old=$old"
         echo "recipe=$recipe"; grep -vE '^\s*#' "$self"; } | sha256sum | cut -c1-16)
out=$base/$key
cached() { [ -s "$out/ORACLES" ] && [ -x "$out/rootfs/usr/local/sbin/testbed-init" ]; }
if cached; then
  log "cached: $out/rootfs (QEMU $new and $old, key $key)"
  echo "$out/rootfs"; exit 0
fi
need_root "build $out"
"$repo/scripts/setup-debian.sh" root >&2
[ -e "/usr/share/debootstrap/scripts/$suite" ] ||
  die "this debootstrap (host Debian $host) does not know $suite; install a newer debootstrap"
exec 9>"$base/.lock"
if ! flock -n 9; then
  log "another build-root.sh holds $base/.lock; waiting"
  flock 9
  if cached; then log "built meanwhile: $out/rootfs"; echo "$out/rootfs"; exit 0; fi
fi

# ---- build -----------------------------------------------------------------
log "building the $suite root (key $key; host Debian $host): QEMU $new ($suite-backports) and $old ($suite)"
start=$(date +%s)
rm -rf "$base"/.build-*                 # interrupted builds (we hold the lock)
tmp=$base/.build-$key
rootfs=$tmp/rootfs
mkdir -p "$rootfs" "$cache/debs/$suite"
buildlog=$tmp/build.log
mounted=()
cleanup() {
  local m
  for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done
}
trap cleanup EXIT

# debootstrap prints a line per package and step; show the steps and every 40th package line.
progress() {
  tee -a "$buildlog" | awk '/^I: (Retrieving|Validating|Extracting|Unpacking|Configuring|Setting up|Selecting|Preparing|Get:)/ ||
                             /^(Get|Unpacking|Setting up|Selecting|Preparing|Processing)/ {
                               n[$1 $2]++; if (n[$1 $2] % 40 != 1) next }
                             { print "[build-root]   " $0; fflush() }' >&2
}

log "debootstrap --variant=minbase $suite (about a minute)"
debootstrap --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" \
    --cache-dir="$cache/debs/$suite" --keyring="$keyring" "$suite" "$rootfs" "$mirror" 2>&1 | progress ||
  die "debootstrap failed (log: $buildlog)"

in_root() { chroot "$rootfs" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
              DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }
mountpoint -q "$rootfs/proc" || { mount -t proc proc "$rootfs/proc"; mounted+=("$rootfs/proc"); }
mountpoint -q "$rootfs/dev" || { mount --bind /dev "$rootfs/dev"; mounted+=("$rootfs/dev"); }
printf '#!/bin/sh\nexit 101\n' > "$rootfs/usr/sbin/policy-rc.d"; chmod 755 "$rootfs/usr/sbin/policy-rc.d"
cat > "$rootfs/etc/apt/sources.list.d/$suite-backports.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite-backports
Components: main
Signed-By: $keyring
EOF
log "installing $qemu_pkg $new from $suite-backports in the root"
in_root apt-get -q update 2>&1 | progress || die "apt-get update in the root failed (log: $buildlog)"
in_root apt-get install -y -q --no-install-recommends -t "$suite-backports" "$qemu_pkg=$new" 2>&1 | progress ||
  die "apt-get install $qemu_pkg=$new failed (log: $buildlog)"

log "unpacking $qemu_pkg $old from $suite under /opt/qemu-$rel_old"
mkdir -p "$rootfs/tmp/qemu-old"
in_root sh -c "cd /tmp/qemu-old && apt-get download -q $qemu_pkg=$old qemu-system-common=$old \
  qemu-system-data=$old" 2>&1 | progress || die "apt-get download of QEMU $old failed (log: $buildlog)"
debs=("$rootfs"/tmp/qemu-old/*.deb)
[ "${#debs[@]}" = 3 ] || die "apt-get download of QEMU $old failed (log: $buildlog)"
optdir=/opt/qemu-$rel_old
for deb in "${debs[@]}"; do dpkg-deb -x "$deb" "$rootfs$optdir"; done
rm -rf "$rootfs/tmp/qemu-old"
# Only what the emulator needs: its binary, its modules, its data (firmware links
# point into the root's own seabios/ipxe packages, which 11.1 installed).
rm -rf "$rootfs$optdir/usr/share/doc" "$rootfs$optdir/usr/share/man" "$rootfs$optdir/usr/share/lintian"

mods=("$rootfs$optdir"/usr/lib/*/qemu)
moddir_old=${mods[0]#"$rootfs"}
mkdir -p "$rootfs/usr/local/bin"
cat > "$rootfs/usr/local/bin/qemu-$rel_old" <<EOF
#!/bin/sh
# QEMU $old (Debian $suite), unpacked under $optdir; its own data and modules.
QEMU_MODULE_DIR=$moddir_old
export QEMU_MODULE_DIR
exec $optdir/usr/bin/qemu-system-x86_64 -L $optdir/usr/share/qemu "\$@"
EOF
cat > "$rootfs/usr/local/bin/qemu-$rel_new" <<EOF
#!/bin/sh
# QEMU $new (Debian $suite-backports), the package installed in this root.
exec /usr/bin/qemu-system-x86_64 "\$@"
EOF
chmod 755 "$rootfs/usr/local/bin/qemu-$rel_old" "$rootfs/usr/local/bin/qemu-$rel_new"

missing=$(in_root ldd "$optdir/usr/bin/qemu-system-x86_64" | grep 'not found' || true)
[ -z "$missing" ] || die "QEMU $old lacks libraries in the root: $missing"
oracles=""
for which in new old; do
  if [ $which = new ]; then rel=$rel_new ver=$new src=$suite-backports; else rel=$rel_old ver=$old src=$suite; fi
  said=$(in_root "/usr/local/bin/qemu-$rel" --version | head -n 1)
  up=$(upstream "$ver")
  case "$said" in
    *"version $up "*) ;;
    *) die "qemu-$rel --version says '$said', expected $up" ;;
  esac
  # Realize a q35 machine and quit: data files and modules of that release load.
  reply=$(printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"quit"}' |
          in_root timeout 120 "/usr/local/bin/qemu-$rel" -machine q35,accel=tcg -nodefaults -display none \
                  -S -qmp stdio 2>&1) || die "qemu-$rel did not start a q35 machine: $reply"
  oracles+="$rel $up $ver /usr/local/bin/qemu-$rel $src"$'\n'
  log "oracle qemu-$rel: $said"
done

log "finishing the root"
# Root logs in by key only; sshd (UsePAM no) refuses a locked account.
sed -i 's/^root:![^:]*:/root:*:/' "$rootfs/etc/shadow"
mkdir -p "$rootfs/media" "$rootfs/usr/local/sbin" "$rootfs/etc/testbed"
cat > "$rootfs/usr/local/sbin/testbed-init" <<'EOF'
#!/bin/sh
# PID 1 of a test-bed guest (built into the root by tests/testbed/build-root.sh).
# Mounts the per-guest state share (9p tag "testbed", read-only) and runs the test
# bed's init script from it, so guest-init.sh can change without rebuilding the root.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mountpoint -q /dev || mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
mkdir -p /run/testbed/share
if mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=none testbed /run/testbed/share &&
   [ -r /run/testbed/share/guest-init.sh ]; then
  exec /bin/sh /run/testbed/share/guest-init.sh
fi
echo "testbed-init: FATAL: no guest-init.sh on the state share (9p tag testbed)"
exec /bin/sh
EOF
chmod 755 "$rootfs/usr/local/sbin/testbed-init"
rm -f "$rootfs/usr/sbin/policy-rc.d"
in_root apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log "$rootfs"/tmp/*
cleanup; mounted=()
printf '# release upstream debian-version wrapper suite\n%s' "$oracles" > "$tmp/ORACLES"
cp "$tmp/ORACLES" "$rootfs/etc/testbed/ORACLES"
size=$(du -sm "$rootfs" | cut -f1)
echo "suite=$suite key=$key recipe=$recipe built in $(( $(date +%s) - start ))s on host Debian $host, ${size} MB" \
  > "$tmp/BUILDINFO"
cp "$tmp/BUILDINFO" "$rootfs/etc/testbed/BUILDINFO"
rm -rf "$out"
mv "$tmp" "$out"
log "built: $out/rootfs ($(cat "$out/BUILDINFO"))"
echo "$out/rootfs"
