"""The proxy: client connections accepted and limited, each request read, decided and
forwarded to dockerd's socket, and the answer (or a raw attach stream) relayed back."""
import asyncio
import contextlib
import json
import re
import socket
import ssl
import sys

from .decision import PHRASE, Decision
from .framing import BadRequest, HeadTooLarge, Reader, body_framing, chunks, parse_request_head
from .limits import (
    BODY_IDLE,
    BUFSIZE,
    HANDSHAKE_TIMEOUT,
    HEAD_TIMEOUT,
    KEEPALIVE_IDLE,
    MAX_BODY,
    MAX_CONNECTIONS,
    MAX_HEAD,
    MAX_PER_ADDRESS,
)
from .policy import decide, wants_stream
from .tls import TLSConnection


def log(line: str) -> None:
    print(f"whale-gate: {line}", file=sys.stderr, flush=True)


def shown_path(path: str) -> str:
    path = path if len(path) <= 120 else path[:117] + "..."
    return path.encode("unicode_escape").decode("ascii")


def response_bytes(status: int, message: str, close: bool, head_only: bool = False) -> bytes:
    """An answer of the gate's own. To a HEAD request it has no body (one would be read as
    the start of the next answer on the same connection)."""
    body = json.dumps({"message": message}).encode()
    reason = {400: "Bad Request", 403: "Forbidden", 413: "Payload Too Large",
              431: "Request Header Fields Too Large", 501: "Not Implemented",
              502: "Bad Gateway"}.get(status, "Error")
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n")
    return head.encode() + (b"" if head_only else body)


HOP_HEADERS = {"connection", "keep-alive", "proxy-connection"}


class Gate:
    def __init__(self, socket_path: str, context: ssl.SSLContext):
        self.socket_path = socket_path
        self.context = context

    async def serve(self, host: str, port: int) -> None:
        listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(128)
        listener.setblocking(False)
        loop = asyncio.get_running_loop()
        tasks = set()
        per_address: dict[str, int] = {}
        while True:
            try:
                sock, peer = await loop.sock_accept(listener)
            except OSError as exc:  # out of file descriptors, say: keep serving
                log(f"accept failed: {exc}")
                await asyncio.sleep(0.1)
                continue
            address = peer[0] if isinstance(peer, tuple) else ""
            if len(tasks) >= MAX_CONNECTIONS or per_address.get(address, 0) >= MAX_PER_ADDRESS:
                # Anyone can open TCP connections (a certificate is checked only in the
                # handshake): beyond this many, new ones are closed, so they cannot eat
                # the engine's memory.
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = asyncio.create_task(self.connection(sock))
            tasks.add(task)
            per_address[address] = per_address.get(address, 0) + 1

            def done(_task, address=address):
                per_address[address] -= 1
                if not per_address[address]:
                    del per_address[address]
            task.add_done_callback(done)
            task.add_done_callback(tasks.discard)

    async def connection(self, sock: socket.socket) -> None:
        client = TLSConnection(sock, self.context)
        try:
            try:
                await asyncio.wait_for(client.handshake(), HANDSHAKE_TIMEOUT)
            except (ssl.SSLError, ConnectionError, OSError, asyncio.TimeoutError):
                return
            reader = Reader(client.recv)
            while await self.exchange(client, reader):
                pass
        except (ConnectionError, OSError, ssl.SSLError, asyncio.TimeoutError, HeadTooLarge, BadRequest):
            pass
        except Exception as exc:  # a bug: keep serving others
            log(f"error: {type(exc).__name__}: {exc}")
        finally:
            await client.close()

    async def exchange(self, client: TLSConnection, reader: Reader) -> bool:
        """One request and its response; whether the connection stays open."""
        try:
            # An idle connection waits a while for its next request; once one begins, its
            # head must come whole soon (slow heads held open could lock others out).
            reader.idle = None
            if not reader.buf and not await asyncio.wait_for(reader.fill(), KEEPALIVE_IDLE):
                return False
            head = await asyncio.wait_for(reader.read_until(b"\r\n\r\n", MAX_HEAD), HEAD_TIMEOUT)
        except HeadTooLarge:
            client.linger = True
            await client.send(response_bytes(431, f"whale: a request head over 64 KiB {PHRASE}: "
                                                  "requests are far smaller.", True))
            return False
        if head is None:
            return False
        method = "?"
        target = ""
        try:
            method, target, headers = parse_request_head(head)
            framing, length = body_framing(headers)
        except BadRequest as exc:
            log(f"refused {method} {shown_path(target)}: {exc.message}")
            client.linger = True
            await client.send(response_bytes(exc.status, exc.message, True))
            return False
        path, _, query = target.partition("?")
        reader.idle = BODY_IDLE  # for this request's body; a hijacked stream waits forever
        has_body = framing == "chunked" or (framing == "length" and length > 0)
        expect = any(k == "expect" and v.lower() == "100-continue" for k, v in headers)
        stream = has_body and wants_stream(method, path)
        body = None
        if has_body and not stream:
            if framing == "length" and length > MAX_BODY:
                decision = decide(method, path, query, headers, b" " * (MAX_BODY + 1))
                return await self.refuse(client, method, path, decision, close=True)
            if expect:
                await client.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            try:
                body = await self.read_body(reader, framing, length)
            except OverflowError:
                decision = decide(method, path, query, headers, b" " * (MAX_BODY + 1))
                return await self.refuse(client, method, path, decision, close=True)
            except BadRequest as exc:
                log(f"refused {method} {shown_path(path)}: {exc.message}")
                client.linger = True
                await client.send(response_bytes(exc.status, exc.message, True))
                return False
        # In a thread: a decision may look a network up on dockerd, which must not hold
        # up every other connection while it answers.
        decision = await asyncio.to_thread(decide, method, path, query, headers, body)
        if not decision.allowed:
            return await self.refuse(client, method, path, decision, close=stream)
        if stream and expect:
            await client.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        return await self.forward(client, reader, decision, framing if stream else None, length)

    async def read_body(self, reader: Reader, framing: str | None, length: int) -> bytes:
        if framing == "length":
            return await reader.read_exactly(length)
        data = bytearray()
        async for piece in chunks(reader):
            data += piece
            if len(data) > MAX_BODY:
                raise OverflowError()
        return bytes(data)

    async def refuse(self, client, method, path, decision: Decision, close: bool) -> bool:
        log(f"refused {method} {shown_path(path)}: {decision.message}")
        client.linger = client.linger or close
        await client.send(response_bytes(decision.status, decision.message, close,
                                         head_only=method == "HEAD"))
        return not close

    async def forward(self, client: TLSConnection, reader: Reader, decision: Decision,
                      framing: str | None, length: int) -> bool:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
        except OSError:
            message = "whale: the engine is not answering yet (it may be starting); try again in a moment."
            await client.send(response_bytes(502, message, framing is not None,
                                             head_only=decision.method == "HEAD"))
            return framing is None
        upstream = Reader(lambda: up_reader.read(BUFSIZE))
        body_task = None
        try:
            if decision.stream and framing == "chunked":
                up_writer.write(decision.request_head([("Transfer-Encoding", "chunked")]))
                body_task = asyncio.create_task(self.send_chunked(reader, up_writer))
            elif decision.stream and framing == "length":
                up_writer.write(decision.request_head([("Content-Length", str(length))]))
                body_task = asyncio.create_task(self.send_length(reader, up_writer, length))
            else:
                up_writer.write(decision.request_head() + (decision.body or b""))
                await up_writer.drain()
            keep = await self.relay_response(client, reader, decision, upstream, up_writer)
            if body_task is not None:
                if not body_task.done():
                    body_task.cancel()
                    keep = False
                elif body_task.cancelled() or body_task.exception() is not None:
                    keep = False
            return keep
        finally:
            if body_task is not None and not body_task.done():
                body_task.cancel()
            up_writer.close()

    async def send_chunked(self, reader: Reader, writer: asyncio.StreamWriter) -> None:
        async for piece in chunks(reader):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def send_length(self, reader: Reader, writer: asyncio.StreamWriter, length: int) -> None:
        while length:
            piece = await reader.read_some(min(length, BUFSIZE))
            if not piece:
                raise ConnectionError("the request body ended early")
            length -= len(piece)
            writer.write(piece)
            await writer.drain()

    async def relay_response(self, client: TLSConnection, reader: Reader, decision: Decision,
                             upstream: Reader, up_writer: asyncio.StreamWriter) -> bool:
        head = await upstream.read_until(b"\r\n\r\n", MAX_HEAD)
        if head is None:
            await client.send(response_bytes(502, "whale: the engine closed the connection.", True))
            return False
        lines = head.decode("latin-1")[:-4].split("\r\n")
        status_line, headers = lines[0], []
        m = re.match(r"HTTP/1\.[01] (\d{3})", status_line)
        if not m:
            await client.send(response_bytes(502, "whale: the engine sent an unreadable answer.", True))
            return False
        status = int(m.group(1))
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name, value.strip()))
        names = {n.lower(): v for n, v in headers}
        chunked = names.get("transfer-encoding", "").lower() == "chunked"
        length = names.get("content-length")
        no_body = decision.method == "HEAD" or status in (204, 304) or 100 <= status < 200
        raw_stream = decision.hijack and (status == 101 or (status == 200 and not chunked and length is None))
        to_eof = not no_body and not chunked and length is None
        if raw_stream:
            await client.send(head)
            await self.pump(client, reader, upstream, up_writer)
            return False
        close = to_eof
        out = [status_line] + [f"{n}: {v}" for n, v in headers if n.lower() not in HOP_HEADERS]
        if close:
            out.append("Connection: close")
        await client.send(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
        if no_body:
            return True
        if chunked:
            async for piece in self.copy_chunked(upstream):
                await client.send(piece)
        elif length is not None:
            remaining = int(length)
            while remaining:
                piece = await upstream.read_some(min(remaining, BUFSIZE))
                if not piece:
                    raise ConnectionError("the engine's answer ended early")
                remaining -= len(piece)
                await client.send(piece)
        else:
            while True:
                piece = await upstream.read_some()
                if not piece:
                    break
                await client.send(piece)
        return not close

    async def copy_chunked(self, upstream: Reader):
        """A chunked response, passed on as it comes, framing and all."""
        while True:
            line = await upstream.read_until(b"\r\n", 4096)
            if line is None:
                raise ConnectionError("the engine's answer ended early")
            size = int(line[:-2].split(b";")[0].strip() or b"0", 16)
            if size == 0:
                rest = bytearray(line)
                while True:
                    trailer = await upstream.read_until(b"\r\n", 4096)
                    if trailer is None:
                        raise ConnectionError("the engine's answer ended early")
                    rest += trailer
                    if trailer == b"\r\n":
                        break
                yield bytes(rest)
                return
            yield line
            remaining = size + 2
            while remaining:
                piece = await upstream.read_some(min(remaining, BUFSIZE))
                if not piece:
                    raise ConnectionError("the engine's answer ended early")
                remaining -= len(piece)
                yield piece

    async def pump(self, client: TLSConnection, reader: Reader, upstream: Reader,
                   up_writer: asyncio.StreamWriter) -> None:
        """A hijacked connection: bytes both ways. When the client shuts down its write side
        (stdin ended), so does the gate towards dockerd, and output keeps flowing until
        dockerd ends the stream."""
        reader.idle = None  # an attached terminal may wait for its learner for hours

        async def to_engine():
            while True:
                data = await reader.read_some()
                if not data:
                    break
                up_writer.write(data)
                await up_writer.drain()
            if up_writer.can_write_eof():
                up_writer.write_eof()

        async def to_client():
            while True:
                data = await upstream.read_some()
                if not data:
                    return
                await client.send(data)

        inbound = asyncio.create_task(to_engine())
        try:
            await to_client()
        finally:
            if not inbound.done():
                inbound.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await inbound
