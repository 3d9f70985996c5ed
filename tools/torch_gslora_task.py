"""PyTorch reference for one whole GS-LoRA forgetting task, for side-by-side wall time and memory
with `gs-lora forget` (tools/bench_task.sh runs both; docs/benchmarks.md, BENCH-TASK).

The official loop (../shared/PROTOCOL.md §0.4-0.5, §2.1) on a fixed small subset of real images:
  - data: the first CLASSES classes (sorted folder order) of an Omniglot zip, TRAIN drawings per
    class for training and VAL for validation, each resized to SIZE x SIZE, ImageNet-normalised;
  - model: DINOv2-S (Hugging Face transformers `Dinov2Model`, the weights of WEIGHTS) reading the
    final-norm class token, a Linear head of CLASSES classes (seeded; its values do not change the
    work), LoRA rank 8, alpha 1 on mlp.fc1 and mlp.fc2 of every block, everything else frozen;
  - task: the first FORGET classes are forgotten; scores before (validation accuracy of both
    groups); replay = floor(REPLAY * n) of the remaining group's training images; each epoch one
    pass over the replayed images in batches of BATCH, each step with the next forget batch
    (cycled), loss CE(remain) + BETA * relu(BND - CE(forget)) + ALPHA * sum_blocks ||LoRA||_2,
    timm-style AdamW (lr LR, wd 0.05, eps 1e-8) with a per-epoch cosine to MIN_LR; then the
    adapters merged, scores after, and the merged model saved.
Prints `task_seconds=...` (from the start of the program, data and model loading included) and the
accuracies. Usage: python torch_gslora_task.py --data ZIP --weights DIR --out FILE [--threads 2]
"""
import argparse, io, math, time, zipfile
START = time.perf_counter()
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
from PIL import Image
from transformers import Dinov2Config, Dinov2Model
from safetensors.torch import load_file
from torch_lora import LoraLinear


def load_images(path, classes, train, val, size):
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    with zipfile.ZipFile(path) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".png"))
        folders = sorted({n.rsplit("/", 1)[0] for n in names})[:classes]
        xs = {"train": [], "val": []}
        ys = {"train": [], "val": []}
        for label, folder in enumerate(folders):
            files = [n for n in names if n.rsplit("/", 1)[0] == folder][: train + val]
            for i, name in enumerate(files):
                image = Image.open(io.BytesIO(z.read(name))).convert("RGB").resize((size, size), Image.BICUBIC)
                x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
                split = "train" if i < train else "val"
                xs[split].append((x - mean) / std)
                ys[split].append(label)
    return {k: (torch.stack(xs[k]), torch.tensor(ys[k])) for k in xs}


class Classifier(nn.Module):
    def __init__(self, weights, classes):
        super().__init__()
        self.backbone = Dinov2Model(Dinov2Config.from_json_file(f"{weights}/config.json"))
        state = load_file(f"{weights}/model.safetensors")
        if hasattr(self.backbone.encoder.layer[0].attention, "q_proj"):  # transformers >= 5 names
            for old, new in [("attention.attention.query", "attention.q_proj"), ("attention.attention.key", "attention.k_proj"),
                             ("attention.attention.value", "attention.v_proj"), ("attention.output.dense", "attention.o_proj")]:
                state = {k.replace(old, new): v for k, v in state.items()}
        missing, unexpected = self.backbone.load_state_dict(state, strict=False)
        assert not unexpected and set(missing) <= {"embeddings.mask_token"}, (missing, unexpected)
        self.head = nn.Linear(self.backbone.config.hidden_size, classes)

    def forward(self, x):
        return self.head(self.backbone(pixel_values=x).pooler_output)


def accuracy(model, x, y, classes, batch):
    keep = torch.isin(y, torch.tensor(classes))
    x, y = x[keep], y[keep]
    model.eval()
    with torch.no_grad():
        right = sum((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item() for i in range(0, len(y), batch))
    model.train()
    return 100.0 * right / max(len(y), 1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--out", required=True)
    for name, value in [("classes", 10), ("train", 16), ("val", 4), ("size", 224), ("forget", 2),
                        ("epochs", 5), ("batch", 8), ("threads", 2), ("seed", 0)]:
        p.add_argument(f"--{name}", type=int, default=value)
    for name, value in [("replay", 0.5), ("lr", 1e-2), ("min_lr", 1e-5), ("bnd", 105.0),
                        ("beta", 0.2), ("alpha", 1e-4)]:
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=value)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    data = load_images(a.data, a.classes, a.train, a.val, a.size)
    model = Classifier(a.weights, a.classes)
    for q in model.parameters():
        q.requires_grad_(False)
    groups = []
    for layer in model.backbone.encoder.layer:
        layer.mlp.fc1 = LoraLinear(layer.mlp.fc1)
        layer.mlp.fc2 = LoraLinear(layer.mlp.fc2)
        groups.append([layer.mlp.fc1.lora_a, layer.mlp.fc1.lora_b, layer.mlp.fc2.lora_a, layer.mlp.fc2.lora_b])
    forget, remain = list(range(a.forget)), list(range(a.forget, a.classes))
    (xt, yt), (xv, yv) = data["train"], data["val"]
    before = (accuracy(model, xv, yv, forget, 2 * a.batch), accuracy(model, xv, yv, remain, 2 * a.batch))

    g = torch.Generator().manual_seed(a.seed)
    remain_idx = torch.nonzero(torch.isin(yt, torch.tensor(remain))).flatten()
    remain_idx = remain_idx[torch.randperm(len(remain_idx), generator=g)[: int(a.replay * len(remain_idx))]]
    forget_idx = torch.nonzero(torch.isin(yt, torch.tensor(forget))).flatten()
    params = [q for group in groups for q in group]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.05, eps=1e-8)
    model.train()
    for epoch in range(a.epochs):
        lr = a.min_lr + 0.5 * (a.lr - a.min_lr) * (1 + math.cos(math.pi * epoch / a.epochs))
        for group in opt.param_groups:
            group["lr"] = lr
        r_order = remain_idx[torch.randperm(len(remain_idx), generator=g)]
        f_order = forget_idx[torch.randperm(len(forget_idx), generator=g)]
        f_batches = [f_order[i:i + a.batch] for i in range(0, len(f_order), a.batch)]
        for step, i in enumerate(range(0, len(r_order), a.batch)):
            r, f = r_order[i:i + a.batch], f_batches[step % len(f_batches)]
            l_r = F.cross_entropy(model(xt[r]), yt[r])
            l_f = F.relu(a.bnd - F.cross_entropy(model(xt[f]), yt[f]))
            l_s = sum(torch.sqrt(sum((q ** 2).sum() for q in group)) for group in groups)
            loss = l_r + a.beta * l_f + a.alpha * l_s
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    for layer in model.backbone.encoder.layer:
        layer.mlp.fc1.merge()
        layer.mlp.fc2.merge()
    after = (accuracy(model, xv, yv, forget, 2 * a.batch), accuracy(model, xv, yv, remain, 2 * a.batch))
    torch.save(model.state_dict(), a.out)
    print(f"acc_f {before[0]:.2f} -> {after[0]:.2f}, acc_r {before[1]:.2f} -> {after[1]:.2f}")
    print(f"task_seconds={time.perf_counter() - START:.1f}")


if __name__ == "__main__":
    main()
