#!/usr/bin/env bash
# examples/logits: the documented output layout, the three ways to pass ids, and errors.
set -u
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
ok() { echo "PASS $1"; }
bad() { echo "FAIL $1"; }

build/random_model -o "$dir/m.gguf" --shape tiny --vocab 300 >/dev/null || { bad "random_model"; exit 1; }

# 7 tokens x 300 logits x 4 bytes, no header
if build/logits -m "$dir/m.gguf" -o "$dir/a.bin" 5 17 0 299 3 3 42 2>/dev/null && [ "$(stat -c %s "$dir/a.bin")" -eq $((7 * 300 * 4)) ]
then ok "logits: [n_tokens][n_vocab] float32, no header"; else bad "logits: [n_tokens][n_vocab] float32, no header"; fi

printf '5, 17\n0 299\n3,3 42\n' > "$dir/ids.txt"
if build/logits -m "$dir/m.gguf" -o "$dir/b.bin" -f "$dir/ids.txt" -t 2 --no-mmap 2>/dev/null && cmp -s "$dir/a.bin" "$dir/b.bin" &&
   build/logits -m "$dir/m.gguf" -o "$dir/c.bin" - < "$dir/ids.txt" 2>/dev/null && cmp -s "$dir/a.bin" "$dir/c.bin"
then ok "logits: ids from a file and from stdin give the same bytes"; else bad "logits: ids from a file and from stdin give the same bytes"; fi

# row 3 of the output is the last-token logits of the prefix 5 17 0 299
build/logits -m "$dir/m.gguf" -o "$dir/d.bin" 5 17 0 299 2>/dev/null
if cmp -s <(tail -c $((300 * 4)) "$dir/d.bin") <(head -c $((4 * 300 * 4)) "$dir/a.bin" | tail -c $((300 * 4)))
then ok "logits: row i holds the logits after token i"; else bad "logits: row i holds the logits after token i"; fi

if ! build/logits -m "$dir/m.gguf" -o "$dir/e.bin" 5 300 2>"$dir/err" && grep -q "vocabulary" "$dir/err" && [ ! -e "$dir/e.bin" ] &&
   ! build/logits -m "$dir/m.gguf" -o "$dir/e.bin" 2>/dev/null && ! build/logits -m "$dir/missing.gguf" -o "$dir/e.bin" 1 2>/dev/null
then ok "logits: bad ids, no ids, a missing model are errors and leave no file"; else bad "logits: bad ids, no ids, a missing model are errors and leave no file"; fi
