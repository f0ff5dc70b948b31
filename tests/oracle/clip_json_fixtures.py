#!/usr/bin/env python3
"""clip_json_fixtures.py — tokenizer.json fixtures for the C CLIP tokenizer's third loader
(cd_clip_bpe_load_tokenizer_json, tests/test_clip_json.c), from the committed vocabularies of
tests/oracle/clip_bpe_fixtures.py:

  small_tokenizer.json   what transformers' CLIPTokenizer (5.x, HF tokenizers) saves for
                         small_vocab.json + small_merges.txt (merges as [a, b] pairs)
  order_tokenizer.json   the same for order_vocab.json + order_merges.txt, merges rewritten as
                         "a b" strings (the older tokenizer.json form)

Checked here: tokenizers.Tokenizer.from_file on each file gives the ids of small_ids.txt /
order_ids.txt (the fixtures the C test compares with) on every prompt. With the real vocabulary
(open_clip's bpe_simple_vocab_16e6.txt.gz as argument) it also prints whether transformers'
CLIPTokenizer and the tokenizer.json it saves agree on the fuzz corpus.

    python3 tests/oracle/clip_json_fixtures.py [PATH/bpe_simple_vocab_16e6.txt.gz]
"""
import gzip
import json
import os
import shutil
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import venv_bootstrap  # noqa: E402

venv_bootstrap.ensure()  # tests/oracle/.venv with torch, transformers, tokenizers, sentencepiece

import tokenizers
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clip_bpe_fixtures import N_MERGES, OUT, corpus, write_json_layout  # noqa: E402


def save_json(vocab, merges, dst, string_merges):
    with tempfile.TemporaryDirectory() as d:
        shutil.copy(vocab, os.path.join(d, "vocab.json"))
        shutil.copy(merges, os.path.join(d, "merges.txt"))
        tok = transformers.CLIPTokenizer.from_pretrained(d)
        tok.save_pretrained(d + "/out")
        with open(d + "/out/tokenizer.json", encoding="utf-8") as f:
            j = json.load(f)
    if string_merges:
        j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, separators=(",", ":"))
    return tok


def check(path, ids_file):
    t = tokenizers.Tokenizer.from_file(path)
    n = 0
    for line in open(ids_file, encoding="utf-8"):
        if line.startswith("#"):
            continue
        _, hexp, ids = line.rstrip("\n").split("\t")
        p = bytes.fromhex(hexp).decode("utf-8")
        got = t.encode(p, add_special_tokens=False).ids
        assert got == [int(x) for x in ids.split()], (path, p, got)
        n += 1
    print(f"{path}: {n} prompts, ids identical to {os.path.basename(ids_file)}")


def main():
    print("transformers", transformers.__version__, "tokenizers", tokenizers.__version__)
    save_json(f"{OUT}/small_vocab.json", f"{OUT}/small_merges.txt", f"{OUT}/small_tokenizer.json", False)
    save_json(f"{OUT}/order_vocab.json", f"{OUT}/order_merges.txt", f"{OUT}/order_tokenizer.json", True)
    check(f"{OUT}/small_tokenizer.json", f"{OUT}/small_ids.txt")
    check(f"{OUT}/order_tokenizer.json", f"{OUT}/order_ids.txt")
    if len(sys.argv) > 1:
        with gzip.open(sys.argv[1], "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(m.split()) for m in lines[1:N_MERGES + 1]]
        with tempfile.TemporaryDirectory() as d:
            write_json_layout(d, "", merges)
            tok = transformers.CLIPTokenizer.from_pretrained(d)
            tok.save_pretrained(d + "/out")
            t = tokenizers.Tokenizer.from_file(d + "/out/tokenizer.json")
            ps = corpus()
            diff = [p for p in ps if tok(p, add_special_tokens=False)["input_ids"]
                    != t.encode(p, add_special_tokens=False).ids]
            print(f"real vocabulary: CLIPTokenizer vs its tokenizer.json: {len(diff)} of {len(ps)} prompts differ")


if __name__ == "__main__":
    main()
