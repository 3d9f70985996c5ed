"""Regenerates the ViT parity fixtures in crates/gs-lora-models/tests/fixtures/.

Small random-init checkpoints in each format (every parameter perturbed away from its init
value, so a wrongly mapped LayerNorm or bias cannot go unnoticed), an input and the reference
implementation's outputs, plus position-grid resampling cases for both bicubic kernels.

    python -m venv .venv && .venv/bin/pip install torch torchvision timm transformers safetensors einops loralib==0.1.2
    .venv/bin/python tools/make_vit_fixtures.py [--gslora-repo PATH] [--dinov2-small DIR [--dinov2-out FILE]]

The face Transformer case needs a checkout of the official GS-LoRA code
(github.com/bjzhb666/GS-LoRA), whose `vit_pytorch_face` package is imported from PATH.

`--dinov2-small DIR` (the real checkpoint, ../shared/data/dinov2-small) also writes the
real-weight reference `reference_224.safetensors` that `real_dinov2_small_reproduces_transformers`
reads: transformers' `Dinov2Model` on DIR's `config.json` + `model.safetensors`. Its pixel values
are random normal; the seed of the stored file was not recorded, so they are reused from DIR's
`reference_224.safetensors` when it exists (else drawn with seed 224), and the new outputs are
compared with the stored ones. Regenerated with torch 2.15 / transformers 5.24 they agree to
1.4e-6 of the largest value (f32 noise of another build; the Rust model reaches 1.6e-6).

Tested with torch 2.15, torchvision 0.29, timm 1.0.31, transformers 5.23 (the torchvision case,
the face `.pth` and the sharded DINOv2 case with transformers 5.24).
"""
import argparse
import json
import os
import sys
import types

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "gs-lora-models", "tests", "fixtures")


def perturb(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


def save_case(name, write_checkpoint, inputs, outputs):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    write_checkpoint(d)
    save_file({k: v.contiguous() for k, v in inputs.items()}, os.path.join(d, "input.safetensors"))
    save_file({k: v.contiguous() for k, v in outputs.items()}, os.path.join(d, "output.safetensors"))


def timm_cases():
    import timm

    for name, args in [
        ("timm_token", dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=5, global_pool="token")),
        ("timm_avg_ls", dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=4, global_pool="avg", init_values=0.5, qkv_bias=False)),
    ]:
        torch.manual_seed(0)
        model = perturb(timm.create_model("vit_tiny_patch16_224", pretrained=False, **args), 1)
        x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            features = model.forward_features(x)
            logits = model.forward_head(features)
        config = {"architecture": "vit_tiny_patch16_224", "num_classes": args["num_classes"], "model_args": args}

        def write(d, config=config, model=model):
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(config, f, indent=2)
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(d, "model.safetensors"))

        save_case(name, write, {"pixel_values": x}, {"last_hidden_state": features, "logits": logits})


def hf_cases():
    from transformers import Dinov2Config, Dinov2Model, ViTConfig, ViTForImageClassification, ViTModel

    vit_config = ViTConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=3, intermediate_size=96,
                           image_size=32, patch_size=8, layer_norm_eps=1e-6,
                           id2label={0: "a", 1: "b", 2: "c", 3: "d"}, label2id={"a": 0, "b": 1, "c": 2, "d": 3})
    torch.manual_seed(0)
    model = perturb(ViTForImageClassification(vit_config), 3)
    x = torch.randn(2, 3, 40, 48, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        hidden = model.vit(x, interpolate_pos_encoding=True).last_hidden_state
        logits = model(x, interpolate_pos_encoding=True).logits
    # save_pretrained writes the hub's key names and config.json, as users download them.
    save_case("hf_vit_classifier", model.save_pretrained, {"pixel_values": x},
              {"last_hidden_state": hidden, "logits": logits})

    torch.manual_seed(0)
    model = perturb(ViTModel(vit_config, add_pooling_layer=True), 5)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        out = model(x)
    save_case("hf_vit_pooler", model.save_pretrained, {"pixel_values": x},
              {"last_hidden_state": out.last_hidden_state, "pooler_output": out.pooler_output})

    dino_config = Dinov2Config(hidden_size=48, num_hidden_layers=2, num_attention_heads=3, mlp_ratio=4,
                               image_size=32, patch_size=8, layerscale_value=0.5)
    torch.manual_seed(0)
    model = perturb(Dinov2Model(dino_config), 7)
    x = torch.randn(2, 3, 24, 40, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        out = model(x)
    save_case("hf_dinov2", model.save_pretrained, {"pixel_values": x},
              {"last_hidden_state": out.last_hidden_state, "pooler_output": out.pooler_output})
    # The same model in shards behind model.safetensors.index.json, as save_pretrained writes
    # checkpoints larger than max_shard_size.
    save_case("hf_dinov2_sharded", lambda d: model.save_pretrained(d, max_shard_size="100KB"),
              {"pixel_values": x},
              {"last_hidden_state": out.last_hidden_state, "pooler_output": out.pooler_output})


def face_case(repo):
    sys.modules.setdefault("IPython", types.SimpleNamespace(embed=None))  # imported, unused
    sys.path.insert(0, repo)
    from vit_pytorch_face.vit_face import ViT_face

    args = dict(image_size=40, patch_size=8, dim=48, depth=2, heads=3, dim_head=16, mlp_dim=96, num_class=5)
    torch.manual_seed(0)
    model = ViT_face(loss_type="CosFace", GPU_ID=None, dropout=0.0, emb_dropout=0.0, lora_rank=8, lora_pos="FFN", **args)
    model = perturb(model.train(), 10)  # B ≠ 0: the adapters change the output
    model.eval()  # loralib merges the adapters into the weights, as GS-LoRA's saved checkpoints
    x = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(11))
    labels = torch.tensor([1, 3])
    with torch.no_grad():
        emb = model(x)  # without labels ViT_face returns the embedding (its CPU CosFace path needs CUDA)
        cosine = F.linear(F.normalize(emb), F.normalize(model.loss.weight))
        logits = 64.0 * cosine
        margin = 64.0 * (cosine - 0.35 * F.one_hot(labels, 5))
    config = {"model_type": "vit_face", "loss_type": "CosFace", "s": 64.0, "m": 0.35, **args}

    def write(d):
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(config, f, indent=2)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(d, "model.safetensors"))

    save_case("gslora_face", write, {"pixel_values": x, "labels": labels.float()},
              {"embedding": emb, "logits": logits, "logits_with_margin": margin})


def torchvision_case():
    """torchvision's VisionTransformer (the official ImageNet model's class), saved as
    `torch.save(state_dict)` writes it (`model.pth`), and the same tensors under the MLP names
    of torchvision < 0.13 (`model_legacy.pth`, `mlp.linear_1/2`)."""
    from torchvision.models.vision_transformer import VisionTransformer

    args = dict(image_size=32, patch_size=8, num_layers=2, num_heads=3, hidden_dim=48, mlp_dim=96, num_classes=5)
    torch.manual_seed(0)
    model = perturb(VisionTransformer(**args), 12)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(13))
    with torch.no_grad():
        logits = model(x)
    config = {"model_type": "torchvision_vit", "arch": "vit_b_16", **args}

    def write(d):
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(config, f, indent=2)
        state = model.state_dict()
        torch.save(state, os.path.join(d, "model.pth"))
        legacy = {k.replace("mlp.0.", "mlp.linear_1.").replace("mlp.3.", "mlp.linear_2."): v for k, v in state.items()}
        torch.save(legacy, os.path.join(d, "model_legacy.pth"))

    save_case("torchvision_vit", write, {"pixel_values": x}, {"logits": logits})


def face_pth():
    """The face case's state dict as the official trainer saves `Backbone_VIT_Epoch_*.pth`
    (`torch.save(model.state_dict())`: loralib keys and `loss.weight` included)."""
    from safetensors.torch import load_file

    d = os.path.join(OUT, "gslora_face")
    torch.save(load_file(os.path.join(d, "model.safetensors")), os.path.join(d, "model.pth"))


def dinov2_reference(weights_dir, out):
    from safetensors.torch import load_file
    from transformers import Dinov2Model

    stored = os.path.join(weights_dir, "reference_224.safetensors")
    previous = load_file(stored) if os.path.exists(stored) else None
    if previous is not None:
        x = previous["pixel_values"]
    else:
        x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(224))
    model = Dinov2Model.from_pretrained(weights_dir).eval()
    with torch.no_grad():
        o = model(x)
    outputs = {"pixel_values": x, "last_hidden_state": o.last_hidden_state, "pooler_output": o.pooler_output}
    if previous is not None:
        for k in ("last_hidden_state", "pooler_output"):
            diff = (outputs[k] - previous[k]).abs().max() / previous[k].abs().max()
            print(f"{k}: max |new - stored| / max |stored| = {diff:.2e}")
    save_file({k: v.contiguous() for k, v in outputs.items()}, out)


def resample_cases():
    g = torch.Generator().manual_seed(9)
    grid = torch.randn(1, 3, 7, 7, generator=g)
    tensors = {"grid": grid.permute(0, 2, 3, 1)[0]}
    for h, w in [(4, 5), (9, 11), (7, 7)]:
        for aa in (False, True):
            out = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False, antialias=aa)
            tensors[f"{'aa' if aa else 'plain'}_{h}x{w}"] = out.permute(0, 2, 3, 1)[0]
    os.makedirs(OUT, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "resample.safetensors"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--gslora-repo", help="checkout of github.com/bjzhb666/GS-LoRA")
    parser.add_argument("--dinov2-small", help="the real DINOv2-S checkpoint folder (config.json, model.safetensors)")
    parser.add_argument("--dinov2-out", help="where its reference goes (default DIR/reference_224.safetensors)")
    cli = parser.parse_args()
    timm_cases()
    hf_cases()
    torchvision_case()
    resample_cases()
    if cli.gslora_repo:
        face_case(cli.gslora_repo)
    else:
        print("skipping the face Transformer case: pass --gslora-repo PATH")
    face_pth()
    if cli.dinov2_small:
        out = cli.dinov2_out or os.path.join(cli.dinov2_small, "reference_224.safetensors")
        dinov2_reference(cli.dinov2_small, out)
        print("DINOv2-S reference written to", out)
    print("fixtures written to", os.path.normpath(OUT))
