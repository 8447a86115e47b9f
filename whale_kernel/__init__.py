"""The "docker" Jupyter kernel: bash wired to the learner's own Docker engine."""

__version__ = "0.1.0"
