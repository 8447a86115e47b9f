"""A trivial engine provider, in one file: every learner gets the class's one shared
engine, whose bundle directory the site names in $WHALE_STATIC_BUNDLE.

It shows what adding a provider takes: this file, and in the hub's configuration
    c.WhaleSpawner.provider_classes = {"static": "static_provider.StaticProvider"}
    c.WhaleSpawner.provider = "static"
(test_spawner.py and test_hub.py use it so).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from whale_core.bundle import CredentialBundle, read_bundle_dir, write_bundle_dir
from whale_core.names import learner_slug
from whale_hub.providers import EngineProvider
from whale_hub.providers.base import give_to


class StaticProvider(EngineProvider):
    name = "static"
    description = "The class's shared Docker engine"
    preparing = "Connecting you to the class's engine"

    def prepare(self) -> Path:
        source = Path(os.environ["WHALE_STATIC_BUNDLE"])
        target = Path(self.spawner.state_dir) / "static" / learner_slug(self.spawner.user.name) / "bundle"
        shutil.rmtree(target, ignore_errors=True)
        write_bundle_dir(target, read_bundle_dir(source, shown=source))
        CredentialBundle.load(target)
        give_to(target, self.spawner.learner_uid)
        return target

    def release(self, remove: bool) -> None:
        shutil.rmtree(Path(self.spawner.state_dir) / "static" / learner_slug(self.spawner.user.name),
                      ignore_errors=True)
