"""PyTorch -> ONNX with the project's contract (see constants.py and the README).

Input ``image`` float32 [N, C, S, S] in [0,1] as the model's input spec says (Fashion-MNIST:
[N,1,28,28]); output ``logits`` float32 [N, classes]; dynamic batch axis; normalisation and
optional flip-TTA inside the graph; class names, input spec and model version in the metadata
so the service needs nothing but the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from product_classifier.constants import CLASS_NAMES, ONNX_INPUT_NAME, ONNX_OUTPUT_NAME
from product_classifier.preprocessing import FASHION_MNIST_SPEC, INPUT_SPEC_KEY, InputSpec

OPSET = 17


class ExportWrapper(nn.Module):
    """Adds horizontal-flip test-time augmentation: mean of logits for x and its mirror.

    Fashion-MNIST items are left/right symmetric enough that training flips them, so the mirror
    is an equally valid view; averaging both costs 2x compute for a free accuracy gain.
    """

    def __init__(self, model: nn.Module, tta_flip: bool) -> None:
        super().__init__()
        self.model = model
        self.tta_flip = tta_flip

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.model(image)
        if self.tta_flip:
            logits = 0.5 * (logits + self.model(torch.flip(image, dims=[3])))
        return logits


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    model_version: str,
    tta_flip: bool = False,
    class_names: tuple[str, ...] | list[str] = CLASS_NAMES,
    spec: InputSpec = FASHION_MNIST_SPEC,
    extra_metadata: dict[str, str] | None = None,
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(model.eval().float().cpu(), tta_flip).eval()
    dummy = torch.rand(2, *spec.item_shape)
    tmp = path.with_suffix(".tmp.onnx")
    # The TorchScript exporter gives a compact, fully-static graph apart from the batch axis,
    # which onnxruntime's optimiser and quantiser handle best.
    torch.onnx.export(
        wrapper,
        (dummy,),
        str(tmp),
        input_names=[ONNX_INPUT_NAME],
        output_names=[ONNX_OUTPUT_NAME],
        dynamic_axes={ONNX_INPUT_NAME: {0: "batch"}, ONNX_OUTPUT_NAME: {0: "batch"}},
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )
    proto = onnx.load(str(tmp))
    metadata = {
        "class_names": json.dumps(list(class_names)),
        "model_version": model_version,
        "input_contract": input_contract(spec),
        "tta_flip": json.dumps(tta_flip),
        **(extra_metadata or {}),
    }
    if spec != FASHION_MNIST_SPEC:
        # Only catalog models carry the key: a Fashion-MNIST file stays byte-for-byte what
        # today's exporter writes, and one without the key is read as Fashion-MNIST.
        metadata[INPUT_SPEC_KEY] = spec.to_json()
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "product-classifier"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    tmp.unlink(missing_ok=True)
    return path


def input_contract(spec: InputSpec) -> str:
    """The input, in words, for the metadata and the model card."""
    if spec == FASHION_MNIST_SPEC:
        return "float32 [N,1,28,28] in [0,1], bright item on dark background"
    colour = "RGB" if spec.channels == 3 else "grey"
    return (
        f"float32 [N,{spec.channels},{spec.size},{spec.size}] in [0,1], {colour}, the item "
        "letterboxed on a white page"
    )


def max_abs_difference(model: nn.Module, onnx_path: str | Path, images: np.ndarray) -> float:
    """Largest |torch - onnxruntime| logit difference on ``images`` (float32 [N,C,S,S])."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_logits = session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: images})[0]
    tta = json.loads(session.get_modelmeta().custom_metadata_map.get("tta_flip", "false"))
    with torch.no_grad():
        torch_logits = ExportWrapper(model.eval(), tta)(torch.from_numpy(images)).numpy()
    return float(np.abs(onnx_logits - torch_logits).max())
