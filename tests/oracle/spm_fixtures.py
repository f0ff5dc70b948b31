"""spm_fixtures.py - SentencePiece unigram oracle for src/text/spm.c (tests/test_spm.c).

Trains small unigram models offline with sentencepiece's trainer on a text generated here (seeded),
then writes tests/fixtures/spm/<name>.model and <name>.tsv: one line per prompt,
    <prompt, hex UTF-8> TAB <sentencepiece's normalize(prompt), hex> TAB <encode(prompt) ids, space-separated>
over a fuzz corpus (Unicode letters, combining marks, full-width forms, emoji, control characters,
runs of spaces and punctuation, empty and very long prompts).

    python3 -m venv /tmp/venv-spm && /tmp/venv-spm/bin/pip install sentencepiece
    /tmp/venv-spm/bin/python tests/oracle/spm_fixtures.py            # (re)write the fixtures
    /tmp/venv-spm/bin/python tests/oracle/spm_fixtures.py --check    # compare with the files on disk

Training is deterministic for a given sentencepiece version (recorded in <name>.info); --check
re-encodes with the committed .model files, so it does not depend on retraining.
"""
import io
import random
import sys
from pathlib import Path

import sentencepiece as spm

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "spm"

WORDS = ("a photo of the cat dog on in with red blue green large small old new house tree river city "
         "mountain portrait painting style light dark night morning cinematic detailed sharp focus "
         "garden street car bicycle woman man child sitting standing running over under beside").split()
INTL = ("café naïve résumé façade Ångström über Straße Ärger öffnen Zürich niño señor mañana "
        "δοκιμή καλημέρα Ελλάδα привет мир Москва 東京 日本語 こんにちは カタカナ 北京 你好 "
        "한국어 안녕하세요 עברית العربية हिन्दी ไทย Tiếng Việt").split()


SYL = "ka ri to ne sha mor el vin dra qu ist ber on ax ly pho gen tri ul zo".split()


def pseudo(r) -> str:
    return "".join(r.choice(SYL) for _ in range(r.randint(1, 4)))


def corpus(seed: int, n: int) -> str:
    r = random.Random(seed)
    lines = []
    for _ in range(n):
        k = r.randint(3, 14)
        ws = [r.choice(WORDS) if r.random() < 0.6 else r.choice(INTL) if r.random() < 0.5 else pseudo(r)
              for _ in range(k)]
        s = " ".join(ws)
        if r.random() < 0.3:
            s = s.capitalize() + r.choice([".", ",", "!", "?", ";", ":"])
        if r.random() < 0.1:
            s += " " + str(r.randint(0, 99999))
        lines.append(s)
    # full-width forms and compatibility characters, so that NFKC folding meets trained pieces
    lines += ["ＡＢＣ ｄｅｆ １２３ ｶﾀｶﾅ ﬁ ﬂ ① ½ ™ ㎞"] * 3
    return "\n".join(lines) + "\n"


# characters the fuzz prompts are drawn from: letters, combining marks, full-width, emoji,
# controls, spaces of several kinds, punctuation
POOL = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") * 3
        + list(" " * 20) + list(".,;:!?-_'\"()[]{}<>/\\|@#$%^&*+=~`")
        + list("éèêëàâäôöûüçñÅßæøœ") + ["e\u0301", "a\u0308", "\u0301", "\u0327", "\u20dd"]
        + list("ＡＢＣｄｅｆ１２３！？（）　ｶﾀｶﾅ") + list("ﬁﬂ①½™㎞ℌℍ")
        + list("δοκιμήπριветмир東京日本語こんにちは你好한국어") + list("العربيةעברית")
        + ["😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "✨", "\u2603", "𝔘", "𝟙"]
        + ["\t", "\n", "\r", "\x00", "\x07", "\x1b", "\x7f", "\u0085", "\u00a0", "\u200b", "\u200d",
           "\ufeff", "\u2028", "\u3000", "\u00ad", "\ufffd"])

FIXED = ["", " ", "   ", "\t\n", "a", "A photo of a cat", "  leading and trailing  ",
         "runs    of     spaces", "tab\tnew\nline\r\n", "café naïve", "cafe\u0301 nai\u0308ve",
         "ＡＢＣ ｄｅｆ １２３", "ｶﾀｶﾅ ﬁﬂ ① ½ ™ ㎞", "😀😀😀 emoji 👍🏽", "東京 日本語 你好",
         "☃☃☃ snow ☃", "!!!???...,,,;;;", "----____====", "\x00\x01\x02 control \x7f",
         "\u200b\u200bzero width\u200d", "\u3000ideographic\u3000space\u3000", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛",
         "A" * 300, "ab " * 400, "<extra> user xyz symbols <extra><extra>xyzxyz"]


def prompts(seed: int, n: int):
    r = random.Random(seed)
    out = list(FIXED)
    for i in range(n):
        k = r.choice([1, 2, 3, 5, 8, 13, 30, 80]) if i else 3000
        out.append("".join(r.choice(POOL) for _ in range(k)))
    # some natural-ish prompts from the training distribution too
    out += corpus(seed + 1, 60).splitlines()
    return out


MODELS = {
    # T5-like: nmt_nfkc, pad 0, eos 1, unk 2, no bos
    "t5like": dict(vocab_size=1000, model_type="unigram", normalization_rule_name="nmt_nfkc",
                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=0.9995),
    # byte fallback, user-defined symbols, whitespace kept, a small custom rule set (multi-character
    # keys, a key that prefixes another, deletions), so that its charsmap stays small
    "bytes_user": dict(vocab_size=700, model_type="unigram", normalization_rule_tsv=str(OUT / "rules.tsv"),
                       pad_id=0, eos_id=1, unk_id=2, bos_id=-1, byte_fallback=True,
                       user_defined_symbols=["<extra>", "xyz", "ñ"], remove_extra_whitespaces=False,
                       character_coverage=0.98),
    # no normalisation (identity: no charsmap), no dummy prefix
    "identity": dict(vocab_size=400, model_type="unigram", normalization_rule_name="identity",
                     pad_id=0, eos_id=1, unk_id=2, bos_id=-1, add_dummy_prefix=False,
                     character_coverage=0.995),
}


# custom normalisation rules: source code points TAB target code points (hex); an empty target deletes
RULES = [("FF21", "41"), ("FF22", "42"), ("FF23", "43"), ("FB01", "66 69"), ("FB02", "66 6C"),
         ("65 301", "E9"), ("61 308", "E4"), ("61 308 301", "78 79 7A"), ("9", "20"), ("A", "20"),
         ("D", "20"), ("3000", "20"), ("200B", ""), ("7", ""), ("2460", "31"), ("6771 4EAC", "54 6F 6B 79 6F")]


def line(sp, p: str) -> str:
    ids = sp.encode(p)
    return "%s\t%s\t%s" % (p.encode().hex(), sp.normalize(p).encode().hex(), " ".join(map(str, ids)))


def main():
    check = "--check" in sys.argv
    OUT.mkdir(parents=True, exist_ok=True)
    ps = prompts(1234, 400)
    bad = 0
    for name, kw in MODELS.items():
        mpath = OUT / (name + ".model")
        if not check:
            (OUT / "rules.tsv").write_text("".join("%s\t%s\n" % r for r in RULES))
            buf = io.BytesIO()
            spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus(7, 3000).splitlines()),
                                           model_writer=buf, num_threads=1, seed_sentencepiece_size=20000,
                                           minloglevel=2, **kw)
            mpath.write_bytes(buf.getvalue())
            (OUT / (name + ".info")).write_text("sentencepiece %s\n%r\n" % (spm.__version__, kw))
        sp = spm.SentencePieceProcessor(model_file=str(mpath))
        text = "\n".join(line(sp, p) for p in ps) + "\n"
        tsv = OUT / (name + ".tsv")
        if check:
            if tsv.read_text() != text:
                print("MISMATCH", tsv)
                bad += 1
        else:
            tsv.write_text(text)
            print(name, mpath.stat().st_size, "bytes,", len(ps), "prompts")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
