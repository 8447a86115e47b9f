"""Docker kernels forked from the learner's notebook server, sharing its memory.

A kernel started the usual way (jupyter_client's LocalProvisioner) is a new Python that
imports zmq, traitlets, jupyter_client and this package again: 26 MiB of every learner's
memory that the server beside it already holds. Forked from the server instead, the
kernel shares those pages copy-on-write and owns only what it writes: about 12 MiB. This
is the zygote pattern (multiprocessing's "fork" start method, Android's zygote), done the
way Python's gc documentation asks: the server's objects are frozen once it has started
(whale_extension calls freeze_server; else before the first fork), so that neither side's
garbage collector writes to the pages they share. Only once: the frozen are never
collected, and what the server makes later (a kernel's manager, its channels) must stay
collectable when that kernel goes.

The provisioner forks only where that is safe and worth it: in a running Jupyter server
that asked for it (WHALE_FORK_KERNELS=1, as the single-user image sets), on the server's
main thread, for `python -m whale_kernel` on this very interpreter. Everywhere else
(nbclient and nbval, a kernel on another Python, a server without the setting) it is
LocalProvisioner, unchanged.

The child becomes what a fresh `python -m whale_kernel` would be: a session of its own
(interrupts reach it and not the server), stdin from /dev/null, no descriptor of the
server's (its listening socket, its clients, its zmq context), Python's default signal
handlers instead of the server's, the kernelspec's environment and working directory. It
never returns into the server's code: it ends with os._exit, so the server's atexit
handlers and finalizers never run in it.
"""
from __future__ import annotations

import contextlib
import gc
import os
import pathlib
import signal
import sys
import threading
import traceback
import warnings

from jupyter_client.provisioning import LocalProvisioner

# Loaded here, in the server, before the first fork: the kernels then share these pages.
from . import FORK_SETTING
from . import kernel as _kernel  # noqa: F401
from .__main__ import main as kernel_main


class ForkedProcess:
    """What LocalProvisioner keeps of a kernel's process (a Popen's poll, wait and
    signals), for a kernel this process forked."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def _reaped(self, status: int) -> int:
        self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else, as Popen.poll assumes
                self.returncode = 0
            else:
                if pid:
                    self._reaped(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            try:
                self._reaped(os.waitpid(self.pid, 0)[1])
            except ChildProcessError:
                self.returncode = 0
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def can_fork(cmd: list[str]) -> bool:
    """Whether a kernel for `cmd` is forked from this process (see the module's doc)."""
    if os.environ.get(FORK_SETTING) != "1" or not hasattr(os, "fork"):
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    serverapp = sys.modules.get("jupyter_server.serverapp")
    if serverapp is None or not serverapp.ServerApp.initialized():
        return False
    return (len(cmd) >= 3 and cmd[1:3] == ["-m", "whale_kernel"]
            and os.path.realpath(cmd[0]) == os.path.realpath(sys.executable))


def freeze_server() -> None:
    """Freeze the objects of a server that has started (its modules, its app, this
    package, loaded above), for the docker kernels it will fork to share; once."""
    if not gc.get_freeze_count():
        gc.collect()
        gc.freeze()


def _fileno(stream) -> int | None:
    if stream is None or isinstance(stream, int):
        return stream if isinstance(stream, int) and stream >= 0 else None
    return stream.fileno()


def _become_kernel(argv: list[str], env: dict[str, str], cwd: str | None,
                   stdout: int | None, stderr: int | None) -> None:
    """In the forked child: become `python -m whale_kernel ARGV`, then exit. Never returns."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)  # the server's event loop's, not ours
        for signum in signal.valid_signals():
            if signum not in (signal.SIGKILL, signal.SIGSTOP):
                with contextlib.suppress(OSError, ValueError):
                    signal.signal(signum, signal.SIG_DFL)
        # As a new Python starts: SIGPIPE and SIGXFSZ ignored, SIGINT a KeyboardInterrupt.
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, target in ((stdout, 1), (stderr, 2)):
            if fd is not None and fd != target:
                os.dup2(fd, target)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # null too, and all of the server's
        os.environ.clear()
        os.environ.update(env)
        if cwd:
            os.chdir(cwd)
        sys.argv = [sys.argv[0], *argv]
        kernel_main(argv)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:  # the child says why it ends, then ends
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


class ForkProvisioner(LocalProvisioner):
    """LocalProvisioner, but forking the docker kernel from the notebook server."""

    async def launch_kernel(self, cmd: list[str], **kwargs):
        if not can_fork(cmd):
            return await super().launch_kernel(cmd, **kwargs)
        options = self._scrub_kwargs(kwargs)
        env = dict(options.get("env") or os.environ)
        cwd = options.get("cwd")
        stdout, stderr = _fileno(options.get("stdout")), _fileno(options.get("stderr"))
        # Python's gc documentation for fork without exec: freeze before the fork, so that
        # later collections on either side leave the shared pages alone (once: the server
        # froze at its start already, unless whale_extension is off).
        freeze_server()
        sys.stdout.flush()
        sys.stderr.flush()
        with warnings.catch_warnings():
            # Python 3.12+ warns of fork in a process with threads: the child touches no
            # lock of theirs (it starts its own zmq context and threads).
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            _become_kernel(cmd[3:], env, str(cwd) if cwd else None, stdout, stderr)
        self.process = ForkedProcess(pid)
        self.pid = self.pgid = pid  # the child's own session: interrupts never reach the server
        self.cwd = kwargs.get("cwd", pathlib.Path.cwd())
        self.log.debug("docker kernel %s forked from the server as process %d",
                       kwargs.get("kernel_id", ""), pid)
        return self.connection_info
