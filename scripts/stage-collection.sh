#!/usr/bin/env bash
# Stage the collection as it is published: the tracked and new (not ignored) files of this
# checkout under DEST (…/ansible_collections/iommu/host), with docs/*.md rendered as
# antsibull-docs extra docs (docs/docsite/rst/). Lint, docsite and artifact builds run on it,
# so no tool writes caches (.ansible/, temp-rst/) into the checkout.
#   stage-collection.sh DEST
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:?usage: stage-collection.sh DEST}
py=${VENV:-$root/.venv}/bin/python
case "$dest" in */ansible_collections/iommu/host) ;; *) echo "DEST must end in ansible_collections/iommu/host" >&2; exit 2 ;; esac
rm -rf "$dest" && mkdir -p "$dest"
cd "$root"
git ls-files -z --cached --others --exclude-standard \
  | tar --null --ignore-failed-read -cf - -T - 2>/dev/null | tar -xf - -C "$dest"
shopt -s nullglob
docs=("$dest"/docs/*.md)
[ ${#docs[@]} = 0 ] || "$py" "$root/scripts/md2rst.py" "$dest/docs/docsite/rst" "${docs[@]}"
