"""The data stage: find, import or download Fashion-MNIST, verify it, load it, split it.

Public API lives in the submodules (``fashion_mnist``, ``split``, ``idx``); nothing is imported
here so that importing one submodule stays cheap.
"""
