"""An EfficientNet-style network scaled down for 28x28: MBConv blocks with squeeze-excitation.

Stride schedule 28 -> 14 -> 7 (two downsamplings, not EfficientNet's five: there are only 28
pixels). SiLU activations and SE ratio 0.25 as in Tan & Le 2019.
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


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, reduced, 1),
            nn.SiLU(inplace=True),
            nn.Conv2d(reduced, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class MBConv(nn.Module):
    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int,
        expand: int,
        kernel: int,
        batch_norm: bool,
        se_ratio: float = 0.25,
    ) -> None:
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [
                nn.Conv2d(c_in, hidden, 1, bias=not batch_norm),
                norm_layer(hidden, batch_norm),
                nn.SiLU(inplace=True),
            ]
        layers += [
            nn.Conv2d(
                hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=not batch_norm
            ),
            norm_layer(hidden, batch_norm),
            nn.SiLU(inplace=True),
            SqueezeExcite(hidden, max(1, int(c_in * se_ratio))),
            nn.Conv2d(hidden, c_out, 1, bias=not batch_norm),
            norm_layer(c_out, batch_norm),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.residual else out


# (expand, channels, repeats, stride, kernel) per stage, like EfficientNet-B0's table.
_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 16, 1, 1, 3),
    (4, 24, 2, 2, 3),
    (4, 40, 2, 1, 5),
    (4, 80, 3, 2, 3),
    (4, 112, 2, 1, 5),
)


class EfficientNet28(nn.Module):
    def __init__(
        self,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        dropout: float = 0.2,
        batch_norm: bool = True,
        num_classes: int = NUM_CLASSES,
        in_channels: int = 1,
        stem_stride: int = 1,
        norm_mean: float = FASHION_MNIST_MEAN,
        norm_std: float = FASHION_MNIST_STD,
    ) -> None:
        super().__init__()
        stem = max(8, round(32 * width_mult))
        self.normalize = Normalize(norm_mean, norm_std)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, stride=stem_stride, padding=1, bias=not batch_norm),
            norm_layer(stem, batch_norm),
            nn.SiLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        c_in = stem
        for expand, channels, repeats, stride, kernel in _STAGES:
            c_out = max(8, round(channels * width_mult))
            for i in range(max(1, round(repeats * depth_mult))):
                blocks.append(
                    MBConv(c_in, c_out, stride if i == 0 else 1, expand, kernel, batch_norm)
                )
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        head = max(64, round(320 * width_mult))
        self.head = nn.Sequential(
            nn.Conv2d(c_in, head, 1, bias=not batch_norm),
            norm_layer(head, batch_norm),
            nn.SiLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(head, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(self.normalize(x))))


@register_model("efficientnet")
def efficientnet(**params: Any) -> nn.Module:
    """See :class:`EfficientNet28` for the parameters (unknown ones raise TypeError)."""
    return EfficientNet28(**params)
