#!/usr/bin/env python3
"""pipeline_fixtures.py - a tiny diffusers FLUX pipeline folder and what FluxPipeline makes of it.

    python3 tests/oracle/pipeline_fixtures.py [--out DIR] [--check]

Runs inside the oracle venv (venv_bootstrap.py; CLEARDIT_ORACLE_VENV picks another one; needs
transformers, sentencepiece and protobuf besides diffusers). Writes, under tests/fixtures/pipeline/:

tiny_dev/  a FLUX pipeline root laid out as the FLUX.1-dev repository is:
  model_index.json                   FluxPipeline, written by diffusers' save_pretrained
  scheduler/scheduler_config.json    FLUX.1-dev's scheduler (dynamic shift)
  transformer/                       FluxTransformer2DModel, guidance-embedded (dev-like), bf16
  vae/                               AutoencoderKL (2 levels, FLUX's scaling/shift, no quant convs), bf16
  text_encoder/                      CLIPTextModel (quick_gelu, 77 positions; config ids as
                                     openai/clip-vit-large-patch14's: eos_token_id 2, i.e. the
                                     pooled row is the argmax id's), bf16, one file, tensor names
                                     "text_model.*" as in FLUX.1-dev (transformers 5 would drop
                                     that prefix; it loads either)
  text_encoder_2/                    T5EncoderModel (v1.1: gated-gelu, 32 buckets, max distance 128),
                                     bf16, SHARDED (model.safetensors.index.json + shards)
  tokenizer/                         CLIPTokenizer from tests/fixtures/clip_bpe/small_vocab.json +
                                     small_merges.txt (vocab.json, merges.txt, pad = <|endoftext|>)
  tokenizer_2/                       T5TokenizerFast from tests/fixtures/spm/t5like.model
                                     (spiece.model and the tokenizer.json transformers converts it to)
  Sizes: T5 d_model = the transformer's joint_attention_dim (24), CLIP hidden = its
  pooled_projection_dim (20). Every weight is drawn from a fixed-seed torch.Generator (2-D and 4-D
  weights N(0, 1/fan_in), norm scales 1 + 0.1 N, biases 0.1 N) and rounded to bf16.
  transformers 5 saves tokenizers as tokenizer.json only; the tokenizer folders are written with
  the files the FLUX.1-dev repository has (the source vocab files copied, configs by hand) and the
  whole folder is then loaded back with FluxPipeline.from_pretrained: the expectations below come
  from that loaded pipeline, so the folder is what diffusers reads.

tiny_dev_expect.safetensors  (float64 pipeline; tensors F32 rounded from float64)
  for each prompt i (metadata prompt_<i> and prompt_<i>_hex, its UTF-8 bytes):
    p<i>_t5_ids [L] I32, p<i>_clip_ids [77] I32: the ids FluxPipeline feeds the encoders (captured
      by forward pre-hooks on text_encoder_2 / text_encoder), L = max_sequence_length = 32
    p<i>_txt [L, 24], p<i>_pooled [20]: FluxPipeline.encode_prompt's prompt_embeds and
      pooled_prompt_embeds
  for prompt 0: noise [4, h/2, w/2] (the pinned Gaussian draw, f32 values) and the image of
    FluxPipeline(prompt, 32x32, 3 steps, guidance 3.5) from that noise: image [3, H, W] (the
    latents decoded by the pipeline's vae before any clamp, as tests/oracle/generate_fixtures.py
    records) and image_np [H, W, 3] (output_type="np": (image / 2 + 0.5) clamped to [0, 1], which diffusers hands back
    in float32).
  metadata: max_sequence_length, width, height, steps, guidance, n_prompts, versions.
`--check` rebuilds everything in a temp dir and compares with the files on disk.
"""
import argparse
import json
import math
import os
import shutil
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import venv_bootstrap  # noqa: E402

venv_bootstrap.ensure()

import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel  # noqa: E402
from diffusers.pipelines.flux import pipeline_flux  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel  # noqa: E402
from transformers import T5TokenizerFast  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "pipeline")
CLIP_VOCAB = os.path.join(REPO, "tests", "fixtures", "clip_bpe", "small_vocab.json")
CLIP_MERGES = os.path.join(REPO, "tests", "fixtures", "clip_bpe", "small_merges.txt")
SPM_MODEL = os.path.join(REPO, "tests", "fixtures", "spm", "t5like.model")
SCALE, SHIFT = 0.3611, 0.1159
AXES = (4, 6, 6)
D_T5, D_CLIP = 24, 20
MAX_SEQ = 32
TF = dict(patch_size=1, in_channels=16, out_channels=16, num_layers=1, num_single_layers=2,
          attention_head_dim=16, num_attention_heads=2, joint_attention_dim=D_T5,
          pooled_projection_dim=D_CLIP, axes_dims_rope=AXES, guidance_embeds=True)
AE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
          up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
          latent_channels=4, norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False,
          scaling_factor=SCALE, shift_factor=SHIFT)
T5 = dict(vocab_size=1000, d_model=D_T5, d_kv=8, d_ff=40, num_layers=2, num_heads=3,
          relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.0,
          layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu", is_encoder_decoder=True,
          tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
CLIP = dict(vocab_size=1514, hidden_size=D_CLIP, intermediate_size=36, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
            layer_norm_eps=1e-5, projection_dim=D_CLIP, bos_token_id=0, eos_token_id=2, pad_token_id=1)
SCHED = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
             max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
PROMPTS = [
    "a red fox in the snow",
    "",
    # longer than 32 T5 tokens and than 75 CLIP tokens: both tokenizers truncate
    "a highly detailed cinematic photo of an old wooden house beside a river under a dark night "
    "sky, with a small red bicycle leaning on the garden fence, morning light over the mountain "
    "city in the distance, sharp focus, portrait painting style, large green trees and blue water",
    "Ｃａｆé naïve ＡＢＣ １２３ 東京 Straße 🦊 ﬁne",
    "a photo of a cat   ",
    "  lots    of\tspace  and UPPER case, punctuation!!! ",
]
IMAGE = dict(W=32, H=32, steps=3, guidance=3.5, seed=31)
SHARD = "40KB"


def randomize(module, seed):
    """Every parameter redrawn from a fixed-seed generator, rounded to bf16."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, p in module.state_dict().items():
        if not p.is_floating_point():  # buffers such as position ids
            continue
        if p.ndim >= 2:
            v = torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel())
        elif name.endswith("weight"):  # norm scales (LayerNorm, GroupNorm, T5's RMSNorm)
            v = 1 + 0.1 * torch.randn(p.shape, generator=g)
        else:
            v = 0.1 * torch.randn(p.shape, generator=g)
        sd[name] = v.to(torch.bfloat16).to(p.dtype).contiguous()
    module.load_state_dict(sd, strict=False)
    return module.to(torch.bfloat16)


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def write_tokenizers(root):
    """tokenizer/ and tokenizer_2/ with the files the FLUX.1-dev repository has."""
    t1 = os.path.join(root, "tokenizer")
    os.makedirs(t1)
    shutil.copyfile(CLIP_VOCAB, os.path.join(t1, "vocab.json"))
    shutil.copyfile(CLIP_MERGES, os.path.join(t1, "merges.txt"))
    special1 = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>"}
    write_json(os.path.join(t1, "special_tokens_map.json"), special1)
    write_json(os.path.join(t1, "tokenizer_config.json"),
               dict(special1, tokenizer_class="CLIPTokenizer", model_max_length=77, do_lower_case=True,
                    errors="replace", add_prefix_space=False, clean_up_tokenization_spaces=True))
    t2 = os.path.join(root, "tokenizer_2")
    os.makedirs(t2)
    shutil.copyfile(SPM_MODEL, os.path.join(t2, "spiece.model"))
    special2 = {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    # tokenizer.json: transformers' conversion of spiece.model (what T5TokenizerFast writes)
    with tempfile.TemporaryDirectory() as d:
        shutil.copyfile(SPM_MODEL, os.path.join(d, "spiece.model"))
        tok = T5TokenizerFast.from_pretrained(d, extra_ids=0, model_max_length=MAX_SEQ, legacy=True)
        tok.save_pretrained(d)
        shutil.copyfile(os.path.join(d, "tokenizer.json"), os.path.join(t2, "tokenizer.json"))
    write_json(os.path.join(t2, "special_tokens_map.json"), special2)
    write_json(os.path.join(t2, "tokenizer_config.json"),
               dict(special2, tokenizer_class="T5Tokenizer", model_max_length=MAX_SEQ, extra_ids=0,
                    legacy=True, clean_up_tokenization_spaces=True))


def build_folder(root):
    tf = randomize(FluxTransformer2DModel(**TF), 200)
    vae = randomize(AutoencoderKL(**AE), 201)
    clip = randomize(CLIPTextModel(CLIPTextConfig(**CLIP)), 202)
    t5 = randomize(T5EncoderModel(T5Config(**T5)), 203)
    sched = FlowMatchEulerDiscreteScheduler(**SCHED)
    pipe = FluxPipeline(scheduler=sched, vae=vae, text_encoder=clip, tokenizer=None, text_encoder_2=t5,
                        tokenizer_2=None, transformer=tf)
    pipe.save_pretrained(root, safe_serialization=True)
    # the tokenizers were None above; model_index.json names them as FLUX.1-dev's does
    idx_path = os.path.join(root, "model_index.json")
    with open(idx_path, encoding="utf-8") as f:
        idx = json.load(f)
    idx["tokenizer"] = ["transformers", "CLIPTokenizer"]
    idx["tokenizer_2"] = ["transformers", "T5TokenizerFast"]
    write_json(idx_path, idx)
    # text_encoder_2 sharded, as FLUX.1-dev's is
    shutil.rmtree(os.path.join(root, "text_encoder_2"))
    t5.save_pretrained(os.path.join(root, "text_encoder_2"), safe_serialization=True, max_shard_size=SHARD)
    assert os.path.exists(os.path.join(root, "text_encoder_2", "model.safetensors.index.json"))
    # transformers 5 saves CLIPTextModel's tensors without the "text_model." prefix that the files
    # users have carry (FLUX.1-dev's text_encoder/, ComfyUI's clip_l.safetensors); put it back
    clip_file = os.path.join(root, "text_encoder", "model.safetensors")
    sd = load_file(clip_file)
    if not any(k.startswith("text_model.") for k in sd):
        save_file({"text_model." + k: v for k, v in sd.items()}, clip_file, metadata={"format": "pt"})
    write_tokenizers(root)


def file_tensors(folder):
    out = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            out.update(load_file(os.path.join(folder, f)))
    return out


def assert_loaded(pipe, root):
    """Every tensor of the encoders' files is what the loaded pipeline computes with (a name
    transformers did not recognise would leave a default-initialised weight behind)."""
    for sub, mod in (("text_encoder", pipe.text_encoder), ("text_encoder_2", pipe.text_encoder_2)):
        msd = mod.state_dict()
        ft = file_tensors(os.path.join(root, sub))
        for k, v in ft.items():
            name = k[len("text_model."):] if k not in msd and k.startswith("text_model.") else k
            assert name in msd and torch.equal(msd[name].to(v.dtype), v), (sub, k)
        assert len(ft) >= len({id(p) for p in mod.parameters()}), (sub, len(ft))


class Capture:
    """Records the input_ids each text encoder is called with, and pins the pipeline's noise."""

    def __init__(self, pipe):
        self.ids = {}
        self.hooks = [m.register_forward_pre_hook(self.hook(k), with_kwargs=True)
                      for k, m in (("clip", pipe.text_encoder), ("t5", pipe.text_encoder_2))]

    def hook(self, key):
        def f(mod, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            self.ids[key] = ids[0].to(torch.int32).clone()
        return f

    def close(self):
        for h in self.hooks:
            h.remove()


def expectations(root):
    pipe = FluxPipeline.from_pretrained(root, torch_dtype=torch.float64)
    pipe.set_progress_bar_config(disable=True)
    assert_loaded(pipe, root)
    tensors, meta = {}, {}
    cap = Capture(pipe)
    with torch.no_grad():
        for i, p in enumerate(PROMPTS):
            cap.ids.clear()
            txt, pooled, _ = pipe.encode_prompt(prompt=p, prompt_2=None, max_sequence_length=MAX_SEQ)
            assert txt.shape == (1, MAX_SEQ, D_T5) and pooled.shape == (1, D_CLIP), (txt.shape, pooled.shape)
            tensors[f"p{i}_t5_ids"] = cap.ids["t5"].contiguous()
            tensors[f"p{i}_clip_ids"] = cap.ids["clip"].contiguous()
            tensors[f"p{i}_txt"] = txt[0].float().contiguous()
            tensors[f"p{i}_pooled"] = pooled[0].float().contiguous()
            meta[f"prompt_{i}"] = p
            meta[f"prompt_{i}_hex"] = p.encode("utf-8").hex()
        # the truncating prompt fills both windows with content (no padding left)
        long_i = 2
        assert int(tensors[f"p{long_i}_t5_ids"][-1]) == 1 and int(tensors[f"p{long_i}_t5_ids"][-2]) != 0
        assert int(tensors[f"p{long_i}_clip_ids"][-1]) == 1513 and int(tensors[f"p{long_i}_clip_ids"][-2]) != 1513
        cap.close()

        c = IMAGE
        g = torch.Generator().manual_seed(1000 + c["seed"])
        lh, lw = 2 * (c["H"] // (pipe.vae_scale_factor * 2)), 2 * (c["W"] // (pipe.vae_scale_factor * 2))
        noise = torch.randn(1, AE["latent_channels"], lh, lw, generator=g, dtype=torch.float64)
        noise = noise.to(torch.float32).to(torch.float64)  # the f32 values the C side is given
        saved = pipeline_flux.randn_tensor

        def fixed(shape, generator=None, device=None, dtype=None, layout=None):
            assert tuple(shape) == tuple(noise.shape), (shape, noise.shape)
            return noise.to(dtype)

        pipeline_flux.randn_tensor = fixed
        try:
            common = dict(prompt=PROMPTS[0], height=c["H"], width=c["W"], num_inference_steps=c["steps"],
                          guidance_scale=c["guidance"], max_sequence_length=MAX_SEQ)
            img_np = pipe(output_type="np", **common).images[0]
            lat = pipe(output_type="latent", **common).images
        finally:
            pipeline_flux.randn_tensor = saved
        lat = pipe._unpack_latents(lat, c["H"], c["W"], pipe.vae_scale_factor)
        img = pipe.vae.decode(lat / SCALE + SHIFT, return_dict=False)[0][0]
        ref_np = (img / 2 + 0.5).clamp(0, 1).permute(1, 2, 0)
        # diffusers' postprocess hands back float32 numpy
        assert torch.allclose(torch.as_tensor(img_np).double(), ref_np, atol=1e-6, rtol=0)
    tensors["noise"] = noise[0].float().contiguous()
    tensors["image"] = img.float().contiguous()
    tensors["image_np"] = torch.as_tensor(img_np).float().contiguous()
    meta.update({
        "generator": "tests/oracle/pipeline_fixtures.py", "pipeline": "tiny_dev", "n_prompts": str(len(PROMPTS)),
        "max_sequence_length": str(MAX_SEQ), "clip_max_length": "77", "image_prompt": "0",
        "width": str(c["W"]), "height": str(c["H"]), "steps": str(c["steps"]), "guidance": repr(c["guidance"]),
        "seed": str(1000 + c["seed"]), "torch_version": torch.__version__,
        "diffusers_version": diffusers.__version__, "transformers_version": transformers.__version__,
    })
    return tensors, meta


def tree_files(root):
    out = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = p
    return out


def same_file(a, b):
    if a.endswith(".safetensors"):
        x, y = load_file(a), load_file(b)
        return set(x) == set(y) and all(torch.equal(x[k], y[k]) for k in x)
    if a.endswith(".json"):
        with open(a, encoding="utf-8") as f, open(b, encoding="utf-8") as g:
            x, y = json.load(f), json.load(g)
        for o in (x, y):  # version stamps differ between installs
            if isinstance(o, dict):
                for k in ("_diffusers_version", "transformers_version"):
                    o.pop(k, None)
        return x == y
    with open(a, "rb") as f, open(b, "rb") as g:
        return f.read() == g.read()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory")
    ap.add_argument("--check", action="store_true", help="rebuild in a temp dir and compare, write nothing")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "tiny_dev")
        build_folder(root)
        tensors, meta = expectations(root)
        expect = os.path.join(tmp, "tiny_dev_expect.safetensors")
        save_file(tensors, expect, metadata=meta)
        if args.check:
            bad = 0
            new, old = tree_files(root), tree_files(os.path.join(args.out, "tiny_dev"))
            for k in sorted(set(new) | set(old)):
                ok = k in new and k in old and same_file(new[k], old[k])
                print(f"tiny_dev/{k}: {'same' if ok else 'DIFFERENT'}")
                bad += not ok
            old_e = os.path.join(args.out, "tiny_dev_expect.safetensors")
            ok = os.path.exists(old_e) and same_file(expect, old_e)
            print(f"tiny_dev_expect.safetensors: {'same' if ok else 'DIFFERENT'}")
            sys.exit(1 if bad or not ok else 0)
        os.makedirs(args.out, exist_ok=True)
        dst = os.path.join(args.out, "tiny_dev")
        if os.path.exists(dst):
            shutil.rmtree(dst)
        shutil.copytree(root, dst)
        shutil.copyfile(expect, os.path.join(args.out, "tiny_dev_expect.safetensors"))
    total = sum(os.path.getsize(p) for p in tree_files(args.out).values())
    print(f"wrote {args.out}: {len(tree_files(args.out))} files, {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
