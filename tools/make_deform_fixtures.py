"""Regenerates the deformable-attention fixtures in crates/gs-lora-models/tests/fixtures/.

deform_sampling.safetensors: the sampling core alone.

Multi-scale deformable sampling as Deformable DETR's reference (`ms_deform_attn_core_pytorch`
of fundamentalvision/Deformable-DETR and Hugging Face's `multi_scale_deformable_attention`):
per level, `F.grid_sample(bilinear, zeros, align_corners=False)` at `2·loc − 1`, weighted by
the attention weights and summed. Small random case with points inside, on the border of and
outside the levels; stores the inputs, the output, and the gradients of `sum(output · cotangent)`
with respect to value, locations and weights.

deform_attention.safetensors: Hugging Face's `DeformableDetrMultiscaleDeformableAttention`
(d_model 16, 2 heads, 3 levels, 2 points; every parameter perturbed), with a position
embedding, a value mask with padded tokens, and both kinds of reference points (points and
boxes); its parameters under `attn.` plus inputs and outputs.

deform_layers.safetensors: one `DeformableDetrEncoderLayer` and one `DeformableDetrDecoderLayer`
(d_model 16, 2 heads, FFN 24, 3 levels, 2 points; every parameter perturbed) under `encoder.`
and `decoder.`, with the names of the released checkpoints (transformers 5 calls `fc1`
`mlp.fc1` and `out_proj` `o_proj`), inputs and outputs.

position.safetensors: `DeformableDetrSinePositionEmbedding(8, normalize=True)` of a pixel mask
[2, 5, 7] whose second image is padded at the right and bottom.

detr/: a small random `DeformableDetrForObjectDetection` (a timm ResNet-50 layout with widths
8/16/32/64 and one block per stage, d_model 32, 1 encoder and 2 decoder layers, 2 heads, 4
levels, 2 points, 5 queries, 3 labels; every parameter and batch-norm statistic perturbed):
`config.json`, `model.safetensors` (transformers-5 names), `input.safetensors` (`pixel_values`
[2, 3, 128, 96], no padding) and `output.safetensors` (`logits`, `pred_boxes`). transformers
5.23 looks a timm backbone name up on the hub and ignores size arguments for it, so the model is
built with a ResNet-50 backbone (offline: HF_HUB_OFFLINE=1) whose backbone and input
projections are then swapped for small ones.

detr_tied/, detr_refine_tied/, detr_two_stage_tied/ (only with `--tied`): the architectures of
`detr/`, `detr_refine/` and `detr_two_stage/` (seeds 7, 8, 9), written by the installed
transformers' own `save_pretrained`, which since transformers 5.24 writes a tied tensor once:
without box refinement the decoder levels share one class head and one box head, so the file
holds `class_embed.0.*` and `bbox_embed.0.*` only; with it, the per-level box heads are written
under the decoder's names only (`model.decoder.bbox_embed.N.*`), the class head once
(`class_embed.0.*`) or, two-stage, under the decoder's names only. `config.json` as for `detr/`,
`input.safetensors` and `output.safetensors` likewise (no padded case). Made with transformers
5.24.0 (the version is also in its `config.json`).

resnet.safetensors: a small timm bottleneck `ResNet` (stem 64, widths 8/16/32/64, depths
1/2/1/1; weights and batch-norm statistics perturbed) in eval mode under `backbone.`, an input
and the four stage outputs.

    .venv/bin/python -m pip install torch timm transformers safetensors
    HF_HUB_OFFLINE=1 .venv/bin/python tools/make_deform_fixtures.py
    HF_HUB_OFFLINE=1 .venv/bin/python tools/make_deform_fixtures.py --tied   # the *_tied/ only

Tested with torch 2.15, timm 1.0.31, transformers 5.23 (all but the `*_tied/`) and transformers
5.24 (the `*_tied/`: `--tied` refuses an older transformers, whose `save_pretrained` writes every
copy).
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "gs-lora-models", "tests", "fixtures")
SHAPES = [(5, 7), (3, 4), (2, 2)]


def reference(value, shapes, locations, weights):
    n, _, m, dh = value.shape
    _, lq, _, levels, points, _ = locations.shape
    per_level = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * locations - 1
    sampled = []
    for level, (h, w) in enumerate(shapes):
        v = per_level[level].flatten(2).transpose(1, 2).reshape(n * m, dh, h, w)
        g = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    a = weights.transpose(1, 2).reshape(n * m, 1, lq, levels * points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * a).sum(-1).view(n, m * dh, lq)
    return out.transpose(1, 2).contiguous()


def attention_case():
    from transformers import DeformableDetrConfig
    from transformers.models.deformable_detr.modeling_deformable_detr import (
        DeformableDetrMultiscaleDeformableAttention,
    )

    torch.manual_seed(1)
    config = DeformableDetrConfig(d_model=16, num_feature_levels=len(SHAPES), disable_custom_kernels=True)
    attn = DeformableDetrMultiscaleDeformableAttention(config, num_heads=2, n_points=2).eval()
    with torch.no_grad():
        for p in attn.parameters():
            p.add_(0.3 * torch.randn_like(p))
    n, lq = 2, 5
    tokens = sum(h * w for h, w in SHAPES)
    queries = torch.randn(n, lq, 16)
    position = torch.randn(n, lq, 16)
    values = torch.randn(n, tokens, 16)
    mask = torch.ones(n, tokens, dtype=torch.bool)
    mask[1, -7:] = False  # padding at the end of the second image
    points = torch.rand(n, lq, len(SHAPES), 2)
    boxes = torch.cat([torch.rand(n, lq, len(SHAPES), 2), 0.1 + 0.5 * torch.rand(n, lq, len(SHAPES), 2)], -1)
    shapes = torch.tensor(SHAPES)
    starts = torch.cat([shapes.new_zeros(1), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]])
    outputs = {}
    with torch.no_grad():
        for name, reference in (("points", points), ("boxes", boxes)):
            out, _ = attn(
                hidden_states=queries, attention_mask=mask, encoder_hidden_states=values,
                position_embeddings=position, reference_points=reference, spatial_shapes=shapes,
                spatial_shapes_list=SHAPES, level_start_index=starts,
            )
            outputs[f"output_{name}"] = out
    tensors = {f"attn.{k}": v for k, v in attn.state_dict().items()}
    tensors.update(queries=queries, position=position, values=values, mask=mask.float(),
                   points=points, boxes=boxes, **outputs)
    path = os.path.join(OUT, "deform_attention.safetensors")
    save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, path)
    print("wrote", path)


def perturb_state(model, scale):
    """Moves every float parameter and buffer off its init by `scale`·N(0, 1); batch-norm
    variances are redrawn in [0.5, 1.5) so they stay positive."""
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand_like(t))
            elif t.is_floating_point():
                t.add_(scale * torch.randn_like(t))


def checkpoint_name(key):
    """transformers 5 module names → the released checkpoints' names."""
    return key.replace("mlp.fc", "fc").replace("self_attn.o_proj", "self_attn.out_proj")


def layers_case():
    from transformers import DeformableDetrConfig
    from transformers.models.deformable_detr.modeling_deformable_detr import (
        DeformableDetrDecoderLayer,
        DeformableDetrEncoderLayer,
    )

    torch.manual_seed(2)
    config = DeformableDetrConfig(
        d_model=16, encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=24,
        decoder_ffn_dim=24, num_feature_levels=len(SHAPES), encoder_n_points=2, decoder_n_points=2,
        disable_custom_kernels=True,
    )
    config._attn_implementation = "eager"
    encoder = DeformableDetrEncoderLayer(config).eval()
    decoder = DeformableDetrDecoderLayer(config).eval()
    with torch.no_grad():
        for p in list(encoder.parameters()) + list(decoder.parameters()):
            p.add_(0.3 * torch.randn_like(p))
    n, q = 2, 5
    tokens = sum(h * w for h, w in SHAPES)
    shapes = torch.tensor(SHAPES)
    starts = torch.cat([shapes.new_zeros(1), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]])
    x = torch.randn(n, tokens, 16)
    position = torch.randn(n, tokens, 16)
    mask = torch.ones(n, tokens, dtype=torch.bool)
    mask[0, -5:] = False
    encoder_points = torch.rand(n, tokens, len(SHAPES), 2)
    queries = torch.randn(n, q, 16)
    query_position = torch.randn(n, q, 16)
    decoder_points = torch.rand(n, q, len(SHAPES), 2)
    with torch.no_grad():
        encoded = encoder(
            x, attention_mask=mask, spatial_position_embeddings=position,
            reference_points=encoder_points, spatial_shapes=shapes, spatial_shapes_list=SHAPES,
            level_start_index=starts,
        )
        decoded = decoder(
            queries, object_queries_position_embeddings=query_position,
            reference_points=decoder_points, spatial_shapes=shapes, spatial_shapes_list=SHAPES,
            level_start_index=starts, encoder_hidden_states=encoded, encoder_attention_mask=mask,
        )
    tensors = {f"encoder.{checkpoint_name(k)}": v for k, v in encoder.state_dict().items()}
    tensors.update({f"decoder.{checkpoint_name(k)}": v for k, v in decoder.state_dict().items()})
    tensors.update(
        x=x, position=position, mask=mask.float(), encoder_points=encoder_points, encoded=encoded,
        queries=queries, query_position=query_position, decoder_points=decoder_points,
        decoded=decoded,
    )
    path = os.path.join(OUT, "deform_layers.safetensors")
    save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, path)
    print("wrote", path)


def resnet_case():
    from timm.models.resnet import Bottleneck, ResNet

    torch.manual_seed(3)
    model = ResNet(block=Bottleneck, layers=[1, 2, 1, 1], channels=(8, 16, 32, 64), num_classes=0)
    perturb_state(model, 0.2)
    model.eval()
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        features = model.forward_intermediates(x, intermediates_only=True)
    tensors = {f"backbone.{k}": v for k, v in model.state_dict().items() if "num_batches" not in k}
    tensors["pixel_values"] = x
    tensors.update({f"stage{i}": f for i, f in enumerate(features[1:])})
    path = os.path.join(OUT, "resnet.safetensors")
    save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, path)
    print("wrote", path, [tuple(f.shape) for f in features])


def position_case():
    from transformers.models.deformable_detr.modeling_deformable_detr import (
        DeformableDetrSinePositionEmbedding,
    )

    mask = torch.ones(2, 5, 7, dtype=torch.bool)
    mask[1, 3:, :] = False
    mask[1, :, 4:] = False
    embedding = DeformableDetrSinePositionEmbedding(8, normalize=True)
    pos = embedding((2, 16, 5, 7), "cpu", torch.float32, mask)
    path = os.path.join(OUT, "position.safetensors")
    save_file({"mask": mask.float().contiguous(), "position": pos.contiguous()}, path)
    print("wrote", path, tuple(pos.shape))


def detr_case(name="detr", seed=4, with_box_refine=False, two_stage=False, save_pretrained=False):
    """`save_pretrained`: the weights as transformers' `save_pretrained` writes them (tied
    tensors once) instead of every entry of the state dict, and no padded case."""
    import timm
    from torch import nn
    from transformers import DeformableDetrConfig, DeformableDetrForObjectDetection
    from transformers.models.auto import CONFIG_MAPPING

    torch.manual_seed(seed)
    backbone = CONFIG_MAPPING["timm_backbone"](backbone="resnet50", use_pretrained_backbone=False, out_indices=(2, 3, 4))
    config = DeformableDetrConfig(
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=24, decoder_ffn_dim=24, num_queries=5,
        num_feature_levels=4, encoder_n_points=2, decoder_n_points=2, backbone_config=backbone,
        num_labels=3, disable_custom_kernels=True, with_box_refine=with_box_refine,
        **(dict(two_stage=True, two_stage_num_proposals=5) if two_stage else {}),
    )
    config._attn_implementation = "eager"
    model = DeformableDetrForObjectDetection(config).eval()
    tiny = timm.create_model("resnet50", pretrained=False, features_only=True, out_indices=(2, 3, 4),
                             channels=(8, 16, 32, 64), layers=[1, 1, 1, 1])
    model.model.backbone.model = tiny
    channels = tiny.feature_info.channels()
    projections = [nn.Sequential(nn.Conv2d(c, 32, 1), nn.GroupNorm(32, 32)) for c in channels]
    projections.append(nn.Sequential(nn.Conv2d(channels[-1], 32, 3, stride=2, padding=1), nn.GroupNorm(32, 32)))
    model.model.input_proj = nn.ModuleList(projections)
    perturb_state(model, 0.1)
    model.eval()
    pixels = torch.randn(2, 3, 128, 96)
    with torch.no_grad():
        out = model(pixel_values=pixels)
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    # class_embed.N / bbox_embed.N are one tied module without box refinement: clone to save.
    # transformers-5 names here (`mlp.fc1`, `o_proj`), to exercise the loader's other spelling.
    if save_pretrained:
        model.save_pretrained(d)
        # The config is rewritten below; drop anything else save_pretrained may add.
        for extra in set(os.listdir(d)) - {"config.json", "model.safetensors"}:
            os.remove(os.path.join(d, extra))
    else:
        weights = {k: v.clone().contiguous() for k, v in model.state_dict().items() if "num_batches" not in k}
        save_file(weights, os.path.join(d, "model.safetensors"))
    # The config as transformers writes it, plus the timm size arguments of the small backbone
    # (transformers does not pass them on; timm's create_model takes them).
    saved = model.config.to_dict()
    saved["backbone_config"].update(channels=[8, 16, 32, 64], layers=[1, 1, 1, 1])
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(saved, f, indent=2, default=str)
    save_file({"pixel_values": pixels}, os.path.join(d, "input.safetensors"))
    save_file({"logits": out.logits.contiguous(), "pred_boxes": out.pred_boxes.contiguous()},
              os.path.join(d, "output.safetensors"))
    if with_box_refine or save_pretrained:
        print("wrote", d, tuple(out.logits.shape), tuple(out.pred_boxes.shape))
        return
    # A padded batch: the second image's real part is 96×64 (bottom and right padded with zeros,
    # as the image processor pads), the first is whole.
    mask = torch.ones(2, 128, 96, dtype=torch.long)
    mask[1, 96:, :] = 0
    mask[1, :, 64:] = 0
    padded = pixels * mask[:, None]
    with torch.no_grad():
        out = model(pixel_values=padded, pixel_mask=mask)
    save_file({"pixel_values": padded, "pixel_mask": mask.float()},
              os.path.join(d, "input_padded.safetensors"))
    save_file({"logits": out.logits.contiguous(), "pred_boxes": out.pred_boxes.contiguous()},
              os.path.join(d, "output_padded.safetensors"))
    print("wrote", d, tuple(out.logits.shape), tuple(out.pred_boxes.shape))


def tied_main():
    import transformers

    major, minor = (int(v) for v in transformers.__version__.split(".")[:2])
    if (major, minor) < (5, 24):
        sys.exit(f"--tied needs transformers >= 5.24 (found {transformers.__version__})")
    from safetensors import safe_open

    for name, seed, refine, two_stage in [("detr_tied", 7, False, False), ("detr_refine_tied", 8, True, False),
                                          ("detr_two_stage_tied", 9, True, True)]:
        detr_case(name, seed=seed, with_box_refine=refine, two_stage=two_stage, save_pretrained=True)
        with safe_open(os.path.join(OUT, name, "model.safetensors"), "pt") as f:
            heads = sorted({".".join(k.split(".")[:-2]) for k in f.keys() if "_embed." in k and "query" not in k
                            and "level" not in k})
        print("transformers", transformers.__version__, "wrote", name, "heads", heads)


def main():
    if sys.argv[1:] == ["--tied"]:
        return tied_main()
    detr_case()
    detr_case("detr_refine", seed=5, with_box_refine=True)
    detr_case("detr_two_stage", seed=6, with_box_refine=True, two_stage=True)
    position_case()
    resnet_case()
    layers_case()
    attention_case()
    torch.manual_seed(0)
    n, m, dh, lq, points = 2, 3, 4, 5, 3
    tokens = sum(h * w for h, w in SHAPES)
    value = torch.randn(n, tokens, m, dh, dtype=torch.float64, requires_grad=True)
    # Spread beyond [0, 1] so that some points fall partly or wholly outside a level.
    locations = (torch.rand(n, lq, m, len(SHAPES), points, 2, dtype=torch.float64) * 1.4 - 0.2).requires_grad_()
    weights = torch.rand(n, lq, m, len(SHAPES), points, dtype=torch.float64).softmax(-1).requires_grad_()
    out = reference(value, SHAPES, locations, weights)
    cotangent = torch.randn_like(out)
    (out * cotangent).sum().backward()
    tensors = {
        "value": value,
        "locations": locations,
        "weights": weights,
        "output": out,
        "cotangent": cotangent,
        "grad_value": value.grad,
        "grad_locations": locations.grad,
        "grad_weights": weights.grad,
        "spatial_shapes": torch.tensor(SHAPES, dtype=torch.float64),
    }
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "deform_sampling.safetensors")
    save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, path)
    print("wrote", path)


if __name__ == "__main__":
    main()
