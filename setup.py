"""A shim for tools that still call setup.py: the build is pyproject.toml's (hatchling)."""
__import__("setuptools").setup()
