"""The LoRA layer of the PyTorch reference scripts (torch_gslora_step.py, torch_gslora_task.py):
y = base(x) + (x A^T B^T) * alpha / r, A kaiming-uniform, B zero (PEFT's initialisation)."""
import math
import torch, torch.nn as nn


class LoraLinear(nn.Module):
    def __init__(self, base: nn.Linear, r=8, alpha=1.0):
        super().__init__()
        self.base = base
        self.lora_a = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scale = alpha / r

    def forward(self, x):
        return self.base(x) + (x @ self.lora_a.t() @ self.lora_b.t()) * self.scale

    def merge(self):
        """Folds B A * scale into the base weight and zeroes B (the layer's output is unchanged)."""
        with torch.no_grad():
            self.base.weight += (self.lora_b @ self.lora_a) * self.scale
            self.lora_b.zero_()
