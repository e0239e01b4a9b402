#!/usr/bin/env bash
# examples/convert from the command line: a fixture checkpoint becomes a model file
# that generates; the progress bar only on a terminal; errors and usage.
set -u
cd "$(dirname "$0")/.."
. tests/shell_test.sh

for b in build/convert build/generate; do
    [ -x "$b" ] || { echo "FAIL convert: $b is missing (run make first)"; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/bitnet-t_convert.XXXXXX")
trap 'rm -rf "$work"' EXIT

begin "convert: a Hugging Face checkpoint directory to a model file that runs"
out=$(build/convert tests/fixtures/packed_bitlinear_tied "$work/m.gguf" 2>"$work/err"); rc=$?
check "exit status 0" test "$rc" -eq 0
check_contains "summary names the file" "$out" "wrote $work/m.gguf"
check_contains "summary describes the model" "$out" "2 layers, dim 128, ffn 256, 4 heads / 2 kv, vocab 384, relu2, tied LM head"
check "no progress bar when stderr is not a terminal" test ! -s "$work/err"
check "no temporary file left" test ! -e "$work/m.gguf.tmp"
gen=$(build/generate -m "$work/m.gguf" -p "The lazy dog" -n 4 --temp 0 2>/dev/null); rc=$?
check "the model generates" test "$rc" -eq 0
end

if command -v script >/dev/null 2>&1; then
    begin "convert: a progress bar on a terminal, --quiet turns it off"
    script -qc "build/convert tests/fixtures/bf16_online_tied $work/t.gguf" /dev/null >"$work/tty" 2>&1
    tty=$(tr '\r' '\n' <"$work/tty")
    check_contains "bar reaches 100%" "$tty" "[##############################] 100.0%"
    check_contains "bar names tensors" "$tty" "blk.1.ffn_down.weight"
    script -qc "build/convert -q tests/fixtures/bf16_online_tied $work/q.gguf" /dev/null >"$work/quiet" 2>&1
    check_not_contains "quiet" "$(cat "$work/quiet")" "%"
    end
fi

begin "convert: errors say what is wrong and leave no file"
err=$(build/convert "$work/nothing-here" "$work/x.gguf" 2>&1); rc=$?
check "missing directory: exit status 1" test "$rc" -eq 1
check_contains "missing directory" "$err" "config.json"
mkdir "$work/bad"
cp tests/fixtures/packed_bitlinear_tied/* "$work/bad/"
sed 's/"relu2"/"gelu"/' tests/fixtures/packed_bitlinear_tied/config.json >"$work/bad/config.json"
err=$(build/convert "$work/bad" "$work/x.gguf" 2>&1); rc=$?
check "bad config: exit status 1" test "$rc" -eq 1
check_contains "bad config names the field" "$err" "hidden_act 'gelu' is not supported"
check "no output" test ! -e "$work/x.gguf" -a ! -e "$work/x.gguf.tmp"
build/convert >/dev/null 2>&1; rc=$?
check "no arguments: exit status 2" test "$rc" -eq 2
build/convert --bogus a b >/dev/null 2>&1; rc=$?
check "unknown option: exit status 2" test "$rc" -eq 2
help=$(build/convert --help); rc=$?
check "--help: exit status 0" test "$rc" -eq 0
check_contains "--help" "$help" "usage: convert"
end

finish
