"""The "docker" Jupyter kernel: bash wired to the learner's own Docker engine."""

from whale_core import __version__

__all__ = ["__version__"]
