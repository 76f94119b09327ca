"""A timm-style model registry: ``create_model("resnet", width=32)``.

Architectures register themselves with ``@register_model``; ``list_models`` must work without
importing torch (config validation uses it), so names are declared here, not discovered.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

# name -> module that defines it; importing the module runs its @register_model.
_MODEL_MODULES: dict[str, str] = {
    "baseline_cnn": "product_classifier.models.cnn",
    "resnet": "product_classifier.models.resnet",
    "efficientnet": "product_classifier.models.efficientnet",
}
_FACTORIES: dict[str, Callable[..., nn.Module]] = {}
# "timm/resnet18": any timm architecture, built by timm.create_model (models/transfer.py).
TIMM_PREFIX = "timm/"


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    if name not in _MODEL_MODULES:
        raise KeyError(f"declare {name!r} in _MODEL_MODULES before registering it")

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _FACTORIES[name] = factory
        return factory

    return decorator


def list_models() -> list[str]:
    return sorted(_MODEL_MODULES)


def create_model(name: str, **params: Any) -> nn.Module:
    """Build a registered architecture. Unknown parameters raise TypeError naming them.

    ``timm/<name>`` builds timm's architecture (randomly initialised; pretrained weights are
    loaded by the trainer through :func:`product_classifier.models.transfer.load_pretrained`).
    """
    if name.startswith(TIMM_PREFIX):
        from product_classifier.models.transfer import create_timm_model

        return create_timm_model(name.removeprefix(TIMM_PREFIX), **params)
    if name not in _MODEL_MODULES:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    if name not in _FACTORIES:
        importlib.import_module(_MODEL_MODULES[name])
    return _FACTORIES[name](**params)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
