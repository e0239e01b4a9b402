#!/usr/bin/env bash
# Drives build/chat the way a person would: in a terminal (tmux), typing messages
# and commands, pressing Ctrl-C and Ctrl-D, and reading the screen.  Random models
# write gibberish, so these tests check the mechanics: streaming, the token
# accounting that shows earlier turns stay in the KV cache, Ctrl-C, /reset,
# context overflow, EOF.
set -u
cd "$(dirname "$0")/.."
. tests/shell_test.sh

if ! command -v tmux >/dev/null; then echo "SKIP chat terminal tests: tmux is not installed"; exit 0; fi
for b in build/chat build/random_model; do
    [ -x "$b" ] || { echo "FAIL chat: $b is missing (run make first)"; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/bitnet-t_chat.XXXXXX")
sock=$work/tmux.sock
trap 'tmux -S "$sock" kill-server 2>/dev/null; rm -rf "$work"' EXIT
export TERM=xterm-256color

# tiny: fast, 256 tokens of context.  slow: big enough that a reply takes a few
# seconds on one thread, so there is time to watch it stream and to press Ctrl-C.
build/random_model -o "$work/tiny.gguf" --shape tiny --seed 7 >/dev/null || { echo "FAIL chat: random_model"; exit 1; }
build/random_model -o "$work/slow.gguf" --shape tiny --layers 8 --dim 1024 --ffn 4096 --heads 8 --kv-heads 2 \
    --ctx 4096 --seed 8 >/dev/null || { echo "FAIL chat: random_model"; exit 1; }

# ---- a terminal ------------------------------------------------------------
term() { tmux -S "$sock" "$@"; }
# start NAME COMMAND: runs COMMAND in a new 200x50 terminal; its exit status shows as EXIT=N
start() {
    term new-session -d -s "$1" -x 200 -y 50 "$2; echo EXIT=\$?; sleep 600"
    term set-option -t "$1" history-limit 20000 >/dev/null
}
type_line() { term send-keys -t "$1" -l -- "$2"; term send-keys -t "$1" Enter; }
press() { term send-keys -t "$1" "$2"; }
screen() { term capture-pane -p -J -t "$1" -S - 2>/dev/null; }
# wait_for NAME REGEX [SECONDS]: until a line of the screen matches
wait_for() {
    local i
    for ((i = 0; i < ${3:-20} * 10; i++)); do
        screen "$1" | grep -qE -- "$2" && return 0
        sleep 0.1
    done
    return 1
}
count() { screen "$1" | grep -cE -- "$2"; }
# wait_count NAME REGEX N [SECONDS]: until N lines match
wait_count() {
    local i
    for ((i = 0; i < ${4:-20} * 10; i++)); do
        [ "$(count "$1" "$2")" -ge "$3" ] && return 0
        sleep 0.1
    done
    return 1
}
# the prompt is back: the last line of the screen is "> "
wait_prompt() {
    local i
    for ((i = 0; i < ${2:-20} * 10; i++)); do
        [[ "$(screen "$1" | grep -v '^$' | tail -n 1)" =~ ^\>\ ?$ ]] && return 0
        sleep 0.1
    done
    return 1
}
# stats NAME K: the numbers of the K-th statistics line: prompt reply n_past n_ctx
stats() {
    screen "$1" | grep -E '^\[prompt [0-9]+ tokens' | sed -n "$2p" |
        sed -E 's/^\[prompt ([0-9]+) tokens.*\| reply ([0-9]+) tokens.*\| context ([0-9]+)\/([0-9]+)\]$/\1 \2 \3 \4/'
}
prefix_tokens() { screen "$1" | sed -n -E 's/.*\(prefix ([0-9]+):.*/\1/p' | tail -n 1; }
show() { echo "---- screen of $1:"; screen "$1" | grep -v '^$' | tail -n 25; echo "----"; }

# ---------------------------------------------------------------------------
begin "chat: turns stream, stay in the KV cache, and only new tokens are evaluated"
start c1 "build/chat -m $work/tiny.gguf -n 24 --seed 1 -t 1"
wait_for c1 'Type a message' || fail "no greeting"
type_line c1 "hello there"
wait_count c1 '^\[prompt ' 1 || fail "no statistics line after the first reply"
type_line c1 "hello there"
wait_count c1 '^\[prompt ' 2 || fail "no statistics line after the second reply"
type_line c1 "/stats"
wait_for c1 '^turns dropped' || fail "/stats printed nothing"
read -r p1 r1 ctx1 nctx <<<"$(stats c1 1)"
read -r p2 r2 ctx2 _ <<<"$(stats c1 2)"
prefix=$(prefix_tokens c1)
if [ -z "${p2:-}" ] || [ -z "$prefix" ]; then
    fail "cannot read the statistics"; show c1
else
    check "the context is the model's 256 tokens ($nctx)" test "$nctx" -eq 256
    check "turn 1 fills the cache: prefix $prefix + prompt $p1 + reply $r1 = $ctx1" test $((prefix + p1 + r1)) -eq "$ctx1"
    # The same message again costs the same tokens plus the <|eot_id|> that closed
    # reply 1: had the earlier turn been evaluated again, it would be $ctx1 more.
    check "turn 2 evaluates only its own tokens: $p2 = $p1 + 1" test "$p2" -eq $((p1 + 1))
    check "turn 2 is added to the cache: $ctx1 + $p2 + $r2 = $ctx2" test $((ctx1 + p2 + r2)) -eq "$ctx2"
    check_contains "/stats counts 2 turns" "$(screen c1)" "conversation: 2 turns, $ctx2 tokens in the context of 256"
fi
end

begin "chat: /reset forgets the turns but keeps the prefix"
type_line c1 "/reset"
wait_for c1 '^\[conversation forgotten' || fail "/reset said nothing"
type_line c1 "hello there"
wait_count c1 '^\[prompt ' 3 || fail "no reply after /reset"
read -r p3 r3 ctx3 _ <<<"$(stats c1 3)"
if [ -z "${p3:-}" ]; then fail "cannot read the statistics"; show c1; else
    check "the first turn again: prompt $p3 = $p1" test "$p3" -eq "$p1"
    check "the cache holds the prefix and this turn: $prefix + $p3 + $r3 = $ctx3" test $((prefix + p3 + r3)) -eq "$ctx3"
fi
end

begin "chat: commands and multi-line messages"
type_line c1 "/set temp 0.25"
type_line c1 "/set"
wait_for c1 '^temp 0\.25, top-k 40' || fail "/set temp did not change the temperature"
type_line c1 "/set top-p 7"
wait_for c1 "^/set top-p expects a number from 0 to 1, got '7'" || fail "/set with a bad value"
type_line c1 "/set colour blue"
wait_for c1 "^unknown setting 'colour'" || fail "/set with an unknown name"
type_line c1 "/frobnicate"
wait_for c1 "^unknown command '/frobnicate'" || fail "unknown command"
type_line c1 "/help"
wait_for c1 '^  /reset ' || fail "/help does not list /reset"
type_line c1 'first line \'
wait_for c1 '^\. ' || fail "no continuation prompt after a backslash"
type_line c1 "second line"
wait_count c1 '^\[prompt ' 4 || fail "a two-line message got no reply"
check "only one reply for two lines" test "$(count c1 '^\[prompt ')" -eq 4
end

begin "chat: Ctrl-D at the prompt exits cleanly"
wait_prompt c1 || fail "no prompt"
press c1 C-d
wait_for c1 '^EXIT=0$' 10 || { fail "chat did not exit with status 0 at EOF"; show c1; }
end

# interrupt_reply NAME: sends a message, checks that the reply streams (its text is
# on the screen before the statistics line), presses Ctrl-C while it is going and
# waits for the prompt.  A random model may end a reply by itself before Ctrl-C
# comes: then it tries again, three times at most.  Returns 1 if it never managed.
interrupt_reply() {
    local attempt n0 i reply
    for attempt in 1 2 3; do
        n0=$(count "$1" '^\[prompt ')
        type_line "$1" "tell me a long story, number $attempt"
        for ((i = 0; i < 300; i++)); do
            reply=$(screen "$1" | sed -n "/^> tell me a long story, number $attempt\$/,\$p" | sed 1d)
            [ "$(printf '%s' "$reply" | tr -d '\n' | wc -c)" -ge 8 ] && break
            sleep 0.1
        done
        [ "$(count "$1" '^\[prompt ')" -gt "$n0" ] && continue
        check_not_contains "the reply streams: text but no statistics yet" "$reply" "[prompt"
        press "$1" C-c
        wait_count "$1" '^\[prompt ' $((n0 + 1)) 20 || { fail "no statistics line after Ctrl-C"; return 1; }
        wait_prompt "$1" || { fail "no prompt after Ctrl-C"; return 1; }
        [ "$(count "$1" '^\[interrupted\]')" -ge 1 ] && return 0
    done
    fail "three replies ended by themselves before Ctrl-C"
    return 1
}

begin "chat: Ctrl-C stops a streaming reply and returns to the prompt"
start c2 "build/chat -m $work/slow.gguf -n 2000 --seed 5 -t 1"
wait_for c2 'Type a message' 30 || fail "no greeting"
if interrupt_reply c2; then
    read -r _ r _ _ <<<"$(stats c2 "$(count c2 '^\[prompt ')")"
    check "it stopped early: ${r:-?} of 2000 tokens" test "${r:-2000}" -lt 2000
    n0=$(count c2 '^\[prompt ')
    type_line c2 "/set n 3"
    type_line c2 "are you still there?"
    wait_count c2 '^\[prompt ' $((n0 + 1)) 30 || fail "no reply after an interrupted one"
fi
end

begin "chat: Ctrl-C at the prompt asks first, the second one exits"
wait_prompt c2 30 || fail "no prompt"
press c2 C-c
wait_for c2 '^\(Ctrl-C again to quit\)' || fail "no hint after the first Ctrl-C"
check "still running" test "$(count c2 '^EXIT=')" -eq 0
press c2 C-c
wait_for c2 '^EXIT=0$' 10 || { fail "chat did not exit with status 0"; show c2; }
end

begin "chat: Ctrl-C during a reply, then Ctrl-C at the prompt exits"
start c3 "build/chat -m $work/slow.gguf -n 2000 --seed 9 -t 1"
wait_for c3 'Type a message' 30 || fail "no greeting"
if interrupt_reply c3; then
    check "no hint this time" test "$(count c3 '^\(Ctrl-C again')" -eq 0
    press c3 C-c
    wait_for c3 '^EXIT=0$' 10 || { fail "the second Ctrl-C did not exit"; show c3; }
fi
end

begin "chat: Ctrl-C while a long message is evaluated takes the message back"
start c5 "build/chat -m $work/slow.gguf -n 8 --seed 3 -t 1"
wait_for c5 'Type a message' 30 || fail "no greeting"
type_line c5 "hello"
wait_count c5 '^\[prompt ' 1 || fail "no first reply"
read -r _ _ ctx1 _ <<<"$(stats c5 1)"
# about 2400 tokens (more than a second to evaluate), typed as lines of 600
# characters joined by backslashes (a terminal line holds at most 4095)
word="lorem ipsum dolor sit amet "
line=$(printf "$word%.0s" $(seq 22))
for k in 1 2 3 4 5 6; do type_line c5 "$line\\"; done
type_line c5 "the end"
sleep 0.3
press c5 C-c
wait_for c5 '^\[interrupted\]$' 20 || fail "no [interrupted] notice"
wait_prompt c5 || fail "no prompt"
check "no reply to the message" test "$(count c5 '^\[prompt ')" -eq 1
type_line c5 "hello"
wait_count c5 '^\[prompt ' 2 30 || fail "no reply after the interrupted message"
read -r p2 r2 ctx2 _ <<<"$(stats c5 2)"
read -r p1 _ _ _ <<<"$(stats c5 1)"
if [ -n "${p2:-}" ]; then
    # the cache holds turn 1, its closing <|eot_id|> (evaluated with the first batch
    # of the interrupted message, or now), and the new turn: nothing of the long one
    check "the interrupted message left nothing behind: $ctx1 + 1 + $p1 + $r2 = $ctx2" \
        test $((ctx1 + 1 + p1 + r2)) -eq "$ctx2"
    check "the new message costs what the first did, or one more: $p2" test "$p2" -ge "$p1" -a "$p2" -le $((p1 + 1))
fi
end

begin "chat: a full context drops the oldest turns, keeps the system prompt, and says so"
start c4 "build/chat -m $work/tiny.gguf -c 64 -n 12 --seed 2 -t 1 -s 'Be brief.'"
wait_for c4 'Type a message' || fail "no greeting"
for k in 1 2 3 4 5 6 7 8; do
    type_line c4 "message number $k"
    wait_count c4 '^\[prompt ' "$k" || { fail "no reply to message $k"; break; }
done
type_line c4 "/stats"
wait_for c4 '^turns dropped' || fail "/stats printed nothing"
check "the user is told" test "$(count c4 '^\[context full: dropped the oldest')" -ge 1
dropped=$(screen c4 | sed -n -E 's/^turns dropped to make room: ([0-9]+)$/\1/p' | tail -n 1)
check "/stats counts dropped turns (${dropped:-none})" test "${dropped:-0}" -ge 1
prefix=$(prefix_tokens c4)
check "the system prompt is in the prefix ($prefix tokens)" test "${prefix:-0}" -gt 1
over=0
for k in 1 2 3 4 5 6 7 8; do
    read -r _ _ ctx nctx <<<"$(stats c4 "$k")"
    [ "${ctx:-999}" -le 64 ] && [ "${nctx:-0}" -eq 64 ] || over=1
done
check "the context never holds more than 64 tokens" test "$over" -eq 0
type_line c4 "/quit"
wait_for c4 '^EXIT=0$' 10 || { fail "/quit did not exit with status 0"; show c4; }
end

finish
