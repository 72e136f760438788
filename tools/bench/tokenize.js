// Hugging Face's tokenizers (the Node binding) on the text glassbox's
// benchmark encodes: bench.py compares the speed and the ids.
//
// usage: node tokenize.js TOKENIZER_JSON TEXT_FILE REPS
// prints one line of JSON: {"seconds": best time of REPS encodes after one
// warmup, "bytes": text size, "ids": [...]}
const fs = require('fs');
const { Tokenizer } = require('tokenizers');

(async () => {
    const [tokPath, textPath, repsArg] = process.argv.slice(2);
    const tok = Tokenizer.fromFile(tokPath);
    const text = fs.readFileSync(textPath, 'utf8');
    const reps = Number(repsArg) > 0 ? Number(repsArg) : 3;
    let best = Infinity, ids = null;
    for (let i = 0; i <= reps; i++) {
        const t0 = process.hrtime.bigint();
        const enc = await tok.encode(text);
        const t = Number(process.hrtime.bigint() - t0) / 1e9;
        if (i > 0 && t < best) best = t;
        ids = enc.getIds();
    }
    process.stdout.write(JSON.stringify({ seconds: best, bytes: Buffer.byteLength(text, 'utf8'), ids: Array.from(ids) }) + '\n');
})().catch((e) => {
    process.stderr.write(String(e && e.stack ? e.stack : e) + '\n');
    process.exit(1);
});
