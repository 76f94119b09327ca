"""The FastAPI service (no torch): settings, app factory, routes, middleware.

Nothing is imported here, so that importing a submodule stays cheap and side-effect free.
Entry point: ``product_classifier.serving.app:create_app`` (an app factory).
"""
