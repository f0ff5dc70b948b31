#!/usr/bin/env python3
"""clip_bpe_fixtures.py — writes tests/fixtures/clip_bpe/: prompt -> ids fixtures for the C CLIP
tokenizer (src/text/clip_bpe.c, tested by tests/test_clip_bpe.c), computed by transformers'
CLIPTokenizer (what diffusers' FluxPipeline loads from a FLUX pipeline's tokenizer/ folder).

    python3 -m venv /tmp/venv-clip && /tmp/venv-clip/bin/pip install transformers tokenizers
    pip download --no-deps open_clip_torch   # the wheel ships open_clip/bpe_simple_vocab_16e6.txt.gz
    /tmp/venv-clip/bin/python tests/oracle/clip_bpe_fixtures.py PATH/bpe_simple_vocab_16e6.txt.gz

The real vocabulary (~1.3 MB) is not committed. From it this script writes, in a temp dir, the
vocab.json + merges.txt that open_clip's SimpleTokenizer builds (256 byte symbols, the same with
</w>, one token per merge of lines[1:48895], <|startoftext|>, <|endoftext|>) and loads
CLIPTokenizer from there (real_ids.txt). It also derives a SMALL vocabulary from the first
SMALL_MERGES merges, committed three ways (small.txt.gz in open_clip's layout, small_vocab.json +
small_merges.txt in diffusers' layout) with its own fixture (small_ids.txt): the always-on test.

Fixture lines: FLAG <tab> prompt as UTF-8 hex <tab> content ids (no BOS/EOS), space-separated.
FLAG "=": the prompt is in NFC; "N": it is not (transformers' normaliser starts with NFC, and so
does the C code: these lines test it).
For every prompt it also asserts that FLUX's call (max_length=77, padding="max_length",
truncation=True) gives [BOS] + content[:75] + [EOS] + [EOS]*pad, the rule the C code applies.
"""
import gzip
import json
import os
import random
import sys
import tempfile
import unicodedata

SMALL_MERGES = 1000
N_MERGES = 49152 - 256 - 2
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "clip_bpe")


def bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def build_vocab(merges):
    syms = list(bytes_to_unicode().values())
    vocab = syms + [s + "</w>" for s in syms] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(vocab)}


def write_json_layout(d, prefix, merges):
    with open(os.path.join(d, prefix + "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(build_vocab(merges), f, ensure_ascii=False)
    with open(os.path.join(d, prefix + "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))


def load_tok(d):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(d)


def corpus():
    fixed = [
        "", " ", "   ", "a red fox in the snow", "A RED FOX In The SNOW", "a photo of a cat.",
        "don't you're we've I'm we'll he'd it's", "DON'T YOU'RE 'S 'T 'RE", "'ſ 'ſt", "'", "''s", "x'd'll",
        "hello!!! ... ?!?! -- __ ## $$$ %%% ^^ && ** (( )) [[ ]]", "   lots    of\t\tspace\n\n end  ",
        "digits 1234567890 3.14 1,000,000 ١٢٣ ½ Ⅻ ⅷ ²³ ①②", "full-width ＡＢＣ ｆｏｘ １２３！？ (half ｱｲｳ)",
        "emoji 🦊🔥👍🏽 👨‍👩‍👧 ❤️ 🇫🇷", "combining e\u0301 q\u0301 a\u0308 n\u0303 x\u0327\u0301",
        "control \x00\x01\x07\x1b\x7f bell", "seps a\x1cb\x1dc\x1ed\x1fe", "nel a\x85b ls\u2028ps\u2029",
        "zero\u200bwidth\ufeffbom \u00ad soft", "İstanbul ΣΟΦΟΣ ὈΔΥΣΣΕΎΣ σς", "ǅungla ǈ ǋ Kelvin Ω Å",
        "中文字符 日本語のテキスト 한국어 텍스트", "<|startoftext|>a<|endoftext|>", "a <|endoftext|> b",
        "a <|ENDOFTEXT|> b <|StartOfText|>", "x<|endoftext|", "<|endoftext|><|endoftext|>",
        "!<|endoftext|>!", "ﬁne ﬂow ﬀ", "\u0345 \u0399\u0345", "مرحبا بالعالم", "नमस्ते दुनिया",
        "สวัสดีชาวโลก", "Ꭰ ꭰ cherokee", "\u00a0nbsp\u3000ideographic\u2003em", "tab\tnew\nline\rcr\x0bvt\x0cff",
        "supercalifragilisticexpialidocious", "a" * 300, "ab" * 200, "🦊" * 40,
        "a red fox in the snow, " * 12, "photorealistic, 8k, masterpiece, " * 10,
        "the quick brown fox jumps over the lazy dog " * 20, "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐛𝐨𝐥𝐝 ℌ", "©®™ ° € £ ¥ § ¶ •",
        "\U0001F600\U0001F64F text \U00010400\U00010428", "mixed123abc456 a1b2c3", "$100 #1 @user",
        "nfc: a\u0323\u0302 a\u0302\u0323 \u1ea1\u0302 o\u031b\u0301 \u1100\u1161\u11a8 \u1100\u1161 \uac00\u11a8",
        "nfc: \u0915\u093c \u0958 \u2126 \u212b \u0344 \u1f80\u0300 \u03b1\u0313\u0300\u0345 e\u0301\u0301",
        "nfc: \u0374 \u037e \u1e9b\u0323 \u0f73 \u0f71\u0f72 \U0001d15e \U000110ab", "HANGUL \u1112\u1161\u11ab\u1100\u1173\u11af",
        # the examples of docs/tokenizer_clip.md
        "Caf\u00e9 cafe\u0301", "\u4e2d\u6587 \u65e5\u672c\u8a9e", "bell\x07 tab\tnul\x00end", "\uff21\uff22\uff23 \uff11\uff12\uff13",
        "\u201cquoted\u201d don\u2019t", "a<|endoftext|>b", "\u0130stanbul \u03a3\u039f\u03a6\u039f\u03a3", "&amp; &lt;3",
        "fi\ufb01", "x\u200by", "a\x1cb",
    ]
    rng = random.Random(14)
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " \t\n  ", "!?.,;:'\"-_()[]<>|/\\*&^%$#@~`",
        "áéíóúñçüößÀÉÎÕÜŸĀăĘžŁőÆØÅ", "\u0301\u0308\u0327\u0303\u0345\u064b\u093f\u0e31\u0323\u0302\u031b\u093c",
        "\u1100\u1161\u11a8\u1112\u1175\uac00\u2126\u212b\u0958", "ＡＢＣａｂｃ０１２！＃",
        "中文日本語한국어テスト", "αβγΣΩδέЖжЯяԱաאבعربيहिन्दी", "🦊🔥👍🏽❤️\u200d\ufe0f🇫🇷", "\x00\x01\x1b\x7f\x85\u200b\u2028\ufeff",
        "ⅠⅫ½²①١٢", "'s're've'm'll'd't", "İıſKΩ", "<|endoftext|><|startoftext|>",
    ]
    rand = []
    for _ in range(300):
        n = rng.randrange(0, 40)
        rand.append("".join(rng.choice(rng.choice(pools)) for _ in range(n)))
    return fixed + rand


def fixture(tok, prompts, path, header):
    bos, eos = tok.convert_tokens_to_ids("<|startoftext|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    lines, n_nfc = [header], 0
    for p in prompts:
        ids = tok(p, add_special_tokens=False)["input_ids"]
        flux = tok(p, max_length=77, padding="max_length", truncation=True)["input_ids"]
        want = [bos] + ids[:75] + [eos] + [eos] * (75 - min(len(ids), 75))
        assert flux == want, (p, flux, want)
        flag = "=" if unicodedata.normalize("NFC", p) == p else "N"
        n_nfc += flag == "N"
        lines.append(f"{flag}\t{p.encode('utf-8').hex()}\t{' '.join(map(str, ids))}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{path}: {len(prompts)} prompts ({n_nfc} not in NFC)")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    import tokenizers
    import transformers

    with gzip.open(sys.argv[1], "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = [tuple(m.split()) for m in lines[1 : N_MERGES + 1]]
    small = merges[:SMALL_MERGES]
    os.makedirs(OUT, exist_ok=True)
    who = f"# transformers {transformers.__version__} tokenizers {tokenizers.__version__} CLIPTokenizer"
    prompts = corpus()
    with tempfile.TemporaryDirectory() as d:
        write_json_layout(d, "", merges)
        fixture(load_tok(d), prompts, os.path.join(OUT, "real_ids.txt"), who + " on the real vocabulary")
    with tempfile.TemporaryDirectory() as d:
        write_json_layout(d, "", small)
        fixture(load_tok(d), prompts, os.path.join(OUT, "small_ids.txt"), who + f" on the first {SMALL_MERGES} merges")
    write_json_layout(OUT, "small_", small)
    # Merge order: "ab a" ranks before "a b", so merging "a b" makes a pair that outranks the
    # remaining "a b" occurrences. HF tokenizers merges it at once ("ababx" -> aba b x</w>);
    # Python's CLIP tokenizer would first merge every "a b" (-> ab ab x</w>).
    order = [("ab", "a"), ("a", "b"), ("x", "y</w>")]
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(build_vocab([("a", "b"), ("ab", "a"), ("x", "y</w>")]), f, ensure_ascii=False)
        with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in order))
        for name in ("vocab.json", "merges.txt"):
            with open(os.path.join(d, name), "rb") as src, open(os.path.join(OUT, "order_" + name), "wb") as dst:
                dst.write(src.read())
        tok = load_tok(d)
        ids = tok("ababx abab aababab xy", add_special_tokens=False)["input_ids"]
        assert ids[:3] == [513, 65, 343], ids  # aba b x</w>
        fixture(tok, ["ababx abab aababab xy", "abababx", "ab ab", ""], os.path.join(OUT, "order_ids.txt"),
                who + " on a crafted merge order")
    head = lines[0] + "\n" + "".join(f"{a} {b}\n" for a, b in small)
    with open(os.path.join(OUT, "small.txt.gz"), "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as g:
        g.write(head.encode("utf-8"))


if __name__ == "__main__":
    main()
