"""Model architectures, created by name: ``create_model(name, **params)``."""

from product_classifier.models.registry import count_parameters, create_model, list_models

__all__ = ["count_parameters", "create_model", "list_models"]
