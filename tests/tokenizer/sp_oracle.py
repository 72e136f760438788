"""Oracle for tests/test_tokenizer.c: Google's SentencePiece (Debian's
python3-sentencepiece) on a tokenizer.model.

    /usr/bin/python3 sp_oracle.py TOKENIZER_MODEL CORPUS OUT

CORPUS holds one string per line as hex bytes, decoded as UTF-8 with U+FFFD
for ill-formed sequences (Python's "replace" handler replaces each maximal
ill-formed subsequence, as glassbox does). OUT gets per string the ids with
BOS first, comma-separated, a tab, and the decoded text as hex.
"""
import sys

import sentencepiece as spm


def main():
    model, corpus, out = sys.argv[1:4]
    sp = spm.SentencePieceProcessor(model_file=model)
    lines = []
    with open(corpus, "rb") as f:
        for h in f.read().decode("ascii").split("\n")[:-1]:
            text = bytes.fromhex(h).decode("utf-8", errors="replace")
            ids = [sp.bos_id()] + sp.encode(text)
            lines.append(",".join(map(str, ids)) + "\t" + sp.decode(ids).encode("utf-8").hex())
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
