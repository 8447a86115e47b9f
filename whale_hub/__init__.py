"""The JupyterHub side of How to Whale: per-learner engines, images, the `whale` command."""
