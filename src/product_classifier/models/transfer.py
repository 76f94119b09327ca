"""Transfer learning: start a catalog model from pretrained weights instead of from scratch.

Two ways in, both through the config's ``model.pretrained``:

- **A weights file** for any architecture: a state dict (``.pt``/``.pth``), a ``.safetensors``
  file, one of this project's checkpoints, or an exported ``.onnx`` file of this project (its
  batch norms are folded into the convolutions, so it fits a ``batch_norm: false`` twin:
  this is how a released model is fine-tuned when only its ONNX file is at hand; a
  ``batch_norm: true`` model gets its batch norms back, see :func:`reinflate_batch_norm`). Tensors
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

import numpy as np
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
    # Folded conv biases whose conv has a batch norm here (ONNX file -> batch_norm: true):
    # conv module name -> bias, for reinflate_batch_norm.
    folded: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

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
            "reinflated_batch_norms": len(self.folded),
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
    the normalisation buffers). An INT8 (QDQ) file gives its dequantised weights: the released
    cascade's first stage exists only in that form."""
    import onnx
    from onnx import numpy_helper

    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and friends
        raise PretrainedError(f"{path}: not a readable ONNX file ({exc})") from exc
    arrays = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    for node in proto.graph.node:  # QDQ: (q - zero_point) * scale, per tensor or per channel
        if node.op_type == "DequantizeLinear" and node.input[0] in arrays:
            q = arrays[node.input[0]].astype(np.float32)
            scale = arrays[node.input[1]].astype(np.float32)
            zero = arrays[node.input[2]].astype(np.float32) if len(node.input) > 2 else 0.0
            if scale.ndim == 1 and q.ndim > 1:  # per output channel (axis 0)
                shape = (-1,) + (1,) * (q.ndim - 1)
                scale, zero = (
                    scale.reshape(shape),
                    np.reshape(zero, shape) if np.ndim(zero) else zero,
                )
            arrays[node.output[0]] = (q - zero) * scale
    state: dict[str, torch.Tensor] = {}
    for name, array in arrays.items():
        key = name.removesuffix("_DequantizeLinear_Output")
        if key.startswith("model.") and not key.endswith(("_quantized", "_scale", "_zero_point")):
            state[key.removeprefix("model.")] = torch.from_numpy(np.array(array, copy=True))
    for node in proto.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in arrays:
            continue
        # The node's own name keeps the module path; a quantised graph renames its outputs
        # (a Conv fused with its ReLU outputs ".../relu/Relu_output_0").
        module = _module_name(node.name if node.name.endswith("/Conv") else node.output[0])
        state[f"{module}.weight"] = torch.from_numpy(np.array(arrays[node.input[1]], copy=True))
        if len(node.input) > 2 and node.input[2] in arrays:
            state[f"{module}.bias"] = torch.from_numpy(np.array(arrays[node.input[2]], copy=True))
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
    followers = _conv_batch_norms(model)
    for name, tensor in weights.items():
        target = own.get(name)
        module = name.removesuffix(".bias")
        if target is None and name.endswith(".bias") and module in followers:
            report.folded[module] = tensor.detach().clone()
            report.loaded.append(name)
            continue
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


def _conv_batch_norms(model: nn.Module) -> dict[str, str]:
    """Bias-free convs and the batch norm that follows each (the next BatchNorm2d registered
    after it: conv1 -> bn1, stem.0 -> stem.1, shortcut.0 -> shortcut.1)."""
    pairs: dict[str, str] = {}
    pending: str | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            pending = name if module.bias is None else None
        elif isinstance(module, nn.BatchNorm2d) and pending is not None:
            pairs[pending] = name
            pending = None
    return pairs


@torch.no_grad()
def reinflate_batch_norm(
    model: nn.Module, report: TransferReport, calibration: torch.Tensor, batch_size: int = 512
) -> None:
    """Give a BN model loaded from folded (BN-free) weights its batch norms back, exactly.

    An exported ONNX file holds each conv with its batch norm folded in (weight and bias).
    Fine-tuning that as a ``batch_norm: false`` twin loses what made the original train well
    (measured: Fashion-MNIST validation fell from 95.5% to 94.1% in 4 epochs). So each batch
    norm is set to compute ``y + b``: its running statistics are the conv output's mean and
    variance on ``calibration`` images, its scale their standard deviation and its shift the
    mean plus the folded bias. In eval mode the net computes exactly the released function; in
    train mode, batch statistics are close to those, so training starts where the release was.
    """
    if not report.folded:
        return
    pairs = _conv_batch_norms(model)
    modules = dict(model.named_modules())
    norms = {pairs[conv]: conv for conv in report.folded}
    for bn_name in norms:  # identity first: y -> y, so each layer's input is the released one
        bn = modules[bn_name]
        assert isinstance(bn, nn.BatchNorm2d)
        assert bn.running_mean is not None and bn.running_var is not None
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
        bn.weight.fill_(1.0)
        bn.bias.copy_(report.folded[norms[bn_name]])
    sums: dict[str, list[torch.Tensor]] = {name: [] for name in norms}

    def hook(name: str) -> Any:
        def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0].double()
            sums[name].append(torch.stack([x.mean((0, 2, 3)), (x * x).mean((0, 2, 3))]))

        return record

    handles = [modules[name].register_forward_pre_hook(hook(name)) for name in norms]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(calibration), batch_size):
            model(calibration[start : start + batch_size])
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    for bn_name, conv in norms.items():
        bn = modules[bn_name]
        assert isinstance(bn, nn.BatchNorm2d)
        assert bn.running_mean is not None and bn.running_var is not None
        mean, square = torch.stack(sums[bn_name]).mean(0)
        var = (square - mean * mean).clamp_min(1e-8)
        bn.running_mean.copy_(mean.float())
        bn.running_var.copy_(var.float())
        bn.weight.copy_((var + bn.eps).sqrt().float())
        bn.bias.copy_(mean.float() + report.folded[conv])
    logger.info("re-inflated %d batch norms from folded weights", len(norms))
