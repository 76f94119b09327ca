"""ResNet for 28x28 inputs, CIFAR-style (He et al. 2016, section 4.2).

A 3x3 stride-1 stem and no max-pool: at 28x28 an ImageNet stem (7x7/2 + pool) would throw away
three quarters of the pixels before the first block. depth = 6n + 2, three stages at 28/14/7.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from product_classifier.constants import NUM_CLASSES
from product_classifier.models.layers import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    Normalize,
    init_weights,
    norm_layer,
)
from product_classifier.models.registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, batch_norm: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=not batch_norm)
        self.bn1 = norm_layer(c_out, batch_norm)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=not batch_norm)
        self.bn2 = norm_layer(c_out, batch_norm)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=not batch_norm),
                norm_layer(c_out, batch_norm),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet28(nn.Module):
    def __init__(
        self,
        depth: int = 20,
        width: int = 16,
        dropout: float = 0.0,
        batch_norm: bool = True,
        num_classes: int = NUM_CLASSES,
        in_channels: int = 1,
        stem_stride: int = 1,
        norm_mean: float = FASHION_MNIST_MEAN,
        norm_std: float = FASHION_MNIST_STD,
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"depth must be 6n+2 (20, 32, 44, ...), got {depth}")
        blocks_per_stage = (depth - 2) // 6
        widths = (width, 2 * width, 4 * width)
        self.normalize = Normalize(norm_mean, norm_std)
        # stem_stride 2 for catalog inputs of 56 px and up: the stages then run at the same
        # resolution as at 28x28, so a 64x64 model costs about what a 32x32 one does.
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=stem_stride, padding=1, bias=not batch_norm),
            norm_layer(width, batch_norm),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        c_in = width
        for stage, c_out in enumerate(widths):
            for block in range(blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlock(c_in, c_out, stride, batch_norm))
                c_in = c_out
        self.stages = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c_in, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(self.normalize(x))))


@register_model("resnet")
def resnet(**params: Any) -> nn.Module:
    """See :class:`ResNet28` for the parameters (an unknown one raises TypeError naming it)."""
    return ResNet28(**params)
