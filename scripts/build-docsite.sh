#!/usr/bin/env bash
# Build the collection docsite with antsibull-docs (plugins, roles and docs/*.md as extra docs)
# from the staged collection, offline: Sphinx warnings are errors.
#   build-docsite.sh COLLECTIONS_ROOT DEST      (COLLECTIONS_ROOT holds ansible_collections/)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
colls=${1:?usage: build-docsite.sh COLLECTIONS_ROOT DEST}
dest=${2:?usage: build-docsite.sh COLLECTIONS_ROOT DEST}
export PATH=${VENV:-$root/.venv}/bin:$PATH ANSIBLE_COLLECTIONS_PATH=$colls
rm -rf "$dest" && mkdir -p "$dest" && chmod 0755 "$dest"
antsibull-docs sphinx-init --use-current --squash-hierarchy --fail-on-error --dest-dir "$dest" \
  --project iommu.host --copyright "iommu.host contributors" --title "iommu.host collection" \
  iommu.host >/dev/null
cat >> "$dest/conf.py" <<'CONF'

# Offline build (make test-lint): no intersphinx inventories are fetched, so the two labels the
# generated plugin pages take from the Ansible docsite cannot resolve here; every other
# reference must.
intersphinx_mapping = {}
nitpick_ignore = [('std:ref', 'ansible_configuration_settings'), ('std:ref', 'common_return_values')]
CONF
cd "$dest"
mkdir -p rst && chmod og-w rst
antsibull-docs --config-file antsibull-docs.cfg collection --cleanup everything --fail-on-error \
  --use-current --squash-hierarchy --dest-dir rst iommu.host >/dev/null
sphinx-build -M html rst build -c . -W --keep-going -q
echo "docsite: $dest/build/html/index.html"
