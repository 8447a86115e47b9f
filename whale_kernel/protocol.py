"""A lean Jupyter kernel server: the messaging protocol (5.4) over ZMQ, nothing else.

Why not ipykernel: it imports IPython, which alone costs about a second of kernel
start on these machines, for a kernel that never runs Python code. Message framing,
signing and parsing are jupyter_client's Session; this module only routes requests
to handlers and keeps the protocol's bookkeeping (busy/idle, execute_input, stdin
round trips, aborting queued cells after an error, shutdown, interrupt).

Control requests are answered between cells and, through poll_control(), which the
running cell calls a few times a second, while a cell runs: a notebook server that
shuts a kernel down or interrupts it by message does not wait for `docker logs -f`.
"""
from __future__ import annotations

import json
import signal
import sys
import threading
import uuid
from typing import ClassVar

import zmq
from jupyter_client.session import Session

PROTOCOL_VERSION = "5.4"


class StdinNotAllowed(Exception):
    """The front end did not allow input for this request."""


class ShutdownRequested(Exception):
    """A shutdown request arrived while a cell ran (it was answered): the cell ends,
    and the kernel with it."""


class KernelServer:
    """Base class: subclasses implement do_execute / do_complete and describe themselves."""

    implementation = "kernel"
    implementation_version = "0"
    language_info: ClassVar[dict] = {}
    banner = ""

    def __init__(self, connection_file: str):
        with open(connection_file) as f:
            cfg = json.load(f)
        self.session = Session(key=cfg["key"].encode(),
                               signature_scheme=cfg.get("signature_scheme", "hmac-sha256"),
                               username="kernel")
        self.ident = str(uuid.uuid4())
        self.context = zmq.Context()
        transport, ip = cfg.get("transport", "tcp"), cfg["ip"]

        def bind(kind, port):
            sock = self.context.socket(kind)
            sock.linger = 1000
            sock.bind(f"tcp://{ip}:{port}" if transport == "tcp" else f"ipc://{ip}-{port}")
            return sock

        self.shell_socket = bind(zmq.ROUTER, cfg["shell_port"])
        self.control_socket = bind(zmq.ROUTER, cfg["control_port"])
        self.stdin_socket = bind(zmq.ROUTER, cfg["stdin_port"])
        self.iopub_socket = bind(zmq.PUB, cfg["iopub_port"])
        self._hb = bind(zmq.REP, cfg["hb_port"])
        threading.Thread(target=self._heartbeat, daemon=True).start()
        self.execution_count = 0
        self._parent: dict = {}
        self._parent_idents: list = []
        self._allow_stdin = False
        self._running = True
        self._shutdown_after_cell: bool | None = None

    # -- subclass API -------------------------------------------------------------
    def do_execute(self, code: str, silent: bool, store_history: bool = True,
                   user_expressions=None, allow_stdin: bool = False) -> dict:
        raise NotImplementedError

    def do_complete(self, code: str, cursor_pos: int) -> dict:
        return {"matches": [], "cursor_start": cursor_pos, "cursor_end": cursor_pos,
                "metadata": {}, "status": "ok"}

    def do_inspect(self, code: str, cursor_pos: int, detail_level: int = 0) -> dict:
        return {"status": "ok", "found": False, "data": {}, "metadata": {}}

    def do_is_complete(self, code: str) -> dict:
        return {"status": "unknown"}

    def do_shutdown(self, restart: bool) -> dict:
        return {"status": "ok", "restart": restart}

    # -- what handlers call -------------------------------------------------------
    def send_response(self, socket, msg_type: str, content: dict) -> None:
        """Publish an output (stream, display_data, error, clear_output ...) for the current request."""
        self.session.send(socket, msg_type, content, parent=self._parent,
                          ident=self._topic(msg_type))

    def raw_input(self, prompt: str = "", password: bool = False) -> str:
        """Ask the front end for a line of input (blocks until it answers)."""
        if not self._allow_stdin:
            raise StdinNotAllowed(prompt)
        # Drop stale replies (e.g. to an input request that was interrupted).
        while self.stdin_socket.poll(0):
            self.stdin_socket.recv_multipart()
        self.session.send(self.stdin_socket, "input_request",
                          {"prompt": prompt, "password": password},
                          parent=self._parent, ident=self._parent_idents)
        while True:
            if not self.stdin_socket.poll(100):
                self.poll_control()  # an interrupt or shutdown while we wait
                continue
            _idents, msg = self._recv(self.stdin_socket)
            if msg["header"]["msg_type"] == "input_reply":
                return msg["content"]["value"]

    def getpass(self, prompt: str = "") -> str:
        return self.raw_input(prompt, password=True)

    def poll_control(self) -> None:
        """Answer control requests that arrived while a cell runs (never blocks).

        After its reply is sent, an interrupt_request raises KeyboardInterrupt (the
        cell stops as with ^C) and a shutdown_request raises ShutdownRequested (the
        cell is abandoned, the kernel stops). The cell's own request stays the parent
        of its outputs.
        """
        while self.control_socket.poll(0):
            try:
                idents, msg = self._recv(self.control_socket)
            except Exception as exc:
                print(f"whale kernel: dropped invalid message: {exc}", file=sys.stderr)
                continue
            msg_type = msg["header"]["msg_type"]
            if msg_type == "shutdown_request":
                restart = bool(msg["content"].get("restart", False))
                self.session.send(self.control_socket, "shutdown_reply",
                                  {"status": "ok", "restart": restart}, parent=msg, ident=idents)
                self._running, self._shutdown_after_cell = False, restart
                raise ShutdownRequested()
            handler = getattr(self, f"_on_{msg_type}", None)
            if handler is None:
                continue
            reply_type, content = handler(msg)
            self.session.send(self.control_socket, reply_type, content, parent=msg, ident=idents)
            if msg_type == "interrupt_request":
                raise KeyboardInterrupt()

    # -- the loop -----------------------------------------------------------------
    def start(self) -> None:
        """Serve requests until a shutdown request."""
        # Interrupts arrive as SIGINT (interrupt_mode "signal"): they raise
        # KeyboardInterrupt inside a running cell; between cells they are ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        poller = zmq.Poller()
        poller.register(self.control_socket, zmq.POLLIN)
        poller.register(self.shell_socket, zmq.POLLIN)
        self._publish_status("starting", {})
        while self._running:
            try:
                ready = dict(poller.poll(1000))
                if self.control_socket in ready:
                    self._dispatch(self.control_socket)
                elif self.shell_socket in ready:
                    self._dispatch(self.shell_socket)
            except KeyboardInterrupt:
                continue
        if self._shutdown_after_cell is not None:
            self.do_shutdown(self._shutdown_after_cell)
        self.close()

    def close(self) -> None:
        for sock in (self.shell_socket, self.control_socket, self.stdin_socket, self.iopub_socket):
            sock.close(linger=500)
        self.context.term()

    # -- internals ----------------------------------------------------------------
    def _heartbeat(self) -> None:
        try:
            zmq.device(zmq.QUEUE, self._hb, self._hb)
        except zmq.ZMQError:  # the context is terminating: close our socket, or term() waits
            self._hb.close(linger=0)

    def _topic(self, msg_type: str) -> bytes:
        return f"kernel.{self.ident}.{msg_type}".encode()

    def _recv(self, socket):
        frames = socket.recv_multipart(copy=False)
        idents, msg_list = self.session.feed_identities(frames, copy=False)
        return idents, self.session.deserialize(msg_list, content=True, copy=False)

    def _publish_status(self, state: str, parent: dict) -> None:
        self.session.send(self.iopub_socket, "status", {"execution_state": state},
                          parent=parent, ident=self._topic("status"))

    def _dispatch(self, socket) -> None:
        try:
            idents, msg = self._recv(socket)
        except Exception as exc:  # a bad signature or a malformed message
            print(f"whale kernel: dropped invalid message: {exc}", file=sys.stderr)
            return
        msg_type = msg["header"]["msg_type"]
        handler = getattr(self, f"_on_{msg_type}", None)
        self._parent, self._parent_idents = msg, idents
        self._publish_status("busy", msg)
        try:
            if handler is None:
                return  # comm messages and unknown requests need no reply
            reply_type, content = handler(msg)
            if msg_type == "execute_request" and content.get("status") == "error" and \
                    msg["content"].get("stop_on_error", True):
                # Before the reply: what was queued behind the failed cell (Run All) is
                # aborted, and nothing sent after the front end saw the error is.
                self._abort_queued(socket)
            self.session.send(socket, reply_type, content, parent=msg, ident=idents)
        finally:
            self._publish_status("idle", msg)

    def _abort_queued(self, socket) -> None:
        """After a failed cell, cells queued behind it (Run All) are not run."""
        while socket.poll(0):
            idents, msg = self._recv(socket)
            self._publish_status("busy", msg)
            if msg["header"]["msg_type"] == "execute_request":
                self.session.send(socket, "execute_reply",
                                  {"status": "aborted", "execution_count": self.execution_count},
                                  parent=msg, ident=idents)
            else:
                handler = getattr(self, f"_on_{msg['header']['msg_type']}", None)
                if handler is not None:
                    self._parent, self._parent_idents = msg, idents
                    reply_type, content = handler(msg)
                    self.session.send(socket, reply_type, content, parent=msg, ident=idents)
            self._publish_status("idle", msg)

    def _on_kernel_info_request(self, msg):
        return "kernel_info_reply", {
            "status": "ok", "protocol_version": PROTOCOL_VERSION,
            "implementation": self.implementation,
            "implementation_version": self.implementation_version,
            "language_info": self.language_info, "banner": self.banner,
            "help_links": [], "debugger": False,
        }

    def _on_execute_request(self, msg):
        c = msg["content"]
        silent = c.get("silent", False)
        store = c.get("store_history", not silent)
        if store:
            self.execution_count += 1
        if not silent:
            self.send_response(self.iopub_socket, "execute_input",
                               {"code": c["code"], "execution_count": self.execution_count})
        self._allow_stdin = bool(c.get("allow_stdin", False))
        try:
            reply = self.do_execute(c["code"], silent, store, c.get("user_expressions"),
                                    self._allow_stdin)
        except ShutdownRequested:
            reply = {"status": "error", "ename": "ShutdownRequested",
                     "evalue": "the kernel was shut down while this cell ran", "traceback": []}
        finally:
            self._allow_stdin = False
        reply.setdefault("execution_count", self.execution_count)
        if reply.get("status") == "ok":
            reply.setdefault("payload", [])
            reply.setdefault("user_expressions", {})
        return "execute_reply", reply

    def _on_complete_request(self, msg):
        c = msg["content"]
        return "complete_reply", self.do_complete(c["code"], c["cursor_pos"])

    def _on_is_complete_request(self, msg):
        return "is_complete_reply", self.do_is_complete(msg["content"]["code"])

    def _on_inspect_request(self, msg):
        c = msg["content"]
        return "inspect_reply", self.do_inspect(c["code"], c.get("cursor_pos", len(c["code"])),
                                                c.get("detail_level", 0))

    def _on_history_request(self, msg):
        return "history_reply", {"status": "ok", "history": []}

    def _on_comm_info_request(self, msg):
        return "comm_info_reply", {"status": "ok", "comms": {}}

    def _on_interrupt_request(self, msg):
        return "interrupt_reply", {"status": "ok"}

    def _on_shutdown_request(self, msg):
        restart = bool(msg["content"].get("restart", False))
        content = self.do_shutdown(restart)
        self._running = False
        return "shutdown_reply", content
