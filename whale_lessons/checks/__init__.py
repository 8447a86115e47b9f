"""The lessons' checks, one module per lesson (`lessonNN.py`). Importing this package
imports every one of them, in curriculum order, so that their `@check`s register in
`whale_lessons.exercises.CHECKS`: a new lesson's module needs no line here."""
from __future__ import annotations

import importlib
import pkgutil

for _module in sorted(info.name for info in pkgutil.iter_modules(__path__)):
    if _module.startswith("lesson"):
        importlib.import_module(f"{__name__}.{_module}")
