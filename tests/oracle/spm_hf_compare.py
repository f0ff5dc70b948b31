"""spm_hf_compare.py - where transformers' T5 tokenizers differ from sentencepiece's encode
(which src/text/spm.c matches). Not a fixture writer: prints the differences that
docs/tokenizer_spm.md lists, over the prompts of tests/oracle/spm_fixtures.py.

    /tmp/venv-spm/bin/pip install sentencepiece transformers tokenizers protobuf
    /tmp/venv-spm/bin/python tests/oracle/spm_hf_compare.py [model]   # default: t5like

transformers 4.x has T5Tokenizer (slow: sentencepiece underneath, legacy=True by default) and
T5TokenizerFast (HF tokenizers, converted from the .model); transformers 5 has only T5Tokenizer,
backed by HF tokenizers. Each class found is loaded with from_pretrained from a folder holding the
model as spiece.model, as T5 checkpoints ship it.
"""
import shutil
import sys
import tempfile
from pathlib import Path

import sentencepiece as spm
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spm_fixtures import OUT, prompts  # noqa: E402


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "t5like"
    path = str(OUT / (name + ".model"))
    sp = spm.SentencePieceProcessor(model_file=path)
    eos = sp.eos_id()
    d = tempfile.mkdtemp()
    shutil.copy(path, d + "/spiece.model")
    toks = {}
    for cname in ["T5Tokenizer", "T5TokenizerFast"]:
        cls = getattr(transformers, cname, None)
        if cls is None:
            continue
        for kw in ([{}, {"legacy": False}] if cname == "T5Tokenizer" else [{}]):
            label = cname + "".join(" %s=%s" % kv for kv in kw.items())
            try:
                toks[label] = cls.from_pretrained(d, **kw)
            except Exception as e:  # a class that cannot be built is itself a difference
                print("%s: cannot load: %s" % (label, str(e).splitlines()[0]))
    print("transformers", transformers.__version__, "sentencepiece", spm.__version__)
    ps = prompts(1234, 400)
    for label, tok in toks.items():
        bad = []
        for p in ps:
            want = sp.encode(p) + [eos]
            got = tok(p)["input_ids"]
            if got != want:
                bad.append((p, want, got))
        print("\n== %s (%s): %d of %d prompts differ" % (label, type(tok).__name__, len(bad), len(ps)))
        for p, want, got in sorted(bad, key=lambda b: len(b[0]))[:int(sys.argv[2]) if len(sys.argv) > 2 else 12]:
            d = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
            lo = max(0, d - 3)
            pieces = lambda ids: " ".join(sp.id_to_piece(i) if i < sp.get_piece_size() else "<%d>" % i
                                          for i in ids[lo:d + 4])
            print("  %r (%d ids vs %d; first difference at %d)\n    spm: %s\n    hf:  %s"
                  % (p[:70], len(want), len(got), d, pieces(want), pieces(got)))

if __name__ == "__main__":
    main()
