# Helpers for the shell tests (tests/t_*.sh source this file).  Same output as
# tests/test.h: "PASS <test>" or "FAIL <test>: <what>" per test, which tests/run.sh counts.
#
#   begin "name"; check "what" CONDITION...; check_contains "what" "$text" "needle"; end
#   (skip "why" between begin and end when the test cannot run on this machine)
t_name=""
t_failed=0
t_any_failed=0

begin() { t_name=$1; t_failed=0; t_skipped=0; }

# skip "why": the test cannot run here; it prints SKIP instead of PASS
skip() {
    echo "SKIP $t_name: $*"
    t_skipped=1
}

fail() {
    echo "FAIL $t_name: $*"
    t_failed=1
    t_any_failed=1
}

# check "what" cmd args...: fails the test when the command fails
check() {
    local what=$1; shift
    "$@" >/dev/null 2>&1 || fail "$what"
}

check_contains() {
    case $2 in *"$3"*) ;; *) fail "$1: expected '$3' in: $(printf '%s' "$2" | tail -c 600)" ;; esac
}

check_not_contains() {
    case $2 in *"$3"*) fail "$1: did not expect '$3' in: $(printf '%s' "$2" | tail -c 600)" ;; esac
}

end() { [ "$t_failed" -eq 0 ] && [ "$t_skipped" -eq 0 ] && echo "PASS $t_name"; return 0; }

finish() { exit "$t_any_failed"; }
