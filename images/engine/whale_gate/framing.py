"""HTTP/1.1 framing: a request's head and body read one way only, over buffered reads."""
import asyncio
import re

from .decision import PHRASE
from .limits import BUFSIZE


class BadRequest(Exception):
    """A request that cannot be framed; answered with 400 and the connection closed."""

    def __init__(self, what: str, status: int = 400):
        super().__init__(what)
        self.status = status
        self.message = f"whale: {what} {PHRASE}: the request could not be read one way only."


TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
REQUEST_LINE = re.compile(r"([A-Z]{1,16}) (\S{1,8192}) HTTP/1\.1\Z")


def parse_request_head(raw: bytes) -> tuple[str, str, list[tuple[str, str]]]:
    text = raw.decode("latin-1")
    if not text.endswith("\r\n\r\n"):
        raise BadRequest("a request head that does not end with CRLF CRLF")
    lines = text[:-4].split("\r\n")
    m = REQUEST_LINE.match(lines[0])
    if not m:
        raise BadRequest("a malformed request line (HTTP/1.1 only)")
    method, target = m.group(1), m.group(2)
    if not all(33 <= ord(c) < 127 for c in target):
        raise BadRequest("a request target with characters outside ASCII")
    headers = []
    for line in lines[1:]:
        if not line:
            raise BadRequest("an empty header line")
        if line[0] in " \t":
            raise BadRequest("a folded header line (obs-fold)")
        name, sep, value = line.partition(":")
        if not sep or not TOKEN.match(name):
            raise BadRequest("a malformed header line")
        value = value.strip(" \t")
        if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value):
            raise BadRequest(f"a control character in the {name} header")
        headers.append((name.lower(), value))
    return method, target, headers


def body_framing(headers: list[tuple[str, str]]) -> tuple[str | None, int]:
    """("length", n), ("chunked", 0) or (None, 0)."""
    lengths = [v for k, v in headers if k == "content-length"]
    codings = [v for k, v in headers if k == "transfer-encoding"]
    if len(lengths) > 1:
        raise BadRequest("a repeated Content-Length header")
    if lengths and codings:
        raise BadRequest("Content-Length together with Transfer-Encoding")
    if len(codings) > 1 or (codings and codings[0].lower() != "chunked"):
        raise BadRequest("a Transfer-Encoding other than chunked", 501)
    if codings:
        return "chunked", 0
    if lengths:
        if not re.fullmatch(r"[0-9]{1,15}", lengths[0]):
            raise BadRequest("a malformed Content-Length")
        return "length", int(lengths[0])
    return None, 0


class HeadTooLarge(Exception):
    pass


class Reader:
    """Buffered reads over a coroutine that returns bytes (b"" at end of stream)."""

    def __init__(self, recv):
        self._recv = recv
        self.buf = bytearray()
        self.eof = False
        self.idle: float | None = None  # seconds a read may wait (None: as long as it takes)

    async def fill(self) -> bool:
        if self.eof:
            return False
        data = await (asyncio.wait_for(self._recv(), self.idle) if self.idle else self._recv())
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    async def read_until(self, sep: bytes, limit: int) -> bytes | None:
        """Up to and including sep; None at a clean end of stream before any byte."""
        start = 0
        while True:
            i = self.buf.find(sep, max(0, start - len(sep) + 1))
            if i >= 0:
                if i + len(sep) > limit:
                    raise HeadTooLarge()
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            if len(self.buf) > limit:
                raise HeadTooLarge()
            start = len(self.buf)
            if not await self.fill():
                if not self.buf:
                    return None
                raise ConnectionError("the stream ended inside a message")

    async def read_some(self, n: int = BUFSIZE) -> bytes:
        if not self.buf and not await self.fill():
            return b""
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not await self.fill():
                raise ConnectionError("the stream ended inside a message")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


async def chunks(reader: Reader, strict: bool = True):
    """The data of a chunked body, piece by piece; strict framing (no extensions or trailers)."""
    while True:
        line = await reader.read_until(b"\r\n", 1024)
        if line is None:
            raise BadRequest("a chunked body that ends early")
        size_text = line[:-2].decode("latin-1")
        if not strict:
            size_text = size_text.split(";")[0].strip()
        if not re.fullmatch(r"[0-9A-Fa-f]{1,15}", size_text):
            raise BadRequest("a malformed chunk size")
        size = int(size_text, 16)
        if size == 0:
            trailer = await reader.read_until(b"\r\n", 1024)
            if trailer != b"\r\n":
                raise BadRequest("chunk trailers")
            return
        while size:
            piece = await reader.read_some(min(size, BUFSIZE))
            if not piece:
                raise BadRequest("a chunked body that ends early")
            size -= len(piece)
            yield piece
        if await reader.read_exactly(2) != b"\r\n":
            raise BadRequest("a chunk not followed by CRLF")
