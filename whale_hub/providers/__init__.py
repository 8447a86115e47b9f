"""Where a learner's Docker engine comes from: engine providers.

Built in: `sandbox` (a hosted engine per learner, `providers/sandbox.py`) and `byoc`
(the learner's own endpoint, uploaded on the spawn form, `providers/byoc.py`). More come
from the `howtowhale.engine_providers` entry point group and from the spawner's
`provider_classes` setting; `EngineProvider` (`providers/base.py`) is what they implement.
"""
from __future__ import annotations

from importlib.metadata import entry_points

from traitlets.utils.importstring import import_item

from .base import EngineProvider
from .byoc import ByocProvider
from .sandbox import SandboxProvider

ENTRY_POINT_GROUP = "howtowhale.engine_providers"
BUILT_IN = {cls.name: cls for cls in (SandboxProvider, ByocProvider)}


def provider_class(name: str, configured: dict | None = None) -> type[EngineProvider]:
    """The provider class called `name`: from `configured` (name -> class or
    "module.Class"), else an entry point, else a built-in one. LookupError if none."""
    found = (configured or {}).get(name)
    if found is None:
        points = entry_points(group=ENTRY_POINT_GROUP).select(name=name)
        found = next(iter(points)).load() if points else BUILT_IN.get(name)
    if isinstance(found, str):
        found = import_item(found)
    if found is None:
        raise LookupError(f"no engine provider called {name!r}")
    if not (isinstance(found, type) and issubclass(found, EngineProvider)):
        raise TypeError(f"engine provider {name!r} is {found!r}, not an EngineProvider")
    return found


__all__ = ["BUILT_IN", "ENTRY_POINT_GROUP", "ByocProvider", "EngineProvider", "SandboxProvider",
           "provider_class"]
