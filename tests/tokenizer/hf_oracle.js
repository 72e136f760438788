// Oracle for tests/test_tokenizer.c: Hugging Face's tokenizers library
// (its Node binding, installed by tools/install-deps.sh into
// $GB_NODE_ORACLE/node_modules/tokenizers).
//
//   node hf_oracle.js encode TOKENIZER_JSON CORPUS OUT
//   node hf_oracle.js batch  TOKENIZER_JSON CORPUS OUT PAD_ID
//   node hf_oracle.js vocab  TOKENIZER_JSON OUT
//
// CORPUS holds one string per line as hex bytes. The bytes are decoded as
// UTF-8 with U+FFFD for ill-formed sequences (Buffer's decoder replaces each
// maximal ill-formed subsequence, as Rust's from_utf8_lossy and glassbox do):
// a JavaScript string cannot carry ill-formed UTF-8, so this is what
// Hugging Face sees of such input.
//
// encode writes per string, tab-separated: ids with special tokens, ids
// without (both comma-separated), decode(ids with special, keep special) as
// hex, decode(..., skip special) as hex, and each id's token string
// (idToToken) as hex, joined by commas. batch writes per row: padded ids and attention mask (left padding,
// PAD_ID). vocab writes the vocabulary size (added tokens included), then
// per id the token as hex, or "-" for none.
'use strict';
const fs = require('fs');
const path = require('path');

const dir = process.env.GB_NODE_ORACLE || 'build/oracle-node';
const { Tokenizer } = require(path.resolve(dir, 'node_modules', 'tokenizers'));

const hex = (s) => Buffer.from(s, 'utf8').toString('hex');
const readCorpus = (file) =>
  fs.readFileSync(file, 'utf8').split('\n').slice(0, -1).map((h) => Buffer.from(h, 'hex').toString('utf8'));

async function main() {
  const [mode, tokFile, a, b, c] = process.argv.slice(2);
  const tok = Tokenizer.fromFile(tokFile);
  const out = [];
  if (mode === 'encode') {
    for (const text of readCorpus(a)) {
      const withSpecial = await tok.encode(text, null, { addSpecialTokens: true });
      const plain = await tok.encode(text, null, { addSpecialTokens: false });
      const ids = withSpecial.getIds();
      out.push(
        [
          ids.join(','),
          plain.getIds().join(','),
          hex(await tok.decode(ids, false)),
          hex(await tok.decode(ids, true)),
          ids.map((id) => hex(tok.idToToken(id))).join(','),
        ].join('\t'),
      );
    }
    fs.writeFileSync(b, out.join('\n') + '\n');
  } else if (mode === 'batch') {
    const padId = Number(c);
    tok.setPadding({ direction: 'left', padId, padToken: tok.idToToken(padId) });
    const encs = await tok.encodeBatch(readCorpus(a), { addSpecialTokens: true });
    for (const e of encs) out.push(e.getIds().join(',') + '\t' + e.getAttentionMask().join(','));
    fs.writeFileSync(b, out.join('\n') + '\n');
  } else if (mode === 'vocab') {
    const n = tok.getVocabSize(true);
    out.push(String(n));
    for (let id = 0; id < n; id++) {
      const t = tok.idToToken(id);
      out.push(t === null || t === undefined ? '-' : hex(t));
    }
    fs.writeFileSync(a, out.join('\n') + '\n');
  } else {
    throw new Error('unknown mode ' + mode);
  }
}

main().catch((e) => {
  process.stderr.write('hf_oracle: ' + (e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
