#!/usr/bin/env bash
# docs/env.md must equal the table generated from include/dtrain/params.def.
# To regenerate after adding a knob: build/bin/dtinfo --env-markdown > docs/env.md
set -euo pipefail
build=$1; src=$2
if ! diff -u "$src/docs/env.md" <("$build/bin/dtinfo" --env-markdown); then
  echo "docs/env.md is out of date: run build/bin/dtinfo --env-markdown > docs/env.md" >&2
  exit 1
fi
echo "docs/env.md matches params.def"
