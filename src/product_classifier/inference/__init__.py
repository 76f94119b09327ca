"""ONNX Runtime inference: model loading and verification, prediction, micro-batching.

Nothing is imported here on purpose: importing the package must stay free of onnxruntime so
that CLI ``--help`` stays instant. Import the submodules (``predictor``, ``model_card``,
``batcher``) directly.
"""
