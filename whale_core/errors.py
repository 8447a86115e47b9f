"""The one error of credentials handling: a refusal a learner can read and act on.

Every refusal is a `BundleError` whose text is a sentence a learner can act on and whose
`code` a program can branch on. No message, repr or log line built here ever contains
key material."""
from __future__ import annotations


class BundleError(ValueError):
    """A credentials bundle was refused.

    ``str(error)`` is a complete sentence that tells a learner what is wrong and what
    to do; ``code`` is a short machine id (``"expired"``, ``"wrong-ca"``, ...) for
    programs, e.g. to choose an HTTP status or a help link. ``file`` names the bundle
    file at fault when there is one.
    """

    def __init__(self, code: str, message: str, *, file: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.file = file

    def to_dict(self) -> dict:
        """JSON-ready form for API answers."""
        out = {"code": self.code, "message": self.message}
        if self.file:
            out["file"] = self.file
        return out

    def __repr__(self) -> str:
        return f"BundleError({self.code!r}, {self.message!r})"


def missing_file(name: str, where: str = "The bundle", *, ssh: bool = False) -> BundleError:
    if ssh:
        return BundleError("missing-file", f"{where} has no {name}. An SSH endpoint needs "
                           "docker.env (or a docker context), ssh_key (the private key "
                           "the engine machine accepts) and known_hosts (its host key).",
                           file=name)
    return BundleError("missing-file", f"{where} has no {name}. A credentials bundle "
                       "needs all of ca.pem, cert.pem, key.pem and docker.env: download "
                       "it again.", file=name)


def shown_name(name: str, limit: int = 80) -> str:
    """An untrusted archive entry name, safe to put in a message."""
    text = name if len(name) <= limit else name[:limit] + "…"
    return repr(text)
