"""Pieces shared by every architecture."""

from __future__ import annotations

import torch
from torch import nn

# Fashion-MNIST training-set statistics of raw bytes / 255. Normalising inside the network
# keeps the ONNX contract simple: callers feed [0, 1] pixels, nothing else.
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530


class Normalize(nn.Module):
    def __init__(self, mean: float = FASHION_MNIST_MEAN, std: float = FASHION_MNIST_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 1, 1, 1))
        self.register_buffer("inv_std", torch.tensor(1.0 / std).view(1, 1, 1, 1))

    mean: torch.Tensor
    inv_std: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.inv_std


def norm_layer(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


def init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
