"""`byoc` (bring your own compute): the learner uploads a Carina-style bundle or a
`docker context export` archive on the spawn form. It is checked offline on the form,
kept encrypted (in user_options, with the hub's crypt key), written to disk only while
the learner's server runs, and pinged before the server starts."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from whale_core.archives import read_archive
from whale_core.bundle import CredentialBundle, write_bundle_dir
from whale_core.errors import BundleError
from whale_core.layout import RUNTIME_DIR, learner_runtime_dir, read_owner, write_owner
from whale_core.names import learner_slug

from .base import EngineProvider, dir_owner, give_to


class ByocProvider(EngineProvider):
    """The learner's own engine, from a bundle uploaded on the spawn form."""

    name = "byoc"
    description = "My own Docker engine (upload its credentials below)"
    accepts_upload = True
    preparing = "Checking your Docker engine"

    def __init__(self, spawner):
        super().__init__(spawner)
        self.slug = learner_slug(spawner.user.name)

    @property
    def runtime(self) -> Path:
        unit = self.spawner.whale_names.get("runtime") or self.slug
        return learner_runtime_dir(self.spawner.state_dir, unit)

    @classmethod
    def check_upload(cls, upload: bytes) -> None:
        """Everything short of a live ping: the archive, its files, their dates."""
        CredentialBundle.from_files(read_archive(upload))

    @staticmethod
    def validate(archive: bytes, ping_timeout: float) -> CredentialBundle:
        """Check an archive completely, including a live ping (blocking)."""
        files = read_archive(archive)
        CredentialBundle.from_files(files)
        # The SDK reads certificates from files: check the live engine from a private
        # temporary copy, removed right after.
        with tempfile.TemporaryDirectory(prefix="whale-byoc-") as tmp:
            bundle = CredentialBundle.load(write_bundle_dir(Path(tmp) / "bundle", files))
            bundle.ping(timeout=ping_timeout)
        return bundle

    def prepare(self) -> Path:
        """Check the uploaded archive, ping the engine it names, and write the bundle
        where the server's container mounts it (0700, key 0600)."""
        archive = self.spawner.engine_upload
        if not archive:
            raise BundleError("missing-file", "No credentials for your own engine are stored: "
                              "upload them on the spawn form.")
        self.validate(archive, self.spawner.byoc_ping_timeout)
        files = read_archive(archive)
        me = self.me
        self.claim("runtime", self.slug,
                   lambda unit: dir_owner(learner_runtime_dir(self.spawner.state_dir, unit), me),
                   show=lambda unit: f"{RUNTIME_DIR}/{unit}")
        write_owner(self.runtime, me[0])
        target = self.runtime / "bundle"
        shutil.rmtree(target, ignore_errors=True)
        write_bundle_dir(target, files)
        # Checked again: what is mounted must be exactly what was validated.
        CredentialBundle.load(target)
        give_to(target, self.spawner.learner_uid)
        return target

    def release(self, remove: bool) -> None:
        """Remove the bundle from disk (it stays encrypted in the hub's database), if it
        is this learner's."""
        if read_owner(self.runtime) == self.spawner.user.name:
            shutil.rmtree(self.runtime, ignore_errors=True)
