#!/usr/bin/env bash
# dtst: listing, validation errors and --diff on files built byte by byte here.
set -euo pipefail
build=$1
dtst=$build/bin/dtst
dir=$(mktemp -d /tmp/dt_dtst_XXXXXX)
trap 'rm -rf "$dir"' EXIT

# mkst FILE JSON DATA: a safetensors file with JSON padded to 8 and DATA (printf escapes)
mkst() {
  local json=$2
  while (( ${#json} % 8 )); do json+=" "; done
  local n=${#json} le=""
  for i in 0 1 2 3 4 5 6 7; do le+=$(printf '\\%03o' $(( (n >> (8 * i)) & 255 ))); done
  printf "$le" > "$1"
  printf '%s' "$json" >> "$1"
  printf "$3" >> "$1"
}
hdr='{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[1],"data_offsets":[8,9]}}'
mkst "$dir/a.st" "$hdr" '\000\000\200\077\000\000\000\100\007'   # w = [1, 2], b = [7]
mkst "$dir/b.st" "$hdr" '\000\000\200\077\000\000\300\077\007'   # w = [1, 1.5]
mkst "$dir/bad.st" "$hdr" '\000\000\200\077'                      # data cut short

out=$("$dtst" "$dir/a.st")
echo "$out"
grep -q "2 tensors" <<<"$out"
grep -Eq "^  w +F32 +\[2\] +8 bytes" <<<"$out"
grep -Eq "^  b +U8 +\[1\] +1 bytes" <<<"$out"
grep -q "metadata format = pt" <<<"$out"

if "$dtst" "$dir/bad.st" 2>"$dir/err"; then echo "bad file accepted" >&2; exit 1; fi
grep -q "corrupt" "$dir/err"
grep -q "bad.st" "$dir/err"

"$dtst" --diff "$dir/a.st" "$dir/a.st" | grep -q "SAME"
if "$dtst" --diff "$dir/a.st" "$dir/b.st" > "$dir/d"; then echo "difference not found" >&2; exit 1; fi
cat "$dir/d"
grep -Eq "^  w +max \|a-b\| 0.5 at 1 " "$dir/d"
"$dtst" --diff "$dir/a.st" "$dir/b.st" --tol 0.5 | grep -q "SAME"
mkst "$dir/c.st" '{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}' '\000\000\200\077\000\000\000\100'
if "$dtst" --diff "$dir/a.st" "$dir/c.st" > "$dir/d2"; then echo "missing tensor not reported" >&2; exit 1; fi
grep -q "b .*only in $dir/a.st" "$dir/d2"
echo "dtst ok"
