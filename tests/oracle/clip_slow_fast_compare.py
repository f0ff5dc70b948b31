#!/usr/bin/env python3
"""clip_slow_fast_compare.py — does transformers 4.x's slow CLIPTokenizer differ from
CLIPTokenizerFast (and from transformers 5's CLIPTokenizer, which the C code matches:
tests/fixtures/clip_bpe/real_ids.txt) on the fuzz corpus of clip_bpe_fixtures.py? Not a fixture
writer: prints counts and the first examples (docs/tokenizer_clip.md quotes them).

    python3 -m venv /tmp/venv4 && /tmp/venv4/bin/pip install 'transformers<5' tokenizers [ftfy]
    /tmp/venv4/bin/python tests/oracle/clip_slow_fast_compare.py PATH/bpe_simple_vocab_16e6.txt.gz [--no-ftfy]

--no-ftfy hides ftfy from transformers (the slow class then cleans text with BERT's BasicTokenizer,
as it does where ftfy is not installed, e.g. a plain diffusers install).
"""
import gzip
import os
import sys
import tempfile

if "--no-ftfy" in sys.argv:
    sys.modules["ftfy"] = None  # import ftfy now raises ImportError
import tokenizers  # noqa: E402
import transformers  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clip_bpe_fixtures import N_MERGES, OUT, corpus, write_json_layout  # noqa: E402


def main():
    with gzip.open(sys.argv[1], "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = [tuple(m.split()) for m in lines[1:N_MERGES + 1]]
    want = {}
    for line in open(os.path.join(OUT, "real_ids.txt"), encoding="utf-8"):
        if not line.startswith("#"):
            _, h, ids = line.rstrip("\n").split("\t")
            want[bytes.fromhex(h).decode()] = [int(x) for x in ids.split()]
    ftfy = "--no-ftfy" not in sys.argv
    try:
        import ftfy as _  # noqa: F401
    except ImportError:
        ftfy = False
    print("transformers", transformers.__version__, "tokenizers", tokenizers.__version__, "ftfy", ftfy)
    with tempfile.TemporaryDirectory() as d:
        write_json_layout(d, "", merges)
        slow = transformers.CLIPTokenizer.from_pretrained(d)
        fast = transformers.CLIPTokenizerFast.from_pretrained(d)
        ps = corpus()
        ids = lambda t, p: t(p, add_special_tokens=False)["input_ids"]
        for name, a, b in [("slow vs fast", slow, fast), ("slow vs 5.x (= cleardit)", slow, None),
                           ("fast vs 5.x (= cleardit)", fast, None)]:
            bad = [p for p in ps if ids(a, p) != (ids(b, p) if b else want[p])]
            print(f"{name} ({type(a).__name__}): {len(bad)} of {len(ps)} prompts differ")
            for p in sorted(bad, key=len)[:6]:
                print(f"   {p!r}: {ids(a, p)} vs {ids(b, p) if b else want[p]}")


if __name__ == "__main__":
    main()
