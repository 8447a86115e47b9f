"""A learner of a deployed site (`whale deploy`), through its proxy, as a browser would:
sign up on the login form, ask for a server, follow the spawn page's progress, run cells
in a docker kernel."""
from __future__ import annotations

import contextlib
import json
import time
import uuid

import requests
import websocket


class Learner:
    def __init__(self, url: str, name: str, password: str):
        self.url, self.name, self.password = url.rstrip("/"), name, password
        self.session = requests.Session()
        self.session.trust_env = False
        self.token = None

    def sign_in(self) -> Learner:
        """Sign in on the login form (first use: this sets the password)."""
        self.session.get(f"{self.url}/hub/login", timeout=30).raise_for_status()
        r = self.session.post(f"{self.url}/hub/login", allow_redirects=False, timeout=30, data={
            "username": self.name, "password": self.password,
            "_xsrf": self.session.cookies.get("_xsrf", "")})
        if r.status_code != 302:
            raise AssertionError(f"{self.name} could not sign in: HTTP {r.status_code}")
        return self

    def _xsrf(self) -> dict:
        return {"X-XSRFToken": self.session.cookies.get("_xsrf", "")}

    def make_token(self) -> str:
        """An API token of the learner's own (POST /hub/api/users/<name>/tokens)."""
        r = self.session.post(f"{self.url}/hub/api/users/{self.name}/tokens", headers=self._xsrf(),
                              json={"note": "test", "expires_in": 86400}, timeout=30)
        assert r.status_code == 201, r.text
        self.token = r.json()["token"]
        return self.token

    def api(self, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
        return requests.request(method, f"{self.url}/hub/api{path}", timeout=60,
                                headers={"Authorization": f"token {token or self.token}"}, **kw)

    def start(self, timeout: float = 300, **options) -> list[str]:
        """Ask for the server (with these user options, as the spawn form sends them);
        the spawn page's messages, until it is ready."""
        r = self.api("POST", f"/users/{self.name}/server", json=options)
        assert r.status_code in (201, 202), r.text
        messages = []
        with requests.get(f"{self.url}/hub/api/users/{self.name}/server/progress", stream=True,
                          timeout=timeout, headers={"Authorization": f"token {self.token}"}) as s:
            for line in s.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    event = json.loads(line[5:])
                    messages.append(event.get("message", ""))
                    if event.get("failed"):
                        raise AssertionError(f"{self.name}'s spawn failed: {messages}")
                    if event.get("ready"):
                        break
        return messages

    def server(self) -> dict | None:
        return self.api("GET", f"/users/{self.name}").json().get("servers", {}).get("")

    def stop(self, timeout: float = 120) -> None:
        r = self.api("DELETE", f"/users/{self.name}/server")
        assert r.status_code in (202, 204), r.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.server():
                return
            time.sleep(0.5)
        raise TimeoutError(f"{self.name}'s server did not stop")

    def contents(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, f"{self.url}/user/{self.name}/api/contents/{path}",
                                headers={"Authorization": f"token {self.token}"}, timeout=60, **kw)

    def open_kernel(self) -> str:
        """Start a docker kernel and leave it running (an idle learner); its id."""
        r = requests.post(f"{self.url}/user/{self.name}/api/kernels", json={"name": "docker"},
                          headers={"Authorization": f"token {self.token}"}, timeout=60)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    @contextlib.contextmanager
    def kernel(self, timeout: float = 120):
        """A docker kernel kept across cells, as a notebook keeps one: yields
        cell(code, timeout=...) -> (output, reply status)."""
        headers = {"Authorization": f"token {self.token}"}
        r = requests.post(f"{self.url}/user/{self.name}/api/kernels", json={"name": "docker"},
                          headers=headers, timeout=60)
        assert r.status_code == 201, r.text
        kernel = r.json()["id"]
        ws_url = self.url.replace("http://", "ws://", 1)
        ws = websocket.create_connection(f"{ws_url}/user/{self.name}/api/kernels/{kernel}/channels",
                                         header=[f"Authorization: token {self.token}"], timeout=timeout)
        try:
            yield lambda code, timeout=timeout: execute_cell(ws, code, timeout, self.name)
        finally:
            ws.close()
            requests.delete(f"{self.url}/user/{self.name}/api/kernels/{kernel}", headers=headers,
                            timeout=30)

    def run(self, code: str, timeout: float = 120) -> str:
        """Run a cell in a fresh docker kernel; its output."""
        with self.kernel(timeout) as cell:
            return cell(code)[0]


def execute(ws: websocket.WebSocket, code: str, timeout: float, username: str = "t") -> str:
    """Send `code` as an execute_request on a kernel's channels websocket; the streams it
    printed (as a notebook shows them: a clear_output clears) once the kernel is idle."""
    return execute_cell(ws, code, timeout, username)[0]


def execute_cell(ws: websocket.WebSocket, code: str, timeout: float,
                 username: str = "t") -> tuple[str, str]:
    """execute, and the status of the kernel's reply ("ok" or "error")."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": username,
                   "session": uuid.uuid4().hex, "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True,
                    "user_expressions": {}, "allow_stdin": False}}))
    out, status, idle = "", None, False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ws.settimeout(max(0.1, deadline - time.monotonic()))
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["header"]["msg_type"]
        if kind == "stream":
            out += msg["content"]["text"]
        elif kind == "clear_output":
            out = ""
        elif kind == "execute_reply":
            status = msg["content"]["status"]
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            idle = True
        if idle and status is not None:
            return out, status
    raise TimeoutError(code)
