"""spm_json_fixtures.py - T5 tokenizer.json oracle for src/text/spm_json.c and spm_hf.c
(tests/test_spm_json.c): the two semantics of the C T5 tokenizer against sentencepiece and HF.

Writes tests/fixtures/spm/:
  t5small.model             t5like.model (tests/oracle/spm_fixtures.py: nmt_nfkc, T5's settings) with
                            its charsmap cut down to the nmt_nfkc rules whose characters occur in the
                            fuzz corpus (a 240 KB charsmap becomes a few KB; sentencepiece's own
                            trainer compiles the cut rules); same pieces and scores
  t5small.tokenizer.json    what transformers' T5TokenizerFast writes for it (its converter: the
                            tokenizer.json diffusers' tokenizer_2/ holds)
  t5legacy.tokenizer.json   the same with the older converter's pipeline (normalizer Precompiled +
                            Replace(" {2,}", " "), pre-tokenizer Metaspace alone, as in older T5 hub files)
  t5small_json.tsv          per prompt: hex UTF-8 TAB sentencepiece ids TAB T5TokenizerFast ids TAB
                            the legacy pipeline's ids TAB ids with prepend_scheme "first" (HF tokenizers
                            on an edited copy: first_variant()); content ids, no EOS; "=" stands for the
                            sentencepiece column, "~" for the T5TokenizerFast one
  t5small.info              package versions

    python3 tests/oracle/spm_json_fixtures.py
    python3 tests/oracle/spm_json_fixtures.py --fuzz N DIR   # see fuzz()
    PYTHON tests/oracle/spm_json_fixtures.py --check   # any venv (transformers 4 or 5): see check()

Checked while writing: transformers' T5TokenizerFast equals tokenizers.Tokenizer on the same file;
tok(p)["input_ids"] = content + [EOS]; FLUX's padded call (max_length L, truncation) equals
content[:L-1] + [EOS] + [PAD]...; the spiece.model through transformers' T5TokenizerFast (converted
on the fly) gives the same ids as the tokenizer.json.
"""
import json
import random
import shutil
import subprocess
import os
import sys
import tempfile
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import venv_bootstrap  # noqa: E402

venv_bootstrap.ensure()  # tests/oracle/.venv with torch, transformers, tokenizers, sentencepiece

import sentencepiece as spm
import tokenizers
import transformers
from sentencepiece import sentencepiece_model_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spm_fixtures import OUT, POOL, FIXED, corpus, prompts  # noqa: E402


def charsmap_rules(blob: bytes):
    """Every key of a precompiled charsmap (Darts double array + NUL-terminated strings) -> its value."""
    n = int.from_bytes(blob[:4], "little")
    t = [int.from_bytes(blob[4 + 4 * i:8 + 4 * i], "little") for i in range(n // 4)]
    strs = blob[4 + n:]

    def off(u):
        return (u >> 10) << ((u & (1 << 9)) >> 6)

    rules = {}
    stack = [(off(t[0]), b"")]
    while stack:
        pos, key = stack.pop()
        for c in range(1, 256):
            p2 = pos ^ c
            if p2 >= len(t) or (t[p2] & 0x800000FF) != c:
                continue
            u = t[p2]
            np_ = p2 ^ off(u)
            if (u >> 8) & 1:
                v = t[np_] & 0x7FFFFFFF
                rules[key + bytes([c])] = strs[v:strs.index(b"\0", v)]
            stack.append((np_, key + bytes([c])))
    return rules


# prompts aimed at the places where the two semantics differ (see docs/tokenizer_spm.md)
EXTRA = ["a cat ", "a cat  ", " a cat", "   ", "a\u3000", "cat\u0085", "\u0085", "x\u0085y", "a\u00a0b",
         "</s>", "</s> cat", "a</s>b", "cat</s>", "<pad><unk></s>", "<extra_id_0> cat <extra_id_99>",
         "<extra_id_100>", "<extra_id_0", "\uff1c/s\uff1e", "\uff1cpad\uff1e x", "\u2581cat", "a\u2581\u2581b",
         "\u2581", "x \u2581 y", "\uff21\u0301", "\uff1f\u0301", "\u3000\u0327x", "e\u0301\u0301", "a\u0308\u0301",
         "\uff21\u0301\u0301", "\u3000\u3000a\u3000\u3000", "tab\t\tx", "cr\r\nlf", "\u200bx\u200b", "x\u200d",
         "A photo of a cat.  ", "\t a red fox in the snow \n", "\ufeffstart", "end\u2028", "1\u00bd \u2460\u0301",
         "\ufb01\u0301", "\uff76\uff9e", "\uff76\u3099", "\u1100\u1161\u11a8 \uac00", "a\U0001F3FB", "\U0001F44D\U0001F3FD x",
         "\U0001F1EB\U0001F1F7\U0001F1EB", "\U0001F468\u200d\U0001F469\u200d\U0001F467!",
         " x", "\u200bx y", "\u3000x y", "</s>x y", "\u2581x y", "\x00\u200bcat dog"]

KEEP_EXTRA = "<>/\uff1c\uff1e\uff0f\u2581\u3099\u309a\uff9e\uff9f\u1100\u1161\u11a8\uac00\u0308\u0301\u0327\u0303"


def cut_model(src: Path, dst: Path, ps):
    m = pb.ModelProto()
    m.ParseFromString(src.read_bytes())
    rules = charsmap_rules(m.normalizer_spec.precompiled_charsmap)
    keep = set("".join(ps)) | set("".join(POOL)) | set(KEEP_EXTRA)
    cut = {k: v for k, v in rules.items() if all(ch in keep for ch in k.decode("utf-8", "replace"))}
    with tempfile.TemporaryDirectory() as d:
        tsv = Path(d) / "rules.tsv"
        tsv.write_text("".join("%s\t%s\n" % (" ".join("%X" % ord(c) for c in k.decode()),
                                              " ".join("%X" % ord(c) for c in v.decode())) for k, v in sorted(cut.items())))
        buf = __import__("io").BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus(7, 300).splitlines()), model_writer=buf,
                                       vocab_size=200, model_type="unigram", normalization_rule_tsv=str(tsv),
                                       minloglevel=2, num_threads=1)
        tiny = pb.ModelProto()
        tiny.ParseFromString(buf.getvalue())
    m.normalizer_spec.precompiled_charsmap = tiny.normalizer_spec.precompiled_charsmap
    m.normalizer_spec.name = "nmt_nfkc_cut"
    dst.write_bytes(m.SerializeToString())
    return len(rules), len(cut)


# --fuzz: code points drawn from these ranges (weights), plus fragments of the special tokens
FUZZ_RANGES = [((0x20, 0x7E), 30), ((0x20, 0x20), 12), ((0x00, 0x1F), 2), ((0x7F, 0xA0), 2), ((0xA0, 0x24F), 6),
               ((0x300, 0x36F), 6), ((0x370, 0x52F), 3), ((0x1100, 0x11FF), 2), ((0xAC00, 0xD7A3), 2),
               ((0x2000, 0x206F), 4), ((0x2100, 0x24FF), 4), ((0x3000, 0x30FF), 3), ((0x3300, 0x33FF), 2),
               ((0x4E00, 0x4FFF), 2), ((0xFE00, 0xFE0F), 1), ((0xFF00, 0xFFEF), 6), ((0x1D400, 0x1D7FF), 2),
               ((0x1F1E6, 0x1F1FF), 1), ((0x1F300, 0x1F6FF), 3), ((0x1F3FB, 0x1F3FF), 1), ((0x2581, 0x2581), 2)]
FRAGMENTS = ["</s>", "<pad>", "<unk>", "<extra_id_1>", "<extra_id_", "</s", "\uff1c/s\uff1e", "  ", "\t\n", "e\u0301"]


def fuzz_prompts(n, seed):
    r = random.Random(seed)
    ranges, weights = zip(*FUZZ_RANGES)
    out = []
    for _ in range(n):
        k = r.choice([1, 2, 3, 5, 8, 20, 60])
        s = ""
        for _ in range(k):
            if r.random() < 0.05:
                s += r.choice(FRAGMENTS)
                continue
            lo, hi = r.choices(ranges, weights)[0]
            cp = r.randint(lo, hi)
            if 0xD800 <= cp <= 0xDFFF:
                continue
            s += chr(cp)
        out.append(s)
    return out


def fuzz(n, d):
    """Not a fixture: n random prompts on t5like.model (nmt_nfkc's full charsmap) converted to
    tokenizer.json, written under d with the fixture names, for CLEARDIT_SPM_JSON_DIR=d."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(OUT / "t5like.model", d / "t5small.model")
    write_all(d, fuzz_prompts(n, 99))


def check():
    """--check: the committed fixture against the tokenizers this venv has (run it with transformers
    4.x too): HF tokenizers on both tokenizer.json files, transformers' T5TokenizerFast from
    tokenizer.json, and T5Tokenizer from spiece.model alone (4.x: the slow, sentencepiece one)."""
    rows = [l.split("\t") for l in (OUT / "t5small_json.tsv").read_text().splitlines()]
    col = lambda r, k: [int(x) for x in (r[k] if r[k] not in "=~" else r[1] if r[k] == "=" else
                                         r[2] if r[2] != "=" else r[1]).split()]
    d = tempfile.mkdtemp()
    shutil.copy(OUT / "t5small.tokenizer.json", d + "/tokenizer.json")
    shutil.copy(OUT / "t5small.model", d + "/spiece.model")
    e = tempfile.mkdtemp()
    shutil.copy(OUT / "t5small.model", e + "/spiece.model")
    runs = [("tokenizers: t5small.tokenizer.json", tokenizers.Tokenizer.from_file(str(OUT / "t5small.tokenizer.json")), 2),
            ("tokenizers: t5legacy.tokenizer.json", tokenizers.Tokenizer.from_file(str(OUT / "t5legacy.tokenizer.json")), 3),
            ("tokenizers: prepend_scheme first", tokenizers.Tokenizer.from_str(json.dumps(first_variant(
                json.loads((OUT / "t5small.tokenizer.json").read_text())))), 4),
            ("T5TokenizerFast(tokenizer.json)", transformers.T5TokenizerFast.from_pretrained(d), 2),
            ("T5Tokenizer(spiece.model only)", transformers.T5Tokenizer.from_pretrained(e), 1)]
    print("transformers", transformers.__version__, "tokenizers", tokenizers.__version__)
    for name, tok, k in runs:
        enc = (lambda p: tok.encode(p, add_special_tokens=False).ids) if isinstance(tok, tokenizers.Tokenizer) else \
              (lambda p: tok(p, add_special_tokens=False)["input_ids"])
        bad = [r for r in rows if enc(bytes.fromhex(r[0]).decode()) != col(r, k)]
        print("%s (%s) vs column %d: %d of %d prompts differ" % (name, type(tok).__name__, k, len(bad), len(rows)))
        for r in sorted(bad, key=lambda r: len(r[0]))[:5]:
            p = bytes.fromhex(r[0]).decode()
            print("   %r: %s vs %s" % (p[:40], enc(p)[:12], col(r, k)[:12]))


def main():
    if sys.argv[1:] == ["--check"]:
        return check()
    if len(sys.argv) == 4 and sys.argv[1] == "--fuzz":
        return fuzz(int(sys.argv[2]), sys.argv[3])
    # the corpus of spm_fixtures.py less its 3000-character random prompt (38 KB of this fixture;
    # that one stays in spm_fixtures' own); long prompts remain ("ab " * 400, the two below)
    ps = [p for p in prompts(1234, 300) if len(p) < 2000] + EXTRA
    rng = random.Random(77)  # a few long and whitespace-heavy prompts on top
    ps += [" ".join(rng.choice(FIXED[5:12]) for _ in range(40)), "  ".join("x" * rng.randint(1, 5) for _ in range(300))]
    n_rules, n_cut = cut_model(OUT / "t5like.model", OUT / "t5small.model", ps)
    n_diff, n_leg = write_all(OUT, ps)
    (OUT / "t5small.info").write_text(
        "t5like.model with %d of nmt_nfkc's %d charsmap rules (those whose characters the corpus uses)\n"
        "sentencepiece %s, transformers %s (T5TokenizerFast converter), tokenizers %s\n"
        "%d prompts: sentencepiece vs T5TokenizerFast differ on %d, vs the legacy pipeline on %d\n"
        % (n_cut, n_rules, spm.__version__, transformers.__version__, tokenizers.__version__, len(ps), n_diff, n_leg))
    print((OUT / "t5small.info").read_text(), end="")


def first_variant(tj):
    """t5small.tokenizer.json with Metaspace's prepend_scheme "first" (transformers' legacy=False
    converter); the C test makes the same edit with Jansson instead of committing a copy."""
    v = json.loads(json.dumps(tj))
    v["pre_tokenizer"]["pretokenizers"][1]["prepend_scheme"] = "first"
    return v


def write_all(OUT, ps):
    sp = spm.SentencePieceProcessor(model_file=str(OUT / "t5small.model"))
    d = tempfile.mkdtemp()
    shutil.copy(OUT / "t5small.model", d + "/spiece.model")
    conv = transformers.T5TokenizerFast.from_pretrained(d)  # converted from spiece.model
    conv.save_pretrained(d + "/out")
    tj = json.loads(Path(d + "/out/tokenizer.json").read_text())
    (OUT / "t5small.tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False, separators=(",", ":")))
    legacy = json.loads(json.dumps(tj))
    legacy["normalizer"] = {"type": "Sequence", "normalizers": [
        tj["normalizer"], {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]}
    legacy["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}
    (OUT / "t5legacy.tokenizer.json").write_text(json.dumps(legacy, ensure_ascii=False, separators=(",", ":")))
    first = tokenizers.Tokenizer.from_str(json.dumps(first_variant(tj)))
    fast = transformers.T5TokenizerFast.from_pretrained(d + "/out")
    raw = tokenizers.Tokenizer.from_file(str(OUT / "t5small.tokenizer.json"))
    leg = tokenizers.Tokenizer.from_file(str(OUT / "t5legacy.tokenizer.json"))
    eos, pad = sp.eos_id(), sp.pad_id()
    lines, n_diff, n_leg = [], 0, 0
    for p in ps:
        a = sp.encode(p)
        b = fast(p, add_special_tokens=False)["input_ids"]
        assert raw.encode(p, add_special_tokens=False).ids == b, p
        assert conv(p, add_special_tokens=False)["input_ids"] == b, p
        assert fast(p)["input_ids"] == b + [eos], p
        for L in (4, 77):
            want = b[:L - 1] + [eos] + [pad] * (L - 1 - len(b[:L - 1]))
            assert fast(p, padding="max_length", max_length=L, truncation=True)["input_ids"] == want, (p, L)
        c = leg.encode(p, add_special_tokens=False).ids
        e = first.encode(p, add_special_tokens=False).ids
        n_diff += a != b
        n_leg += a != c
        ids = lambda x: "=" if x == a else " ".join(map(str, x))  # "=": as sentencepiece
        ids2 = lambda x: "~" if x == b and b != a else ids(x)  # "~": as T5TokenizerFast
        lines.append("%s\t%s\t%s\t%s\t%s" % (p.encode().hex(), " ".join(map(str, a)), ids(b), ids2(c), ids2(e)))
    (OUT / "t5small_json.tsv").write_text("\n".join(lines) + "\n")
    print("%d prompts: sentencepiece vs T5TokenizerFast differ on %d, vs the legacy pipeline on %d"
          % (len(ps), n_diff, n_leg))
    return n_diff, n_leg


if __name__ == "__main__":
    main()
