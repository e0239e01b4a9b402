#!/usr/bin/env bash
# chat and two_characters built with AddressSanitizer + UndefinedBehaviorSanitizer,
# run through the paths that move memory around: turns, commands, a context that
# fills up (old turns dropped, also in the middle of a reply), /reset, and two
# contexts sharing one model on two threads.
set -u
cd "$(dirname "$0")/.."
. tests/shell_test.sh

[ -x build/random_model ] || { echo "FAIL examples: build/random_model is missing (run make first)"; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/bitnet-t_examples_sanitized.XXXXXX")
trap 'rm -rf "$work"' EXIT
tiny=$work/tiny.gguf
build/random_model -o "$tiny" --shape tiny --seed 11 >/dev/null || { echo "FAIL examples: random_model"; exit 1; }

san=(-std=c99 -O0 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -I.)
for e in chat two_characters; do
    ${CC:-cc} "${san[@]}" "examples/$e.c" -o "$work/$e" -lpthread -lm 2>"$work/$e.log" &
done
wait
sanitizer_report() { grep -m3 -E 'ERROR: |runtime error|LeakSanitizer' "$1"; }

begin "chat under the sanitizers: turns, commands, full context, /reset"
if [ -x "$work/chat" ]; then
    printf 'one\ntwo\n/set top-k 5\nthree\nfour\n/reset\nfive\n/stats\n' |
        "$work/chat" -m "$tiny" -c 64 -n 40 -s "Be brief." --seed 4 -t 2 >"$work/out" 2>&1; rc=$?
    check "exit status 0 (got $rc) $(sanitizer_report "$work/out")" test $rc -eq 0
    check "five replies" test "$(grep -c '^\[prompt ' "$work/out")" -eq 5
    check "turns were dropped" grep -q '^\[context full: dropped' "$work/out"
    "$work/chat" -m "$tiny" -p "hi" -n 30 --seed 4 </dev/null >"$work/out" 2>&1; rc=$?
    check "-p: exit status 0 (got $rc) $(sanitizer_report "$work/out")" test $rc -eq 0
    "$work/chat" -m "$tiny" --top-p 3 </dev/null >"$work/out" 2>&1; rc=$?
    check "bad flag: exit status 2 (got $rc) $(sanitizer_report "$work/out")" test $rc -eq 2
else
    fail "building chat with the sanitizers failed: $(head -5 "$work/chat.log")"
fi
end

begin "two_characters under the sanitizers: two contexts, one model, two threads"
if [ -x "$work/two_characters" ]; then
    "$work/two_characters" -m "$tiny" -r 2 -n 8 -t 1 >"$work/out" 2>&1; rc=$?
    check "exit status 0 (got $rc) $(sanitizer_report "$work/out")" test $rc -eq 0
    check "both speak" test "$(grep -c -E '^(Mira|Tomas): ' "$work/out")" -ge 4
else
    fail "building two_characters with the sanitizers failed: $(head -5 "$work/two_characters.log")"
fi
end

finish
