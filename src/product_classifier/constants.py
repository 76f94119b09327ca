"""Facts that every stage shares. Changing any of these breaks the ONNX contract."""

from __future__ import annotations

# Fashion-MNIST label order: index == class_id in the dataset and in the model's logits.
CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SIZE = 28

# ONNX I/O contract (see docs/model_contract in README): float32 [N,1,28,28] in [0,1],
# bright item on dark background; logits float32 [N,10].
ONNX_INPUT_NAME = "image"
ONNX_OUTPUT_NAME = "logits"
