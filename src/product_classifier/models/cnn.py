"""The baseline: a small VGG-style CNN, cheap enough to train on two CPU cores in minutes."""

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


def _conv_block(c_in: int, c_out: int, batch_norm: bool) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm),
        norm_layer(c_out, batch_norm),
        nn.ReLU(inplace=True),
    )


class BaselineCNN(nn.Module):
    def __init__(
        self,
        channels: tuple[int, int] = (32, 64),
        hidden: int = 128,
        dropout: float = 0.3,
        batch_norm: bool = True,
        num_classes: int = NUM_CLASSES,
        in_channels: int = 1,
        norm_mean: float = FASHION_MNIST_MEAN,
        norm_std: float = FASHION_MNIST_STD,
    ) -> None:
        super().__init__()
        c1, c2 = channels
        self.normalize = Normalize(norm_mean, norm_std)
        self.features = nn.Sequential(
            _conv_block(in_channels, c1, batch_norm),
            _conv_block(c1, c1, batch_norm),
            nn.MaxPool2d(2),  # 14x14
            _conv_block(c1, c2, batch_norm),
            _conv_block(c2, c2, batch_norm),
            nn.MaxPool2d(2),  # 7x7
            # Larger inputs (catalog models) pool down to the same 7x7; a no-op at 28x28, and
            # parameter-free, so Fashion-MNIST checkpoints keep their keys.
            nn.AdaptiveAvgPool2d(7),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c2 * 7 * 7, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))


@register_model("baseline_cnn")
def baseline_cnn(channels: tuple[int, int] | list[int] = (32, 64), **params: Any) -> nn.Module:
    """See :class:`BaselineCNN`; ``channels`` may be a YAML list."""
    c1, c2 = channels
    return BaselineCNN((c1, c2), **params)
