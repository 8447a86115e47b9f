"""Refusals and decisions: what the checks raise, what decide() returns, and the words of
a refusal ("whale: <what> is not allowed on this classroom engine: <why>.")."""
import json
from dataclasses import dataclass, field

PHRASE = "is not allowed on this classroom engine"
REACH = "it would let a container reach past your engine to the machine it runs on"
READ_DIFFERENTLY = "the engine could read it differently from this check"


class Refused(Exception):
    """Raised by the checks; decide() turns it into a refusing Decision."""

    def __init__(self, what: str, why: str = REACH, status: int = 403):
        super().__init__(what)
        self.what, self.why, self.status = what, why, status

    @property
    def message(self) -> str:
        return f"whale: {self.what} {PHRASE}: {self.why}."


@dataclass
class Decision:
    """What decide() made of a request: a refusal (status and message), or the canonical
    request to forward to dockerd."""

    status: int = 0                  # 0: allowed; else the HTTP status of the refusal
    message: str = ""
    method: str = ""
    path: str = ""                   # canonical path, with the /v1.NN prefix if one was given
    query: str = ""                  # canonical query string, without "?"
    headers: list = field(default_factory=list)   # [(name, value)] to forward, framing excluded
    body: bytes | None = None        # the canonical body (re-serialised JSON), if any
    stream: bool = False             # the client's body (a tar stream) is passed through
    hijack: bool = False             # attach / exec start: the connection may become a raw stream
    route: str = ""                  # the endpoint, e.g. "POST /containers/{id}/start"

    @property
    def allowed(self) -> bool:
        return self.status == 0

    @property
    def target(self) -> str:
        return self.path + ("?" + self.query if self.query else "")

    def request_head(self, framing: list[tuple[str, str]] | None = None) -> bytes:
        """The request line and headers to send to dockerd; framing headers (Content-Length
        or Transfer-Encoding) are the caller's, else derived from the canonical body."""
        if framing is None:
            framing = []
            if self.body is not None:
                framing = [("Content-Length", str(len(self.body)))]
            elif self.method in ("POST", "PUT"):
                framing = [("Content-Length", "0")]
        lines = [f"{self.method} {self.target} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in self.headers + framing]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def refusal(exc: Refused, route: str = "") -> Decision:
    return Decision(status=exc.status, message=exc.message, route=route)


def _q(s) -> str:
    """A short, printable, quoted rendering of something a learner sent."""
    s = str(s)
    if len(s) > 60:
        s = s[:57] + "..."
    return json.dumps(s)
