#!/usr/bin/env bash
# Build (or find cached) the arm64 test-bed kernel (profile arm64-smmuv3): Debian's
# linux-source-7.3 (the same package as the x86 kernel), cross-compiled with Debian's
# gcc-aarch64-linux-gnu, configured with virtme-ng's minimal arm64 config
# (vng --kconfig --arch arm64, i.e. arm64's defconfig plus virtme-ng's items) plus
# tests/testbed/kernel-arm64.config, every arm64 platform (ARCH_* in
# arch/arm64/Kconfig.platforms) and every Ethernet vendor but Intel turned off: QEMU's virt
# machine needs none of them, and the build is much shorter without (about 1300 =y
# options instead of 3100).
#
# The Image is cached outside the checkout in $IOMMU_HOST_CACHE/kernel-arm64/<key>/
# (Image, config, release, BUILDINFO), keyed by the source package version, the
# virtme-ng version, the cross compiler's version, the fragment and this script
# (comments excluded), so a second run does not rebuild. Prints the Image path on
# its last line; progress (every minute) goes to stderr.
#
# Environment: IOMMU_HOST_CACHE (default /var/cache/iommu-host),
#              KERNEL_JOBS (default: nproc + 1), VENV (python venv with vng).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
self=$here/$(basename "$0")
cache=${IOMMU_HOST_CACHE:-/var/cache/iommu-host}
venv=${VENV:-$root/.venv}
pkg=linux-source-7.3
cross=aarch64-linux-gnu-
fragment=$here/kernel-arm64.config
jobs=${KERNEL_JOBS:-$(( $(nproc) + 1 ))}
log() { printf '[build-kernel-arm64] %s\n' "$*" >&2; }

"$root/scripts/setup-debian.sh" kernel-arm64 >&2

version=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  log "package $pkg not found in apt sources (trixie-backports missing?)"; exit 1
fi
vng_version=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("virtme-ng"))')
gcc_version=$("${cross}gcc" -dumpfullversion)
key=$( { echo "$pkg=$version"; echo "virtme-ng=$vng_version"; echo "gcc=$gcc_version"; cat "$fragment"
         grep -vE '^\s*#' "$self"; } | sha256sum | cut -c1-16)
out=$cache/kernel-arm64/$key
if [ -s "$out/Image" ]; then
  log "cached: $out/Image ($pkg $version, key $key)"
  echo "$out/Image"; exit 0
fi

log "building $pkg $version for arm64 (key $key) with $jobs jobs, ${cross}gcc $gcc_version"
# Not $cache/build: build-kernel.sh (x86) removes that directory when it starts.
work=$cache/build-arm64/$key
rm -rf "$cache/build-arm64"; mkdir -p "$work" "$cache/debs"   # also drops interrupted builds
deb=$cache/debs/${pkg}_${version//:/%3a}_all.deb
if [ ! -s "$deb" ]; then
  (cd "$cache/debs" && apt-get download "$pkg=$version" >&2)
fi
dpkg -x "$deb" "$work/pkg"
tar -C "$work" -xf "$work"/pkg/usr/src/${pkg}.tar.xz
rm -rf "$work/pkg"
src=$work/$pkg
cd "$src"
mk=(make ARCH=arm64 "CROSS_COMPILE=$cross")
# virtme-ng 1.42 passes the cross compiler only as a trailing make variable.
PATH=$venv/bin:$PATH vng --kconfig --arch arm64 CROSS_COMPILE=$cross >&2
# The fragment: its settings, "is not set" lines included (other comments dropped).
grep -E '^(CONFIG_[A-Za-z0-9_]+=|# CONFIG_[A-Za-z0-9_]+ is not set$)' "$fragment" > "$work/fragment"
# Every platform off (the virt machine is none of them), every Ethernet vendor but Intel (e1000e).
awk '/^config ARCH_[A-Z0-9_]+$/ {print "# CONFIG_" $2 " is not set"}' arch/arm64/Kconfig.platforms \
  > "$work/platforms"
awk '/^config NET_VENDOR_[A-Z0-9_]+$/ && $2 != "NET_VENDOR_INTEL" {print "# CONFIG_" $2 " is not set"}' \
  drivers/net/ethernet/*/Kconfig >> "$work/platforms"
cat "$work/platforms" "$work/fragment" > "$work/merge"
ARCH=arm64 CROSS_COMPILE=$cross ./scripts/kconfig/merge_config.sh -m .config "$work/merge" >&2
"${mk[@]}" olddefconfig >&2
missing=0
while IFS= read -r line; do
  case "$line" in
    "# CONFIG_"*) sym=${line#"# "}; sym=${sym%% *}
                  if grep -q "^$sym=" .config; then log "config lost after olddefconfig: $line"; missing=1; fi ;;
    *) if ! grep -qx -- "$line" .config; then log "config lost after olddefconfig: $line"; missing=1; fi ;;
  esac
done < <(cat "$work/fragment" "$work/platforms")
[ "$missing" = 0 ] || exit 1
start=$(date +%s)
# A cold cross build takes 25-35 minutes on 2 cores: say every minute that it is alive.
"${mk[@]}" -j"$jobs" Image >"$work/build.log" 2>&1 &
mkpid=$!
while kill -0 "$mkpid" 2>/dev/null; do
  for _ in $(seq 60); do kill -0 "$mkpid" 2>/dev/null || break; sleep 1; done
  kill -0 "$mkpid" 2>/dev/null || break
  log "still building: $(( ($(date +%s) - start) / 60 )) min, $(grep -c '^  CC ' "$work/build.log" || true) files compiled"
done
wait "$mkpid" || { tail -n 60 "$work/build.log" >&2; exit 1; }
mkdir -p "$out"
"${mk[@]}" -s kernelrelease > "$out/release"
cp arch/arm64/boot/Image "$out/Image.tmp"
cp .config "$out/config"
echo "$pkg=$version virtme-ng=$vng_version ${cross}gcc=$gcc_version built in $(( $(date +%s) - start ))s on $(nproc) cores" \
  > "$out/BUILDINFO"
mv "$out/Image.tmp" "$out/Image"
cd /; rm -rf "$work"
log "built: $out/Image ($(cat "$out/BUILDINFO"))"
echo "$out/Image"
