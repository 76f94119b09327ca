"""The ``product-classifier`` command line; each stage registers commands from its own module."""
