"""The modules `kcomp bench torch` runs (real model blocks, built here with torch.nn; nothing is
downloaded): an MLP block, a transformer encoder layer (layernorm, 8-head attention, GELU; seq 512,
d 512), a ResNet basic block and a depthwise-separable MobileNet block.  Each case makes its module
in eval mode and its example input, seeded."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class EncoderLayer(nn.Module):
    """Post-norm transformer encoder layer: self-attention, residual, layernorm, GELU MLP, residual,
    layernorm (written out, so every op is visible to a compiler)."""

    def __init__(self, d: int = 512, heads: int = 8, ff: int = 2048):
        super().__init__()
        self.heads = heads
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff1, self.ff2 = nn.Linear(d, ff), nn.Linear(ff, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, s, d)
        x = self.ln1(x + self.out(y))
        return self.ln2(x + self.ff2(nn.functional.gelu(self.ff1(x))))


class BasicBlock(nn.Module):
    def __init__(self, c: int = 64):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + x)


def mobilenet_block(c_in: int = 32, c_out: int = 64) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False), nn.BatchNorm2d(c_in), nn.ReLU(),
        nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
    )  # fmt: skip


def mlp_block(d: int = 512, ff: int = 2048) -> nn.Module:
    return nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": (mlp_block, (512, 512)),
    "encoder_layer": (EncoderLayer, (1, 512, 512)),
    "resnet_block": (BasicBlock, (1, 64, 56, 56)),
    "mobilenet_block": (mobilenet_block, (1, 32, 112, 112)),
}


def make(name: str, seed: int = 0) -> tuple[nn.Module, tuple[Any, ...]]:
    """Module `name` in eval mode (random weights, BatchNorm statistics made non-trivial) and its input."""
    build, shape = MODELS[name]
    torch.manual_seed(seed)
    module = build().eval()
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    return module, (torch.randn(*shape),)
