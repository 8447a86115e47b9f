"""The jupyter_server extension of How to Whale (engine health, credentials, port links).

Importing the package stays cheap (the install helper and Jupyter's extension discovery
do it); the server parts are imported when the server asks for them.
"""
from __future__ import annotations

#: npm name of the status indicator labextension shipped in this package.
LABEXTENSION_NAME = "@howtowhale/whale-indicator"


def _jupyter_server_extension_points():
    from .app import WhaleExtension
    return [{"module": "whale_extension.app", "app": WhaleExtension}]


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": LABEXTENSION_NAME}]
