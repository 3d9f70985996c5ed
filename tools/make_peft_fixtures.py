"""PEFT LoRA adapters as PEFT itself writes them, on the committed ViT fixtures, with the outputs
of the adapted models; and the reverse check of adapters gs-lora saved.

    python -m venv .venv && .venv/bin/pip install torch timm transformers safetensors peft
    .venv/bin/python tools/make_peft_fixtures.py            # writes the fixtures below
    .venv/bin/python tools/make_peft_fixtures.py --check DIR

Fixtures (crates/gs-lora-models/tests/fixtures/), each `adapter_config.json` +
`adapter_model.safetensors` from `PeftModel.save_pretrained` and `output.safetensors`, the
adapted model's outputs on the base fixture's `input.safetensors`:
- peft_timm/: on timm_token/ (timm ViT), `target_modules=["fc1", "fc2"]`, r 4, lora_alpha 8,
  block 1's fc2 at rank 2 (`rank_pattern`);
- peft_dinov2/: on hf_dinov2/ (transformers Dinov2Model), `target_modules=["mlp.fc1", "mlp.fc2"]`,
  r 4, lora_alpha 16 with rsLoRA (scale alpha/sqrt(r)), layer 0's fc1 at lora_alpha 4
  (`alpha_pattern`);
- peft_dinov2_fc1/: on hf_dinov2/, `target_modules=["fc1"]` only (fc2 left without adapter).
Adapters start random (`init_lora_weights=False`), so that B is not zero and every factor shows.

`--check DIR`: DIR holds adapters gs-lora saved (`adapter_config.json`, `adapter_model.safetensors`),
`base.txt` naming the base fixture (timm_token or hf_dinov2) and `output.safetensors`, gs-lora's
outputs on the base fixture's input. Loads the base model, `PeftModel.from_pretrained(base, DIR)`,
runs the input and exits with status 1 unless every output matches to 1e-4 of its largest value.

Tested with torch 2.15, timm 1.0.31, transformers 5.24, peft 0.21.2.
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "crates", "gs-lora-models", "tests", "fixtures")


def base_model(name):
    """The base fixture `name` as its reference library loads it, and a function of pixels to outputs."""
    d = os.path.join(FIXTURES, name)
    if name.startswith("timm"):
        import timm

        with open(os.path.join(d, "config.json")) as f:
            config = json.load(f)
        model = timm.create_model(config["architecture"], pretrained=False, **config["model_args"])
        model.load_state_dict(load_file(os.path.join(d, "model.safetensors")))

        def outputs(m, x):
            features = m.forward_features(x)
            return {"last_hidden_state": features, "logits": m.forward_head(features)}
    else:
        from transformers import Dinov2Model

        model = Dinov2Model.from_pretrained(d)

        def outputs(m, x):
            out = m(pixel_values=x)
            return {"last_hidden_state": out.last_hidden_state, "pooler_output": out.pooler_output}
    return model.eval(), outputs, load_file(os.path.join(d, "input.safetensors"))["pixel_values"]


def make(name, base, seed, **lora):
    from peft import LoraConfig, get_peft_model

    model, outputs, x = base_model(base)
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, LoraConfig(init_lora_weights=False, **lora)).eval()
    d = os.path.join(FIXTURES, name)
    peft_model.save_pretrained(d)
    with torch.no_grad():
        out = outputs(peft_model, x)
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(d, "output.safetensors"))
    os.remove(os.path.join(d, "README.md")) if os.path.exists(os.path.join(d, "README.md")) else None
    print("wrote", d, sorted(os.listdir(d)))


def check(d):
    from peft import PeftModel

    with open(os.path.join(d, "base.txt")) as f:
        base = f.read().strip()
    model, outputs, x = base_model(base)
    peft_model = PeftModel.from_pretrained(model, d).eval()
    with torch.no_grad():
        found = outputs(peft_model, x)
    expected = load_file(os.path.join(d, "output.safetensors"))
    ok = True
    for key, value in expected.items():
        diff = (found[key] - value).abs().max().item()
        scale = value.abs().max().item()
        good = diff <= 1e-4 * scale
        ok &= good
        print(f"{key}: max |PEFT - gs-lora| {diff:.3e} of {scale:.3e} {'ok' if good else 'MISMATCH'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", help="a folder of adapters gs-lora saved, with base.txt and output.safetensors")
    cli = parser.parse_args()
    if cli.check:
        check(cli.check)
    else:
        make("peft_timm", "timm_token", 10, r=4, lora_alpha=8, target_modules=["fc1", "fc2"],
             rank_pattern={"blocks.1.mlp.fc2": 2})
        make("peft_dinov2", "hf_dinov2", 11, r=4, lora_alpha=16, use_rslora=True,
             target_modules=["mlp.fc1", "mlp.fc2"], alpha_pattern={"encoder.layer.0.mlp.fc1": 4})
        make("peft_dinov2_fc1", "hf_dinov2", 12, r=2, lora_alpha=2, target_modules=["fc1"])
