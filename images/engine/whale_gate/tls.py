"""TLS over a plain socket, with half-close (asyncio's SSL transport closes the whole
connection when the peer shuts down its write side; `docker run -i` does just that)."""
import asyncio
import contextlib
import os
import socket
import ssl

from .limits import BUFSIZE


class TLSConnection:
    def __init__(self, sock: socket.socket, context: ssl.SSLContext):
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.lock = asyncio.Lock()
        self.read_closed = False
        self.linger = False  # an answer was sent before the request was read to its end

    async def handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self.flush()
                data = await self.loop.sock_recv(self.sock, BUFSIZE)
                if not data:
                    raise ConnectionError("closed during the TLS handshake") from None
                self.incoming.write(data)
            except ssl.SSLError:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.flush(), 1)  # the alert tells the client why
                raise
        await self.flush()

    async def flush(self) -> None:
        async with self.lock:
            data = self.outgoing.read()
            if data:
                await self.loop.sock_sendall(self.sock, data)

    async def recv(self) -> bytes:
        while not self.read_closed:
            try:
                data = self.tls.read(BUFSIZE)
                if self.outgoing.pending:
                    await self.flush()
                if data:
                    return data
                self.read_closed = True
            except ssl.SSLWantReadError:
                if self.outgoing.pending:
                    await self.flush()
                data = await self.loop.sock_recv(self.sock, BUFSIZE)
                if data:
                    self.incoming.write(data)
                else:
                    self.read_closed = True  # the peer shut down its write side
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self.read_closed = True  # close_notify
        return b""

    async def send(self, data: bytes) -> None:
        async with self.lock:
            self.tls.write(data)
            out = self.outgoing.read()
            if out:
                await self.loop.sock_sendall(self.sock, out)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            with contextlib.suppress(ssl.SSLError):
                self.tls.unwrap()
            await asyncio.wait_for(self.flush(), 2)
        if self.linger and not self.read_closed:
            # The client may still be sending what was refused: read and drop it for a
            # moment, so that it gets the answer rather than a connection reset.
            try:
                self.sock.shutdown(socket.SHUT_WR)
                deadline = self.loop.time() + 2
                while self.loop.time() < deadline:
                    data = await asyncio.wait_for(self.loop.sock_recv(self.sock, BUFSIZE),
                                                  deadline - self.loop.time())
                    if not data:
                        break
            except (OSError, asyncio.TimeoutError):
                pass
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def tls_context(tls_dir: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(os.path.join(tls_dir, "server-cert.pem"), os.path.join(tls_dir, "server-key.pem"))
    context.load_verify_locations(os.path.join(tls_dir, "ca.pem"))
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["http/1.1"])
    return context
