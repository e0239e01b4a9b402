#!/usr/bin/env bash
# Tests examples/download_model.sh against a local fake of the Hugging Face hub
# (tests/fake_hf_hub.py): verification, resuming, corrupt data, offline, bad repository.
set -u
cd "$(dirname "$0")/.."
. tests/shell_test.sh

if ! command -v python3 >/dev/null || ! command -v curl >/dev/null; then
    echo "SKIP download tests: need python3 and curl"; exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/bitnet-t_download.XXXXXX")
hub=$work/hub repo=$hub/microsoft/bitnet-b1.58-2B-4T
mkdir -p "$repo"
python3 tests/fake_hf_hub.py "$hub" "$work/port" "$work/log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT

# A checkpoint-shaped repository: small JSON files, a 300 KB "safetensors" file of
# random bytes, and a file the script must leave alone.
printf '{"architectures": ["BitNetForCausalLM"], "hidden_size": 128}\n' >"$repo/config.json"
printf '{"bos_token_id": 128000}\n' >"$repo/generation_config.json"
printf '{"model": {"type": "BPE"}}\n' >"$repo/tokenizer.json"
printf '{"chat_template": "x"}\n' >"$repo/tokenizer_config.json"
printf '# model card\n' >"$repo/README.md"
head -c 300000 /dev/urandom >"$repo/model.safetensors"

for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
export HF_ENDPOINT="http://127.0.0.1:$(cat "$work/port")"
dl() { : >"$work/log"; examples/download_model.sh --no-convert --dir "$work/dl" "$@" 2>&1; }
same_files() {
    local f
    for f in config.json generation_config.json tokenizer.json tokenizer_config.json model.safetensors; do
        cmp -s "$repo/$f" "$work/dl/$f" || return 1
    done
}

begin "download: every checkpoint file, verified by sha256 or git sha1"
out=$(dl); rc=$?
check "exit status 0 (got $rc)" test $rc -eq 0
check "files identical to the hub's" same_files
check "README.md not downloaded" test ! -e "$work/dl/README.md"
check "no .part left" test -z "$(ls "$work/dl" | grep part)"
check_contains "sha256 of the weights" "$out" "model.safetensors"
check_contains "sha256 of the weights" "$out" "sha256 ok"
check_contains "git sha1 of config.json" "$out" "sha1 ok"
check_contains "summary" "$out" "All 5 files"
end

begin "download: a second run fetches nothing"
out=$(dl); rc=$?
check "exit status 0" test $rc -eq 0
check "no file requested" test -z "$(grep resolve/ "$work/log")"
check_contains "says so" "$out" "already here"
end

begin "download: a dropped connection is resumed where it stopped"
rm -f "$work/dl/model.safetensors"
echo 100000 >"$hub/.cut_after"
out=$(dl); rc=$?
check "exit status 0: $out" test $rc -eq 0
check "files identical" same_files
check "the retry asked for the rest (Range: bytes=100000-)" grep -q 'bytes=100000-' "$work/log"
check_contains "tells the user" "$out" "resuming"
end

begin "download: a partial file from an earlier run is resumed"
head -c 123457 "$repo/model.safetensors" >"$work/dl/model.safetensors.part"
rm -f "$work/dl/model.safetensors"
out=$(dl); rc=$?
check "exit status 0: $out" test $rc -eq 0
check "files identical" same_files
check "asked for the rest only" grep -q 'bytes=123457-' "$work/log"
end

begin "download: a server that cannot resume makes it start over"
head -c 5000 "$repo/model.safetensors" >"$work/dl/model.safetensors.part"
rm -f "$work/dl/model.safetensors"
touch "$hub/.no_ranges"
out=$(dl); rc=$?
rm -f "$hub/.no_ranges"
check "exit status 0: $out" test $rc -eq 0
check "files identical" same_files
end

begin "download: a changed small file is fetched again"
echo '{}' >"$work/dl/config.json"
out=$(dl); rc=$?
check "exit status 0: $out" test $rc -eq 0
check "files identical" same_files
check "config.json requested" grep -q 'resolve/main/config.json' "$work/log"
check "weights not requested" test -z "$(grep cdn/ "$work/log")"
end

begin "download: corrupt data is rejected and removed"
rm -rf "$work/dl"
touch "$hub/.corrupt"
out=$(dl); rc=$?
rm -f "$hub/.corrupt"
check "exit status 1 (got $rc)" test $rc -eq 1
check_contains "names the file and the hash" "$out" "model.safetensors is corrupt (sha256"
check "no corrupt file kept" test ! -e "$work/dl/model.safetensors"
check "no .part kept" test ! -e "$work/dl/model.safetensors.part"
end

begin "download: an indented listing parses the same"
touch "$hub/.pretty"
rm -rf "$work/dl"
out=$(dl); rc=$?
rm -f "$hub/.pretty"
check "exit status 0: $out" test $rc -eq 0
check "files identical" same_files
end

begin "download: offline gives a clear message"
out=$(HF_ENDPOINT=http://127.0.0.1:9 examples/download_model.sh --no-convert --dir "$work/off" 2>&1); rc=$?
check "exit status 1 (got $rc)" test $rc -eq 1
check_contains "says it cannot reach the hub" "$out" "cannot reach http://127.0.0.1:9"
check_contains "says how to resume" "$out" "run this again to resume"
check "nothing but that message: $out" test "$(printf '%s\n' "$out" | grep -vc '^Listing ')" -eq 1
out=$(HF_ENDPOINT=https://huggingface.invalid examples/download_model.sh --no-convert --dir "$work/off" 2>&1); rc=$?
check "unknown host: exit status 1 (got $rc)" test $rc -eq 1
check_contains "unknown host: says it cannot reach the hub" "$out" "cannot reach https://huggingface.invalid"
end

begin "download: a repository that does not exist"
out=$(BITNET_HF_REPO=microsoft/no-such-model dl); rc=$?
check "exit status 1 (got $rc)" test $rc -eq 1
check_contains "says not found" "$out" "HTTP 404"
check_contains "names the repository" "$out" "microsoft/no-such-model"
end

begin "download: a repository without weights"
mkdir -p "$hub/someone/empty"
echo '{}' >"$hub/someone/empty/config.json"
out=$(BITNET_HF_REPO=someone/empty dl); rc=$?
check "exit status 1 (got $rc)" test $rc -eq 1
check_contains "names what is missing" "$out" "has no tokenizer.json"
end

begin "download then convert: a model file that loads and answers"
fixture=tests/fixtures/packed_bitlinear_tied   # a tiny checkpoint in 2B4T's layout
if [ -x build/convert ] && [ -x build/chat ] && [ -f "$fixture/model.safetensors" ]; then
    fx=$hub/microsoft/tiny-bitnet
    mkdir -p "$fx"
    cp "$fixture/config.json" "$fixture/model.safetensors" "$fixture/tokenizer.json" "$fixture/tokenizer_config.json" "$fx/"
    out=$(BITNET_HF_REPO=microsoft/tiny-bitnet examples/download_model.sh --dir "$work/fx" --out "$work/fx.gguf" 2>&1); rc=$?
    check "exit status 0: $out" test $rc -eq 0
    check "the model file is written" test -s "$work/fx.gguf"
    check_contains "says how to chat" "$out" "build/chat -m $work/fx.gguf"
    reply=$(build/chat -m "$work/fx.gguf" -p "Hello" -n 8 --seed 1 </dev/null 2>&1); rc=$?
    check "chat answers with it (exit status $rc): $reply" test $rc -eq 0
    out=$(BITNET_HF_REPO=microsoft/tiny-bitnet examples/download_model.sh --dir "$work/fx" --out "$work/fx.gguf" 2>&1); rc=$?
    check "a second run: exit status 0" test $rc -eq 0
    check_contains "a second run converts nothing" "$out" "is up to date"
else
    skip "needs build/convert, build/chat and $fixture"
fi
end

begin "download: bad flags"
out=$(examples/download_model.sh --frobnicate 2>&1); rc=$?
check "exit status 2 (got $rc)" test $rc -eq 2
check_contains "names the flag" "$out" "unknown option '--frobnicate'"
check_contains "usage line" "$out" "usage:"
out=$(examples/download_model.sh -h 2>&1); rc=$?
check "-h: exit status 0" test $rc -eq 0
check_contains "-h describes HF_ENDPOINT" "$out" "HF_ENDPOINT"
end

finish
