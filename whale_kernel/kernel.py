"""DockerKernel: bash on a pty, wired to the learner's Docker engine.

bash_kernel provides the language conventions and the rich display helpers
(`display`, `displayHTML`, ...); the shell underneath is BashSession, and the
protocol is served by the lean KernelServer.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import time
import urllib.request
from typing import ClassVar

from whale_core.bundle import CredentialBundle
from whale_core.envfile import parse_env
from whale_core.errors import BundleError
from whale_core.explain import NO_ENGINE_HOST, REGISTRY_HINT, explain_output, limit_hint, registry_hint
from whale_core.store import default_store

from . import __version__
from .completion import DockerCompleter
from .protocol import KernelServer, ShutdownRequested, StdinNotAllowed
from .shell import BashSession
from .terminal import TerminalScreen


def _bash_kernel_display():
    """bash_kernel's display helpers, without importing bash_kernel/__init__.py.

    The package's __init__ imports its kernel, hence ipykernel and IPython: about a
    second of start-up for two functions that need neither.
    """
    spec = importlib.util.find_spec("bash_kernel")
    path = os.path.join(spec.submodule_search_locations[0], "display.py")
    module_spec = importlib.util.spec_from_file_location("bash_kernel_display", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


_display = _bash_kernel_display()
build_cmds, extract_contents = _display.build_cmds, _display.extract_contents
_DOCKER_VARS = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
_SECRET_PROMPT = re.compile(r"pass(word|phrase)|token|secret", re.I)
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


class DockerKernel(KernelServer):
    """A bash kernel whose docker CLI talks to the learner's engine.

    The engine comes from the installed credentials bundle (WHALE_CREDENTIALS);
    when the bundle is swapped on disk, the next cell uses the new one.
    """

    implementation = "whale_kernel"
    implementation_version = __version__
    redraw_interval = 0.2   # seconds between redraws of updating (progress) output
    language_info: ClassVar[dict] = {"name": "bash", "codemirror_mode": "shell", "mimetype": "text/x-sh",
                     "file_extension": ".sh", "pygments_lexer": "bash"}

    def __init__(self, connection_file: str):
        self.store = default_store()
        self._generation: str | None = None
        self._bundle: CredentialBundle | None = None
        self._bundle_problem = ""
        self._docker_env: dict[str, str] = {}
        self._refresh_credentials()
        self.completer = DockerCompleter(self._engine_client)
        self._known_display_ids: set[str] = set()
        super().__init__(connection_file)
        self._start_bash()

    # -- credentials ---------------------------------------------------------------
    def _refresh_credentials(self) -> bool:
        """Re-read the bundle if its generation changed; True if it did."""
        gen = self.store.generation()
        if gen == self._generation and self._generation is not None:
            return False
        changed = gen != self._generation
        self._generation = gen
        self._bundle, self._bundle_problem, env = None, "", {}
        if gen is not None:
            try:
                self._bundle = CredentialBundle.load(self.store.current_path)
                env = dict(self._bundle.env)
            except BundleError as exc:
                # Still point docker at what is there: its error is then explained.
                self._bundle_problem = str(exc)
                try:
                    env = parse_env((self.store.current_path / "docker.env").read_text())
                except OSError:
                    env = {}
                env["DOCKER_CERT_PATH"] = str(self.store.current_path)
        self._docker_env = {k: env[k] for k in env if k.startswith("DOCKER_")} or \
            {"DOCKER_HOST": NO_ENGINE_HOST}
        return changed

    def _engine_client(self, timeout: float):
        return self._bundle.client(timeout=timeout) if self._bundle else None

    def _credentials_prefix(self) -> str:
        if not self._refresh_credentials():
            return ""
        parts = [f"export {k}={_sh_quote(v)}" for k, v in self._docker_env.items()]
        parts += [f"unset {k}" for k in _DOCKER_VARS if k not in self._docker_env]
        return "; ".join(parts) + "; "

    # -- the shell ---------------------------------------------------------------
    def _start_bash(self):
        env = {k: v for k, v in os.environ.items() if k not in _DOCKER_VARS}
        env.update(self._docker_env)
        # An SSH bundle's ssh (its key, its known_hosts) is what the docker CLI runs.
        env["PATH"] = os.pathsep.join([str(self.store.current_path / "bin"),
                                       env.get("PATH", os.defpath)])
        env["NOTEBOOK_BASH_KERNEL_CAPABILITIES"] = "image,html,javascript"
        self.bash = BashSession(env=env)
        self.bash.capture(build_cmds())

    def do_shutdown(self, restart):
        self.bash.close()
        return super().do_shutdown(restart)

    @property
    def banner(self):
        host = self._docker_env.get("DOCKER_HOST", "no engine configured")
        return f"Docker kernel {__version__}: bash wired to your Docker engine ({host})"

    def _send_content_to_display_id(self, content: dict) -> None:
        """First output for a display id is display_data, later ones update it."""
        display_id = content["transient"]["display_id"]
        kind = "update_display_data" if display_id in self._known_display_ids else "display_data"
        self._known_display_ids.add(display_id)
        self.send_response(self.iopub_socket, kind, content)

    def _mirror_holds(self) -> list[str] | None:
        """The repositories of the class's mirror (WHALE_REGISTRY_MIRROR, which the
        spawner sets), asked once a minute at most; None if it cannot be asked."""
        url = os.environ.get("WHALE_REGISTRY_MIRROR", "").rstrip("/")
        if not url.startswith(("http://", "https://")):
            return None
        cached = getattr(self, "_mirror_cache", None)
        if cached and time.monotonic() - cached[0] < 60:
            return cached[1]
        try:
            # The site's own mirror (http(s), checked above), never through a proxy.
            direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with direct.open(f"{url}/v2/_catalog?n=200", timeout=1.5) as r:
                names = json.load(r).get("repositories") or []
            held = sorted({n.removeprefix("library/") for n in names if isinstance(n, str)})
        except (OSError, ValueError):
            held = None
        self._mirror_cache = (time.monotonic(), held)
        return held

    def _send_output(self, kind: str, content: dict) -> None:
        if kind == "display_id":
            self._send_content_to_display_id(content)
        else:
            self.send_response(self.iopub_socket, kind, content)

    # -- execution ---------------------------------------------------------------
    def do_execute(self, code, silent, store_history=True, user_expressions=None,
                   allow_stdin=False):
        self.silent = silent
        if not code.strip():
            return self._ok()
        out = CellOutput(lambda kind, content: self._send_output(kind, content),
                         self.redraw_interval, silent)
        host = self._docker_env.get("DOCKER_HOST")

        hints: list[str] = []
        recent: list[str] = []   # the cell's last output, for the image a pull wanted

        def explained(text: str) -> str:
            text = explain_output(text.replace("\r\n", "\n"), host)
            recent.append(text[-4096:])
            del recent[:-8]
            hint = limit_hint(text)
            if hint == REGISTRY_HINT:
                hint = registry_hint("".join(recent), self._mirror_holds())
            if hint and hint not in hints:
                hints.append(hint)
            return text

        def on_output(text: str) -> None:
            out.feed("stdout", explained(text))

        def on_error(text: str) -> None:
            out.feed("stderr", explained(text))

        def on_input(command: str) -> str | None:
            if not allow_stdin:
                return None
            out.show(final=True)
            lines = out.screen.lines
            prompt = _ANSI.sub("", lines[-1]) if lines else ""
            ask = self.getpass if _SECRET_PROMPT.search(prompt) else self.raw_input
            # The prompt is already on screen; the input box repeats it for context.
            try:
                return ask(prompt)
            except StdinNotAllowed:
                return None

        prefix = self._credentials_prefix()
        if self._bundle_problem and prefix:
            out.feed("stderr", f"whale: your Docker credentials have a problem: "
                               f"{self._bundle_problem}\n")
        try:
            result = self.bash.run(code, on_output, on_error=on_error, on_input=on_input,
                                   prefix=prefix, on_tick=self.poll_control)
        except ShutdownRequested:
            raise
        except Exception as exc:  # the shell is gone in a way we cannot recover from
            self.bash.close()
            self._start_bash()
            out.feed("stderr", f"\nwhale: the shell failed ({exc}); a new one was started.\n")
            out.show(final=True)
            return self._error("ShellError", str(exc))
        if result.stdin_ended:
            out.feed("stderr",
                f"\nwhale: `{_short(result.stdin_ended)}` waited for keyboard input, which this "
                "notebook cannot send, so it was given end-of-input. Feed input with a pipe "
                "(echo answer | command) or a heredoc; for containers use `docker run -i` "
                "with a pipe, or `docker run -d` and `docker exec`, instead of -it.\n")
        for hint in hints:
            out.feed("stderr", ("" if out.at_line_start else "\n") + hint + "\n")
        if result.restarted:
            out.feed("stderr", "\nwhale: the shell exited, so a new one was started "
                        "(variables and the working directory were reset).\n")
            self._generation = None
            self._refresh_credentials()
        out.show(final=True)
        if result.interrupted:
            return self._error("KeyboardInterrupt", "interrupted; the shell is ready again")
        if result.restarted:
            return self._error("ShellExited", "the shell exited")
        if result.status:
            return self._error("ExitStatus", f"exit status {result.status}")
        return self._ok()

    def _ok(self):
        return {"status": "ok", "execution_count": self.execution_count, "payload": [],
                "user_expressions": {}}

    def _error(self, ename: str, evalue: str):
        content = {"ename": ename, "evalue": evalue,
                   "traceback": [f"\x1b[0;31m{evalue}\x1b[0m"]}
        if not self.silent:
            self.send_response(self.iopub_socket, "error", content)
        return dict(content, status="error", execution_count=self.execution_count)

    # -- is the cell complete? ----------------------------------------------------
    def do_is_complete(self, code):
        """What a console asks at each Enter: bash's own parser (`bash -n`) says whether
        the code is complete, unfinished (`for i in 1 2; do`, an open quote, a trailing
        backslash, a here-document without its end) or a syntax error."""
        if code.rstrip("\n").endswith("\\"):
            return {"status": "incomplete", "indent": ""}
        try:
            check = subprocess.run(["bash", "-n"], input=code, capture_output=True, text=True,
                                   timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return {"status": "unknown"}
        if any(s in check.stderr for s in ("unexpected end of file", "unexpected EOF", "here-document")):
            return {"status": "incomplete", "indent": "  "}
        return {"status": "complete" if check.returncode == 0 else "invalid"}

    # -- inspection (Shift+Tab) ----------------------------------------------------
    def do_inspect(self, code, cursor_pos, detail_level=0):
        """Help for what is under the cursor: `docker SUBCOMMAND --help` on a docker
        line (it needs no engine), else bash's `help` for a builtin or `type` for the rest."""
        line_start = code.rfind("\n", 0, cursor_pos) + 1
        line_end = code.find("\n", cursor_pos)
        line = code[line_start: line_end if line_end != -1 else len(code)]
        upto = code[line_start:cursor_pos] + re.split(r"[\s;|&]", code[cursor_pos:], maxsplit=1)[0]
        words = [w for w in re.split(r"[\s;|&]+", upto) if w]
        if not words:
            return {"status": "ok", "found": False, "data": {}, "metadata": {}}
        if words[0] == "docker" and len(line.split()) >= 1:
            sub = [w for w in words[1:] if re.fullmatch(r"[a-z][a-z-]*", w)][:2]
            cmd = " ".join(["docker", *sub, "--help"])
        else:
            word = _sh_quote(words[-1])
            cmd = f"help {word} 2>/dev/null || type -a {word} 2>/dev/null"
        try:
            text = self.bash.capture(cmd, timeout=3).strip("\n")
        except Exception:
            text = ""
        text = _ANSI.sub("", text)
        if not text:
            return {"status": "ok", "found": False, "data": {}, "metadata": {}}
        return {"status": "ok", "found": True, "data": {"text/plain": text}, "metadata": {}}

    # -- completion ---------------------------------------------------------------
    def do_complete(self, code, cursor_pos):
        head = code[:cursor_pos]
        word = re.split(r"[\s;|&=\"'<>(]", head)[-1]
        matches = self.completer.complete(head)
        if matches is None or (not matches and not head.rstrip().endswith("docker")
                               and word and not word.startswith("-")):
            matches = (matches or []) + self._shell_matches(word, first=_is_command_position(head))
        return {"matches": sorted(set(matches)), "cursor_start": cursor_pos - len(word),
                "cursor_end": cursor_pos, "metadata": {}, "status": "ok"}

    def _shell_matches(self, word: str, first: bool) -> list[str]:
        q = _sh_quote(word)
        if word.startswith("$"):
            cmd = f"compgen -A variable -- {_sh_quote(word[1:])} | sed 's/^/$/'"
        elif first and "/" not in word:
            cmd = f"compgen -abc -A function -- {q}"
        else:
            cmd = (f"compgen -o dirnames -f -- {q} | "
                   'while read -r f; do [[ -d $f ]] && f=$f/; echo "$f"; done')
        try:
            out = self.bash.capture(cmd, timeout=2)
        except Exception:
            return []
        return [m for m in out.split("\n") if m and not m.startswith("__whale")]


class CellOutput:
    """A cell's output as a notebook shows it: stdout and stderr blocks in the order
    they came, the last one a live terminal screen (progress bars redraw in place).

    A redraw clears the cell's output, so it sends the finished blocks again before
    the live one. ``send(kind, content)`` sends one IOPub message.
    """

    def __init__(self, send, redraw_interval: float, silent: bool):
        self.send = send
        self.redraw_interval = redraw_interval
        self.silent = silent
        self.done: list[tuple[str, str]] = []   # (stream name, screen text) shown whole
        self.name = "stdout"
        self.screen = TerminalScreen()
        self._last_redraw = 0.0

    @property
    def at_line_start(self) -> bool:
        """Whether what is shown ends with a new line (or nothing is shown)."""
        return not self.screen.lines[-1] if self.screen.text() or not self.done \
            else self.done[-1][1].endswith("\n")

    def feed(self, name: str, text: str) -> None:
        if name != self.name:
            if self.screen.text():
                self.show(final=True)
                self.done.append((self.name, self.screen.text()))
                self.screen = TerminalScreen()
            self.name = name
        self.screen.feed(text)
        self.show()

    def show(self, final: bool = False) -> None:
        if self.silent or not self.screen.pending:
            return
        now = time.monotonic()
        if self.screen._redraw and not final and now - self._last_redraw < self.redraw_interval:
            return
        redraw, text = self.screen.take()
        if redraw:
            self._last_redraw = now
            self.send("clear_output", {"wait": True})
            for name, block in self.done:
                self._emit(name, block)
        if text:
            self._emit(self.name, text)

    def _emit(self, name: str, text: str) -> None:
        # bash_kernel's display helpers (display, displayHTML, …) announce rich output
        # on a line of its own, on stderr; its parser also ends a partial last line, so
        # only use it then.
        plain, rich = extract_contents(text) if "bash_kernel: saved" in text else (text, [])
        if plain:
            self.send("stream", {"name": name, "text": plain})
        for content in rich:
            if isinstance(content, Exception):
                self.send("stream", {"name": "stderr", "text": str(content)})
            elif "display_id" in content.get("transient", {}):
                self.send("display_id", content)
            else:
                self.send("display_data", content)


def _is_command_position(head: str) -> bool:
    segment = re.split(r"\|\||&&|[;|&\n(]", head)[-1].lstrip()
    return " " not in segment and "\t" not in segment


def _sh_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _short(command: str, width: int = 60) -> str:
    return command if len(command) <= width else command[: width - 1] + "…"


