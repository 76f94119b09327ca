"""Transfer learning: start a catalog model from pretrained weights instead of from scratch.

Two ways in, both through the config's ``model.pretrained``:

- **A weights file** for any architecture: a state dict (``.pt``/``.pth``), a ``.safetensors``
  file, one of this project's checkpoints, or an exported ``.onnx`` file of this project (its
  batch norms are folded into the convolutions, so it fits a ``batch_norm: false`` twin:
  this is how a released model is fine-tuned when only its ONNX file is at hand). Tensors
  whose name and shape match are loaded; the classifier (a new class list) and anything else
  that differs keep their fresh initialisation, and the counts are reported. A 1-channel stem
  loaded into a 3-channel model is adapted the way timm's ``adapt_input_conv`` does it: the
  grey filter, spread over R, G and B.
- **timm** (``model.name: timm/<arch>``, ``pip install timm``): ``pretrained: true`` uses timm's
  normal download path (its hub); ``pretrained: PATH`` gives timm's loader a local file through
  ``pretrained_cfg_overlay``, so offline machines use the same code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)


class PretrainedError(ValueError):
    """The pretrained weights cannot be used (missing file, nothing matches, no timm)."""


@dataclass
class TransferReport:
    source: str
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)  # stem filters spread over more channels
    skipped: list[str] = field(default_factory=list)  # in the file, but not usable here
    fresh: list[str] = field(default_factory=list)  # in the model, initialised from scratch

    def summary(self) -> str:
        return (
            f"pretrained {self.source}: {len(self.loaded)} tensors loaded, "
            f"{len(self.adapted)} adapted to the input channels, {len(self.skipped)} skipped, "
            f"{len(self.fresh)} new (e.g. the classifier)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "loaded": len(self.loaded),
            "adapted": self.adapted,
            "skipped": self.skipped,
            "fresh": self.fresh,
        }


def _timm() -> Any:
    try:
        import timm
    except ImportError as exc:  # timm needs torchvision, which the CPU wheel set may lack
        raise PretrainedError(
            f"model names 'timm/...' need timm: pip install timm (and its torchvision) ({exc})"
        ) from exc
    return timm


def create_timm_model(
    arch: str,
    *,
    num_classes: int,
    in_channels: int = 1,
    pretrained: bool | str | Path = False,
    **params: Any,
) -> nn.Module:
    """timm's ``create_model``; ``pretrained`` True (download) or a local weights file."""
    timm = _timm()
    params.pop("norm_mean", None)  # timm models normalise outside the net; ours inside
    params.pop("norm_std", None)
    kwargs: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_channels, **params}
    if isinstance(pretrained, str | Path):
        kwargs["pretrained_cfg_overlay"] = {"file": str(pretrained)}
        pretrained = True
    model: nn.Module = timm.create_model(arch, pretrained=bool(pretrained), **kwargs)
    return model


def _module_name(output: str) -> str:
    """TorchScript-exported node output -> module path: ``/model/stages/stages.3/shortcut/
    shortcut.0/Conv_output_0`` -> ``stages.3.shortcut.0`` (each scope repeats its parent's
    last name with the child's index appended)."""
    parts = output.split("/")[2:-1]  # drop "", the wrapper's "model" and the op's output
    names: list[str] = []
    for part in parts:
        if names and part.startswith(names[-1] + "."):
            names[-1] = part.split(".")[-2] + "." + part.split(".")[-1]
        else:
            names.append(part)
    return ".".join(names)


def read_onnx_weights(path: Path) -> dict[str, torch.Tensor]:
    """A BN-free state dict from one of this project's exported ONNX files: every Conv's
    (folded) weight and bias under its module name, plus the named initialisers (the head,
    the normalisation buffers)."""
    import onnx
    from onnx import numpy_helper

    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and friends
        raise PretrainedError(f"{path}: not a readable ONNX file ({exc})") from exc
    arrays = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    state: dict[str, torch.Tensor] = {}
    for name, array in arrays.items():
        if name.startswith("model."):
            state[name.removeprefix("model.")] = torch.from_numpy(array.copy())
    for node in proto.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2:
            continue
        module = _module_name(node.output[0])
        state[f"{module}.weight"] = torch.from_numpy(arrays[node.input[1]].copy())
        if len(node.input) > 2:
            state[f"{module}.bias"] = torch.from_numpy(arrays[node.input[2]].copy())
    if not state:
        raise PretrainedError(f"{path}: no weights found (not exported by this project?)")
    return state


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file, a plain ``torch.save`` state dict, a
    project checkpoint (its EMA weights when it has them) or a project ONNX file."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedError(f"pretrained weights file not found: {path}")
    if path.suffix == ".onnx":
        return read_onnx_weights(path)
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise PretrainedError(f"{path}: reading .safetensors needs `safetensors`") from exc
        return dict(load_file(str(path)))
    # weights_only: a downloaded weights file is data; refuse anything that would run code.
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors come in many types
        raise PretrainedError(
            f"{path}: not a plain weights file ({exc}); give a state dict or .safetensors"
        ) from exc
    if isinstance(raw, dict) and "model_state" in raw:  # one of our checkpoints
        raw = raw.get("ema_state") or raw["model_state"]
    elif isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]  # the Lightning / many-repos layout
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise PretrainedError(f"{path}: expected a mapping of parameter names to tensors")
    return {k.removeprefix("module."): v for k, v in raw.items()}


def _adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor | None:
    """A conv filter bank [out, c, k, k] for ``in_channels``: 1 -> 3 repeats and rescales
    (the sum over channels stays the grey filter), 3 -> 1 sums."""
    have = weight.shape[1]
    if have == 1 and in_channels > 1:
        return weight.repeat(1, in_channels, 1, 1) / in_channels
    if have == 3 and in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    return None


def load_pretrained(model: nn.Module, path: str | Path) -> TransferReport:
    """Load ``path`` into ``model`` where names and shapes match; returns what happened."""
    weights = read_weights(path)
    own = model.state_dict()
    report = TransferReport(source=str(path))
    update: dict[str, torch.Tensor] = {}
    for name, tensor in weights.items():
        target = own.get(name)
        if target is None:
            report.skipped.append(name)
        elif target.shape == tensor.shape:
            update[name] = tensor.to(target.dtype)
            report.loaded.append(name)
        elif tensor.ndim == 4 and target.ndim == 4 and tensor.shape[0] == target.shape[0]:
            adapted = _adapt_input_conv(tensor, target.shape[1])
            if adapted is not None and adapted.shape == target.shape:
                update[name] = adapted.to(target.dtype)
                report.adapted.append(name)
            else:
                report.skipped.append(name)
        else:
            report.skipped.append(name)
    # Normalisation buffers describe the NEW data's pixels, not the pretraining data's; when
    # both are Fashion-MNIST-like (same statistics) they are the same values anyway.
    same_data = all(
        n in own and torch.equal(own[n], weights.get(n, own[n]))
        for n in ("normalize.mean", "normalize.inv_std")
    )
    for name in [n for n in update if n.startswith("normalize.") and not same_data]:
        del update[name]
        if name in report.loaded:
            report.loaded.remove(name)
        report.skipped.append(name)
    weighted = [n for n in update if not n.endswith(("running_mean", "running_var", "batches"))]
    if not weighted:
        raise PretrainedError(
            f"{path}: no tensor matches the model by name and shape; is it for this "
            f"architecture? (file has e.g. {sorted(weights)[:3]}, model {sorted(own)[:3]})"
        )
    model.load_state_dict(update, strict=False)
    report.fresh = [n for n in own if n not in update]
    logger.info(report.summary())
    return report
