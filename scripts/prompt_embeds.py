#!/usr/bin/env python3
"""prompt_embeds.py - turn a prompt into the embeddings file that `cleardit generate --prompt-embeds`
reads (cleardit has no text encoders of its own).

    python3 scripts/prompt_embeds.py --prompt "a red fox in the snow" -o fox.safetensors
    python3 scripts/prompt_embeds.py --model black-forest-labs/FLUX.1-schnell --prompt "..." -o e.st
    python3 scripts/prompt_embeds.py --model /models/FLUX.1-dev --dtype bfloat16 --prompt "..." -o e.st
    python3 scripts/prompt_embeds.py --random-tiny --prompt "test" -o /tmp/e.safetensors  # offline

Needs: pip install torch transformers safetensors sentencepiece protobuf

The output is a safetensors file with
  txt     [T, 4096]  the T5-XXL encoder's last hidden state, as diffusers'
                     FluxPipeline._get_t5_prompt_embeds: tokenizer_2 (T5TokenizerFast) with
                     padding="max_length", max_length=T (--max-sequence-length), truncation=True;
                     text_encoder_2(input_ids) without an attention mask (the pad tokens are
                     encoded too and the transformer attends to them, as in diffusers and BFL).
  pooled  [768]      CLIP ViT-L/14's pooler_output (the final-layer-normed hidden state at the
                     end-of-text token), as FluxPipeline._get_clip_prompt_embeds: tokenizer
                     (CLIPTokenizer) padding="max_length", max_length=77, truncation=True.
  metadata: prompt, model, max_sequence_length, encoder_dtype, transformers/torch versions.
The encoders run under torch.no_grad(), as inside FluxPipeline.__call__ (with autograd on, PyTorch
can pick other attention kernels and the values move by ~1e-6 relative); with the same tokenizers
and encoders the tensors equal those of diffusers' two methods bit for bit.
Each output is cast to its encoder's dtype (as diffusers does), then written as float32 (default)
or bfloat16 (--out-dtype bf16). The file is written atomically (a temporary file in the target's
directory, then os.replace).

--model is a Hugging Face repo id (FLUX.1-dev is gated: accept its licence on the Hub and log in
with `huggingface-cli login` first) or a local diffusers-format directory holding tokenizer/,
tokenizer_2/, text_encoder/ and text_encoder_2/. --max-sequence-length defaults to 256 when the
model name contains "schnell" (what FLUX.1-schnell was trained with) and 512 otherwise (dev);
FluxPipeline accepts at most 512. --dtype picks the encoders' dtype (float32, or bfloat16 as a
diffusers pipeline loaded with torch_dtype=torch.bfloat16 runs them); T5-XXL takes about 19 GB in
float32 and 9.5 GB in bfloat16. --device defaults to cuda when available.

--random-tiny builds a 1-layer T5EncoderModel (d_model 4096) and a 1-layer CLIPTextModel (width
768) with random weights from a fixed seed, and replaces both tokenizers by a byte-level stand-in
(T5: byte + 3, then </s> = 1, padded with 0; CLIP: <|startoftext|> 256, bytes, <|endoftext|> 257,
padded with 257), so the whole path to the file runs without any download. Its numbers mean
nothing; only the file's layout does.
"""
import argparse
import os
import sys
import tempfile

PIP_HINT = "pip install torch transformers safetensors sentencepiece protobuf"
T5_WIDTH, CLIP_WIDTH, CLIP_MAX_LENGTH = 4096, 768, 77


def die(msg, code=2):
    print(f"prompt_embeds.py: {msg}", file=sys.stderr)
    sys.exit(code)


def import_or_die():
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        import safetensors.torch  # noqa: F401
    except ImportError as e:
        die(f"missing Python package ({e.name or e}); install them with:\n    {PIP_HINT}")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="black-forest-labs/FLUX.1-dev",
                    help="FLUX repo id or local diffusers-format directory")
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--max-sequence-length", type=int, default=None,
                    help="T5 tokens T (default 256 for schnell models, else 512)")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="dtype the encoders run in")
    ap.add_argument("--out-dtype", choices=["f32", "bf16"], default="f32",
                    help="dtype of the tensors in the file")
    ap.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    ap.add_argument("--random-tiny", action="store_true",
                    help="tiny random encoders and byte tokenizers (offline test of the writer)")
    ap.add_argument("-o", "--out", required=True, help="output .safetensors path")
    a = ap.parse_args(argv)
    if a.max_sequence_length is None:
        a.max_sequence_length = 256 if "schnell" in a.model.lower() else 512
    if not 1 <= a.max_sequence_length <= 512:
        ap.error("--max-sequence-length must be in 1..512 (FluxPipeline's limit)")
    return a


# ---- the real encoders ----------------------------------------------------------------------------
def load_real(model, dtype):
    import transformers
    from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5TokenizerFast

    parts = ["tokenizer", "tokenizer_2", "text_encoder", "text_encoder_2"]
    if os.path.isdir(model):
        missing = [p for p in parts if not os.path.isdir(os.path.join(model, p))]
        if missing:
            die(f"{model} is not a diffusers-format FLUX directory: missing "
                f"{', '.join(p + '/' for p in missing)}")
    elif os.path.exists(model):
        die(f"{model} is a file; --model takes a repo id or a diffusers-format directory")
    # transformers 5 calls the load dtype `dtype`; 4.x calls it `torch_dtype`.
    major = int(transformers.__version__.split(".")[0])
    dt = {"dtype" if major >= 5 else "torch_dtype": dtype}
    try:
        tok_clip = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer")
        tok_t5 = T5TokenizerFast.from_pretrained(model, subfolder="tokenizer_2")
        clip = CLIPTextModel.from_pretrained(model, subfolder="text_encoder", **dt)
        t5 = T5EncoderModel.from_pretrained(model, subfolder="text_encoder_2", **dt)
    except ImportError as e:
        die(f"a tokenizer needs a missing package ({e}); install:\n    {PIP_HINT}")
    except (OSError, ValueError) as e:
        hint = ("" if os.path.isdir(model) else
                "\n(a repo id needs network access to the Hugging Face Hub, or the files in its "
                "cache; FLUX.1-dev is gated: accept its licence and run `huggingface-cli login`)")
        die(f"cannot load the text encoders of {model}: {e}{hint}")
    return tok_clip, tok_t5, clip, t5


def encode_real(tok_clip, tok_t5, clip, t5, prompt, max_len, device):
    import torch

    # FluxPipeline._get_clip_prompt_embeds
    ids = tok_clip([prompt], padding="max_length", max_length=CLIP_MAX_LENGTH, truncation=True,
                   return_overflowing_tokens=False, return_length=False,
                   return_tensors="pt").input_ids
    full = tok_clip([prompt], padding="longest", return_tensors="pt").input_ids
    if full.shape[-1] > ids.shape[-1]:
        print(f"note: the CLIP prompt was truncated to {CLIP_MAX_LENGTH} tokens", file=sys.stderr)
    with torch.no_grad():
        pooled = clip(ids.to(device), output_hidden_states=False).pooler_output
    pooled = pooled.to(dtype=clip.dtype)
    # FluxPipeline._get_t5_prompt_embeds
    ids2 = tok_t5([prompt], padding="max_length", max_length=max_len, truncation=True,
                  return_length=False, return_overflowing_tokens=False,
                  return_tensors="pt").input_ids
    full2 = tok_t5([prompt], padding="longest", return_tensors="pt").input_ids
    if full2.shape[-1] > ids2.shape[-1]:
        print(f"note: the T5 prompt was truncated to {max_len} tokens", file=sys.stderr)
    with torch.no_grad():
        txt = t5(ids2.to(device), output_hidden_states=False)[0]
    txt = txt.to(dtype=t5.dtype)
    return txt[0], pooled[0]


# ---- --random-tiny: offline stand-ins -----------------------------------------------------------
def build_tiny(dtype):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(0)
    t5 = T5EncoderModel(T5Config(vocab_size=259, d_model=T5_WIDTH, d_kv=8, d_ff=32, num_layers=1,
                                 num_heads=2, relative_attention_num_buckets=8,
                                 feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1))
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=258, hidden_size=CLIP_WIDTH,
                                        intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2,
                                        max_position_embeddings=CLIP_MAX_LENGTH,
                                        bos_token_id=256, eos_token_id=257, pad_token_id=257,
                                        hidden_act="quick_gelu"))
    return clip.to(dtype).eval(), t5.to(dtype).eval()


def tiny_ids(prompt, max_len):
    """Byte-level stand-ins with the real tokenizers' framing: (clip_ids [1, 77], t5_ids [1, T])."""
    import torch

    b = list(prompt.encode("utf-8"))
    t5 = [x + 3 for x in b][: max_len - 1] + [1]                    # truncate, then </s>
    t5 += [0] * (max_len - len(t5))                                 # <pad>
    clip = [256] + b[: CLIP_MAX_LENGTH - 2] + [257]                 # bos, bytes, eos
    clip += [257] * (CLIP_MAX_LENGTH - len(clip))                   # padded with eos
    return torch.tensor([clip]), torch.tensor([t5])


# ---- writing --------------------------------------------------------------------------------------
def write_atomic(path, tensors, meta):
    from safetensors.torch import save_file

    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        die(f"cannot write {path}: no directory {d}")
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp.", dir=d)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 -> the usual permissions
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            die(f"cannot write {path}: {e}")
        raise


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    import_or_die()
    import torch
    import transformers

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[a.dtype]
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if a.random_tiny:
        clip, t5 = build_tiny(dtype)
        clip_ids, t5_ids = tiny_ids(a.prompt, a.max_sequence_length)
        clip, t5 = clip.to(device), t5.to(device)
        with torch.no_grad():
            pooled = clip(clip_ids.to(device)).pooler_output.to(clip.dtype)[0]
            txt = t5(t5_ids.to(device))[0].to(t5.dtype)[0]
        model = "random-tiny"
    else:
        tok_clip, tok_t5, clip, t5 = load_real(a.model, dtype)
        clip, t5 = clip.to(device).eval(), t5.to(device).eval()
        txt, pooled = encode_real(tok_clip, tok_t5, clip, t5, a.prompt, a.max_sequence_length,
                                  device)
        model = a.model
    out_dtype = torch.float32 if a.out_dtype == "f32" else torch.bfloat16
    tensors = {"txt": txt.to(out_dtype).contiguous().cpu(),
               "pooled": pooled.to(out_dtype).contiguous().cpu()}
    if tuple(tensors["txt"].shape) != (a.max_sequence_length, T5_WIDTH) or \
            tuple(tensors["pooled"].shape) != (CLIP_WIDTH,):
        print(f"warning: shapes txt {tuple(tensors['txt'].shape)}, pooled "
              f"{tuple(tensors['pooled'].shape)} are not FLUX.1's ([T, {T5_WIDTH}], "
              f"[{CLIP_WIDTH}])", file=sys.stderr)
    meta = {"prompt": a.prompt, "model": model, "max_sequence_length": str(a.max_sequence_length),
            "encoder_dtype": a.dtype, "transformers_version": transformers.__version__,
            "torch_version": torch.__version__, "generator": "scripts/prompt_embeds.py"}
    write_atomic(a.out, tensors, meta)
    print(f"wrote {a.out}: txt {list(tensors['txt'].shape)}, pooled "
          f"{list(tensors['pooled'].shape)} ({a.out_dtype})")


if __name__ == "__main__":
    main()
