#!/usr/bin/env bash
# download_model.sh - fetches BitNet b1.58 2B4T from Hugging Face, verifies it, converts it.
#
#   examples/download_model.sh [--dir DIR] [--out FILE] [--no-convert]      (`make model` runs it)
#
# Downloads the checkpoint files of microsoft/bitnet-b1.58-2B-4T (config.json,
# generation_config.json, tokenizer.json, tokenizer_config.json and the safetensors
# weights) into DIR (default models/bitnet-b1.58-2B-4T), checks each file's size and
# hash against the hub's listing (sha256 for large files, the git blob sha1 for the
# others), then builds build/convert and writes the model file FILE (default
# models/bitnet-b1.58-2B-4T.gguf).  Needs only bash, curl and sha256sum/sha1sum
# (or shasum).
#
# Safe to interrupt and run again: a partial download stays as FILE.part and
# curl resumes it; verified files are not fetched again.
#
# Environment:
#   HF_ENDPOINT         hub address (default https://huggingface.co), e.g. a mirror
#   HF_TOKEN            sent as a bearer token when set (not needed for this model)
#   BITNET_HF_REPO      another repository with the same layout, e.g.
#                       microsoft/bitnet-b1.58-2B-4T-bf16 (the bf16 master weights)
#   BITNET_HF_REVISION  branch, tag or commit (default main)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
endpoint=${HF_ENDPOINT:-https://huggingface.co}
endpoint=${endpoint%/}
repo=${BITNET_HF_REPO:-microsoft/bitnet-b1.58-2B-4T}
revision=${BITNET_HF_REVISION:-main}
name=${repo##*/}
dir=$root/models/$name
out=$root/models/$name.gguf
convert=1

usage() { echo "usage: $0 [--dir DIR] [--out FILE.gguf] [--no-convert]"; }
die() { echo "download_model: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case $1 in
    --dir)        [ $# -ge 2 ] || { usage >&2; exit 2; }; dir=$2; shift 2 ;;
    --out)        [ $# -ge 2 ] || { usage >&2; exit 2; }; out=$2; shift 2 ;;
    --no-convert) convert=0; shift ;;
    -h|--help)    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *)            echo "download_model: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

command -v curl >/dev/null || die "curl is not installed (Debian/Ubuntu: apt-get install curl)"
if command -v sha256sum >/dev/null && command -v sha1sum >/dev/null; then
    sha256() { sha256sum | cut -d' ' -f1; }
    sha1() { sha1sum | cut -d' ' -f1; }
elif command -v shasum >/dev/null; then
    sha256() { shasum -a 256 | cut -d' ' -f1; }
    sha1() { shasum -a 1 | cut -d' ' -f1; }
else
    die "need sha256sum and sha1sum (coreutils) or shasum to verify the download"
fi

auth=()
[ -n "${HF_TOKEN:-}" ] && auth=(-H "Authorization: Bearer $HF_TOKEN")
curl_common=(--location --connect-timeout 20 --user-agent "bitnet.h-download_model")

# Says why curl failed, in the user's terms.  $1 curl's exit status, $2 the HTTP status.
explain_curl_failure() {
    case $1 in
    5|6|7|28|35|56)
        echo "cannot reach $endpoint (curl error $1). Are you offline or behind a proxy" \
             "(set https_proxy)? Files already downloaded are kept: run this again to resume." ;;
    22)
        case $2 in
        401|403) echo "$endpoint refused access (HTTP $2): the repository may be gated or private; set HF_TOKEN." ;;
        404)     echo "not found (HTTP 404): check the repository '$repo' and revision '$revision'." ;;
        *)       echo "the hub answered HTTP $2; try again later." ;;
        esac ;;
    *)  echo "curl failed with error $1 (see 'man curl', EXIT CODES)." ;;
    esac
}

# ---------------------------------------------------------------------------
# The listing: one line "path size sha256 sha1" per file we need.  The hub's JSON
# is a flat array of objects, with at most one nested object ("lfs"), so a
# pattern match is enough and no JSON tool is needed.
# ---------------------------------------------------------------------------
listing_url="$endpoint/api/models/$repo/tree/$revision"
echo "Listing $repo ($revision) on $endpoint"
listing_file=${TMPDIR:-/tmp}/bitnet-listing.$$
status=0
http=$(curl --silent --fail "${curl_common[@]}" ${auth[@]+"${auth[@]}"} -w '%{http_code}' \
            -o "$listing_file" "$listing_url") || status=$?
[ "$status" -eq 0 ] || { rm -f "$listing_file"; die "$(explain_curl_failure "$status" "$http")"; }
listing_json=$(tr -d ' \t\r\n' < "$listing_file")
rm -f "$listing_file"

wanted_file() {
    case $1 in
    config.json|generation_config.json|tokenizer.json|tokenizer_config.json) return 0 ;;
    model.safetensors.index.json|*.safetensors) return 0 ;;
    esac
    return 1
}

files=()
while IFS= read -r object; do
    case $object in *'"type":"file"'*) ;; *) continue ;; esac
    path=$(printf '%s' "$object" | sed -n 's/.*"path":"\([^"]*\)".*/\1/p')
    wanted_file "$path" || continue
    # a file name, never a path: the listing must not write outside DIR
    [[ $path =~ ^[A-Za-z0-9._-]+$ && $path != .* ]] || die "unexpected file name in the listing: '$path'"
    lfs=$(printf '%s' "$object" | grep -oE '"lfs":\{[^{}]*\}' || true)
    rest=${object/"$lfs"/}
    size=$(printf '%s' "$rest" | sed -n 's/.*"size":\([0-9][0-9]*\).*/\1/p')
    sum256=$(printf '%s' "$lfs" | sed -n 's/.*"oid":"\(sha256:\)\{0,1\}\([0-9a-f]\{64\}\)".*/\2/p')
    sum1=$(printf '%s' "$rest" | sed -n 's/.*"oid":"\([0-9a-f]\{40\}\)".*/\1/p')
    [ -n "$size" ] || die "the listing gives no size for '$path'"
    # an LFS file's own oid is the hash of its pointer, not of its content
    [ -n "$lfs" ] && sum1=""
    files+=("$path ${size} ${sum256:--} ${sum1:--}")
done < <(printf '%s' "$listing_json" | grep -oE '\{[^{}]*(\{[^{}]*\}[^{}]*)*\}' || true)

have() { local f; for f in "${files[@]+"${files[@]}"}"; do [ "${f%% *}" = "$1" ] && return 0; done; return 1; }
[ ${#files[@]} -gt 0 ] || die "the listing of $repo has no model files (is '$listing_url' a Hugging Face model?)"
for required in config.json tokenizer.json tokenizer_config.json; do
    have "$required" || die "$repo has no $required: not a checkpoint this script can convert"
done
have model.safetensors || have model.safetensors.index.json ||
    die "$repo has neither model.safetensors nor model.safetensors.index.json"

# ---------------------------------------------------------------------------
# Download and verify
# ---------------------------------------------------------------------------
file_size() { wc -c < "$1" | tr -d ' '; }
human() { awk -v b="$1" 'BEGIN { split("B KB MB GB TB", u); i = 1; while (b >= 1000 && i < 5) { b /= 1000; i++ }
                                 printf(i == 1 ? "%d %s" : "%.1f %s", b, u[i]) }'; }

# Prints an error and returns 1 when file $1 is not $2 bytes with sha256 $3 / git blob sha1 $4.
verify() {
    local file=$1 size=$2 want256=$3 want1=$4 got
    got=$(file_size "$file")
    [ "$got" = "$size" ] || { echo "size $got bytes, expected $size"; return 1; }
    if [ "$want256" != - ]; then
        got=$(sha256 < "$file")
        [ "$got" = "$want256" ] || { echo "sha256 $got, expected $want256"; return 1; }
        echo "sha256 ok"
    elif [ "$want1" != - ]; then
        got=$({ printf 'blob %s\0' "$size"; cat "$file"; } | sha1)
        [ "$got" = "$want1" ] || { echo "git sha1 $got, expected $want1"; return 1; }
        echo "sha1 ok"
    else
        echo "size ok (the hub gives no hash)"
    fi
}

mkdir -p "$dir"
progress=(--silent --show-error)
[ -t 2 ] && progress=(--progress-bar)
total=0
for entry in "${files[@]}"; do
    read -r path size sum256 sum1 <<<"$entry"
    total=$((total + size))
    final=$dir/$path part=$dir/$path.part
    if [ -f "$final" ]; then
        if result=$(verify "$final" "$size" "$sum256" "$sum1"); then
            printf '  %-34s %10s  %s, already here\n' "$path" "$(human "$size")" "$result"
            continue
        fi
        # an older or broken copy: resume it if it can be a prefix, else start over
        if [ "$(file_size "$final")" -lt "$size" ]; then mv "$final" "$part"; else rm -f "$final"; fi
    fi
    [ -f "$part" ] && [ "$(file_size "$part")" -gt "$size" ] && rm -f "$part"
    printf '  %-34s %10s  downloading\n' "$path" "$(human "$size")"
    attempt=1
    while [ ! -f "$part" ] || [ "$(file_size "$part")" -lt "$size" ]; do
        status=0
        http=$(curl --fail "${curl_common[@]}" ${auth[@]+"${auth[@]}"} "${progress[@]}" -w '%{http_code}' \
                    --continue-at - -o "$part" "$endpoint/$repo/resolve/$revision/$path") || status=$?
        case $status in
        0)  [ "$(file_size "$part")" -ge "$size" ] || status=18 ;;
        33) rm -f "$part" ;; # the server cannot resume: start this file over
        esac
        [ "$status" -eq 0 ] && break
        if [ "$attempt" -ge 3 ] || [ "$status" -eq 22 ] || [ "$status" -eq 6 ]; then
            die "$path: $(explain_curl_failure "$status" "$http")"
        fi
        if [ "$status" -eq 33 ]; then
            echo "  $path: the server cannot resume, starting over (attempt $((attempt + 1)) of 3)" >&2
        else
            echo "  $path: interrupted (curl error $status), resuming (attempt $((attempt + 1)) of 3)" >&2
        fi
        attempt=$((attempt + 1))
        sleep 1
    done
    if ! result=$(verify "$part" "$size" "$sum256" "$sum1"); then
        rm -f "$part"
        die "$path is corrupt ($result); removed it, run this again to download it afresh"
    fi
    mv "$part" "$final"
    printf '  %-34s %10s  %s\n' "$path" "$(human "$size")" "$result"
done
echo "All ${#files[@]} files of $repo verified in $dir ($(human "$total"))."

# ---------------------------------------------------------------------------
# Convert
# ---------------------------------------------------------------------------
[ "$convert" -eq 1 ] || exit 0
newest_input=$(ls -t "$dir"/* | head -n 1)
if [ -f "$out" ] && [ "$out" -nt "$newest_input" ]; then
    echo "$out is up to date."
else
    tool=$root/build/convert
    if [ ! -x "$tool" ] || [ "$root/bitnet.h" -nt "$tool" ] || [ "$root/examples/convert.c" -nt "$tool" ]; then
        echo "Building the converter"
        make -s -C "$root" build/convert || die "building build/convert failed"
    fi
    mkdir -p "$(dirname "$out")"
    "$tool" "$dir" "$out" || die "converting $dir failed"
fi
echo
echo "Chat with it:  build/chat -m ${out#"$root"/}"
