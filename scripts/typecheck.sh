#!/usr/bin/env bash
# mypy over the package as it is installed: setup.py maps the top-level source folders into
# recsys_pipeline (recsys_pipeline.pipeline is pipeline/ ...), which mypy cannot follow
# through the editable install's import hook. So this builds that layout out of symbolic
# links in .typecheck/ and checks it there; messages name .typecheck/recsys_pipeline/<folder>.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tree=.typecheck
rm -rf "$tree"
mkdir -p "$tree/recsys_pipeline"
for entry in recsys_pipeline/*; do
  ln -s "$PWD/$entry" "$tree/recsys_pipeline/$(basename "$entry")"
done
# The mapped folders, as setup.py lists them: _SUBPACKAGES = ("pipeline", ...).
folders=$(sed -n 's/^_SUBPACKAGES = (\(.*\))$/\1/p' setup.py | tr -d '",')
[[ -n "$folders" ]] || { echo "typecheck: no _SUBPACKAGES line in setup.py" >&2; exit 1; }
for folder in $folders; do
  ln -s "$PWD/$folder" "$tree/recsys_pipeline/$folder"
done
.venv/bin/mypy --config-file pyproject.toml "$tree/recsys_pipeline"
