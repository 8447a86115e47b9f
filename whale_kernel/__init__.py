"""The "docker" Jupyter kernel: bash wired to the learner's own Docker engine."""

from whale_core import __version__

__all__ = ["__version__"]

#: Set to 1 (the single-user image does) for docker kernels forked from the notebook
#: server (whale_kernel.provisioner).
FORK_SETTING = "WHALE_FORK_KERNELS"
