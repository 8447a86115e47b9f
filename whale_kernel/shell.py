"""A bash process on a pseudo-terminal that runs notebook cells.

Why not bash_kernel's REPLWrapper: it sends a cell line by line and waits for a
continuation prompt after each (about 50 ms a line), spots the end of a command by
matching PS1 (which breaks when a learner sets an odd PS1), and waits forever when a
command reads the terminal. Here a cell is written to a file and sourced in one
line; the end of a cell is a marker that PROMPT_COMMAND prints with a per-session
nonce and the exit status, whatever PS1 is; and while a command is silent the
session checks whether it is blocked reading the terminal, so the kernel can ask
the learner for input or end it.
"""
from __future__ import annotations

import codecs
import contextlib
import fcntl
import os
import platform
import re
import secrets
import select
import shlex
import signal
import struct
import tempfile
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pexpect

# read(2) and readv(2) by architecture: a task blocked in one of them on our
# terminal is waiting for keyboard input.
_READ_SYSCALLS = {"x86_64": {0, 19}, "aarch64": {63, 65}}.get(platform.machine(), {0, 19})

_INIT = r"""
PS1=''; PS2=''; PS0=''; PS4='+ '
HISTFILE=/dev/null
export PAGER=cat MANPAGER=cat GIT_PAGER=cat SYSTEMD_PAGER='' LESS=-FRX
export DOCKER_CLI_HINTS=false
__whale_prompt() {
  { __whale_s=$?; __whale_x=${-//[^x]/}; set +x; } 2>/dev/null
  # Back at the prompt: said in a file first (a file is seen at once; the marker reaches
  # the kernel's side of the terminal a moment after bash wrote it).
  { : > "$__whale_prompted"; } 2>/dev/null
  printf '\033]6262;whale;%s;%s\007' "$__whale_nonce" "$__whale_s"
  PS1='' PS2=''
  [[ -n $__whale_x ]] && set -x
}
# Read-only: a cell that cleared it would leave the kernel unable to see cells end.
declare -r PROMPT_COMMAND=__whale_prompt
"""


@dataclass
class CellResult:
    """How a cell ended."""

    status: int | None         # exit status of the cell's last command; None if the shell died
    interrupted: bool = False
    restarted: bool = False    # the shell exited (e.g. `exit`, `set -e`) and a new one was started
    stdin_ended: str = ""      # command that wanted keyboard input but got end-of-input


class BashSession:
    """One interactive bash on a pty, driven cell by cell."""

    def __init__(self, env: dict[str, str] | None = None, cwd: str | None = None,
                 columns: int = 100):
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.columns = columns
        self.runtime = Path(tempfile.mkdtemp(prefix="whale-kernel-"))
        self.cell_file = self.runtime / "cell.sh"
        # Made by bash at each prompt; removed before each cell is sent (see waiting_for_input).
        self.prompted_file = self.runtime / "prompted"
        # A cell's stderr comes back through a FIFO of its own (the terminal carries its
        # stdout), so errors are a stream of their own. The kernel holds both ends: a
        # read never sees end-of-file between cells, and bash's open never waits.
        self.err_file = self.runtime / "stderr"
        os.mkfifo(self.err_file, 0o600)
        self._err_fd = os.open(self.err_file, os.O_RDONLY | os.O_NONBLOCK)
        self._err_keep = os.open(self.err_file, os.O_WRONLY | os.O_NONBLOCK)
        self._err_decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.child: pexpect.spawn | None = None
        self._marker: re.Pattern[str] | None = None
        self._tty: str | None = None
        self.start()

    # -- life cycle ---------------------------------------------------------------
    def start(self) -> None:
        """Start (or restart) bash and wait for its first marker."""
        self._close_slave()
        if getattr(self, "child", None) is not None:  # the shell that ended: its terminal
            with contextlib.suppress(Exception):
                self.child.close(force=True)
        nonce = secrets.token_hex(8)
        self._marker = re.compile(r"\x1b\]6262;whale;" + nonce + r";(\d+)\x07")
        env = dict(self.env, __whale_nonce=nonce, TERM=self.env.get("TERM", "xterm-256color"),
                   COLUMNS=str(self.columns))
        env.pop("PROMPT_COMMAND", None)
        init = self.runtime / "init.sh"
        init.write_text(f"declare -r __whale_prompted={shlex.quote(str(self.prompted_file))}\n"
                        + _INIT)
        # Children must get default SIGINT/SIGPIPE even if the kernel ignores them.
        old_int = signal.signal(signal.SIGINT, signal.SIG_DFL)
        old_pipe = signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        try:
            self.child = pexpect.spawn(
                "/bin/bash", ["--noprofile", "--rcfile", str(init), "--noediting", "-i"],
                env=env, cwd=self.cwd, echo=False, encoding="utf-8",
                codec_errors="replace", dimensions=(24, self.columns),
            )
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGPIPE, old_pipe)
        self.child.delaybeforesend = None
        self.child.expect(self._marker, timeout=10)
        try:
            self._tty = os.readlink(f"/proc/{self.child.pid}/fd/0")
        except OSError:
            self._tty = None

    def close(self) -> None:
        """Stop bash and everything it started on its terminal."""
        self._close_slave()
        if self.child is not None and self.child.isalive():
            # The running command has a process group of its own (job control): hang
            # it up too, then bash, which hangs up its other jobs as it exits.
            fg = self._foreground()
            if fg and fg != self.child.pid:
                _killpg(fg, signal.SIGHUP)
            _killpg(self.child.pid, signal.SIGHUP)
            deadline = time.monotonic() + 0.5
            while self.child.isalive() and time.monotonic() < deadline:
                time.sleep(0.01)
            if fg and fg != self.child.pid:
                _killpg(fg, signal.SIGKILL)
            self.child.close(force=True)
        for fd in (getattr(self, "_err_fd", None), getattr(self, "_err_keep", None)):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._err_fd = self._err_keep = None
        for f in self.runtime.glob("*"):
            f.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.runtime.rmdir()

    # -- running cells ------------------------------------------------------------
    def run(self, code: str, on_output: Callable[[str], None], *,
            on_error: Callable[[str], None] | None = None,
            on_input: Callable[[str], str | None] | None = None,
            prefix: str = "", flush_interval: float = 0.03,
            idle_check: float = 0.15, on_tick=None) -> CellResult:
        """Run a cell; on_output receives terminal output as it is produced, and
        on_error what the cell writes to stderr (without it, on_output gets both).

        on_input(prompt) is called when the running command blocks reading the
        terminal; it returns the line to send, or None for end-of-input.
        on_tick(), if given, is called between reads (at least every idle_check
        seconds); a KeyboardInterrupt it raises stops the command like ^C.
        Raises KeyboardInterrupt through to the caller only after the shell is back.
        """
        if self.child is None:
            raise RuntimeError("the shell is not started")
        self.cell_file.write_text(code if code.endswith("\n") else code + "\n")
        command = (f"{prefix}. {shlex.quote(str(self.cell_file))} "
                   f"2>{shlex.quote(str(self.err_file))}\n")
        # How much bash will have read once it has taken this command (see _bash_took).
        self._read_before = self._bash_read_bytes()
        self._command_bytes = len(command.encode())
        self.prompted_file.unlink(missing_ok=True)
        self.child.send(command)
        return self._collect(on_output, on_error or on_output, on_input, flush_interval,
                             idle_check, on_tick)

    def _drain_stderr(self, on_error) -> None:
        """Pass on what the cell wrote to stderr so far."""
        chunks = []
        while self._err_fd is not None:
            try:
                data = os.read(self._err_fd, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
        text = self._err_decoder.decode(b"".join(chunks))
        if text:
            on_error(self._clean(text))

    def _collect(self, on_output, on_error, on_input, flush_interval, idle_check,
                 on_tick=None) -> CellResult:
        child = self.child
        buf = ""
        last_output = time.monotonic()
        last_flush = 0.0
        pending = ""
        stdin_ended = ""
        eof_ladder: list[float] = []   # times of escalation steps for a command we gave EOF
        interrupted = False
        ladder_start: float | None = None
        while True:
            try:
                busy = pending or eof_ladder or ladder_start is not None
                # Wake for whichever stream is written first, so the two keep their order.
                try:
                    ready = select.select([child.child_fd, self._err_fd], [], [],
                                          0.05 if busy else idle_check)[0]
                except (OSError, ValueError):
                    ready = [child.child_fd]
                try:
                    chunk = child.read_nonblocking(65536, timeout=0) \
                        if child.child_fd in ready else ""
                except pexpect.TIMEOUT:
                    chunk = ""
                except pexpect.EOF:
                    chunk = None
                if chunk is None or (not chunk and not child.isalive()):
                    # bash ended. (Its terminal reads end-of-file only once every holder
                    # of the other side has closed it, and the kernel holds one, for
                    # FIONREAD: a shell that exits or is killed is seen ending here.)
                    with contextlib.suppress(pexpect.EOF, pexpect.TIMEOUT, OSError):
                        while more := child.read_nonblocking(65536, timeout=0):
                            buf += more
                    if pending or buf:
                        on_output(pending + buf)
                    self._drain_stderr(on_error)
                    self.start()
                    return CellResult(status=None, interrupted=interrupted, restarted=True,
                                      stdin_ended=stdin_ended)
                if on_tick is not None and ladder_start is None:
                    on_tick()
                now = time.monotonic()
                if chunk:
                    buf += chunk
                    last_output = now
                    m = self._marker.search(buf)
                    if m:
                        out = pending + buf[: m.start()]
                        if out:
                            on_output(self._clean(out))
                        self._drain_stderr(on_error)
                        return CellResult(status=int(m.group(1)), interrupted=interrupted,
                                          stdin_ended=stdin_ended)
                    # Hold back a possible start of the marker.
                    cut = buf.rfind("\x1b]6262")
                    if cut == -1 and buf.endswith("\x1b"):
                        cut = len(buf) - 1
                    if cut == -1:
                        pending += buf
                        buf = ""
                    else:
                        pending += buf[:cut]
                        buf = buf[cut:]
                if self._err_fd in ready:
                    # What the terminal gave before stderr was written goes out first: the
                    # terminal is read first when both are ready (a pty hands bytes on a
                    # moment after they are written; a FIFO at once), and what is held
                    # back for the next flush is sent before stderr.
                    if pending:
                        on_output(self._clean(pending))
                        pending = ""
                        last_flush = now
                    self._drain_stderr(on_error)
                if pending and now - last_flush >= flush_interval:
                    on_output(self._clean(pending))
                    pending = ""
                    last_flush = now
                if ladder_start is not None:
                    self._escalate(max(now - ladder_start, 1e-9))
                elif not chunk and now - last_output >= idle_check:
                    waiting = self.waiting_for_input()
                    if waiting and self._output_ready():
                        # It wrote something before it began to read: that may be the
                        # end-of-cell marker, and bash waiting for its next command.
                        # Read it first.
                        pass
                    elif waiting and self._input_pending():
                        # What was sent is still in the terminal's queue: the reader
                        # has not been scheduled to take it yet (bash, about to read
                        # this very cell, on a busy machine). It is not waiting for us.
                        pass
                    elif waiting:
                        if pending:
                            on_output(pending)
                            pending = ""
                        self._drain_stderr(on_error)  # a prompt (read -p) is on stderr
                        answer = on_input(waiting) if on_input else None
                        if answer is None:
                            stdin_ended = stdin_ended or waiting
                            self._send_eof()
                            if eof_ladder and now - eof_ladder[0] > 0.4:
                                # EOF did not end it: treat it like an interrupt.
                                ladder_start = now
                                self._escalate(0.0)
                            elif not eof_ladder:
                                eof_ladder.append(now)
                        else:
                            eof_ladder.clear()
                            self._send_line(answer)
                        last_output = time.monotonic()
                    else:
                        eof_ladder.clear()
            except KeyboardInterrupt:
                interrupted = True
                if ladder_start is None:
                    ladder_start = time.monotonic()
                    self._escalate(0.0)

    def _clean(self, text: str) -> str:
        """Hide the kernel's own plumbing: the cell file's path and its xtrace lines."""
        text = text.replace(f"{self.cell_file}: ", "")
        return _OWN_TRACE.sub("", text) if "+ " in text else text

    def _foreground(self) -> int | None:
        try:
            pgrp = os.tcgetpgrp(self.child.child_fd)
        except OSError:
            return None
        return pgrp

    def _escalate(self, elapsed: float) -> None:
        """Stop the foreground job: ^C, then SIGTERM, then SIGKILL; bash itself survives.
        A ladder starts with elapsed == 0.0, which forgets the steps of an earlier one (a
        ladder that began without it once found every step taken and never ended)."""
        steps = getattr(self, "_steps_done", set())
        if elapsed == 0.0:
            steps = set()
        fg = self._foreground()
        if 0 not in steps:
            steps.add(0)
            self.child.sendintr()
        elif elapsed > 1.0 and 1 not in steps:
            steps.add(1)
            if fg and fg != self.child.pid:
                _killpg(fg, signal.SIGTERM)
            else:
                self.child.sendintr()
        elif elapsed > 2.5 and 2 not in steps:
            steps.add(2)
            if fg and fg != self.child.pid:
                _killpg(fg, signal.SIGKILL)
        elif elapsed > 5.0 and 3 not in steps:
            steps.add(3)
            # The shell itself does not come back: start a new one.
            _killpg(self.child.pid, signal.SIGKILL)
        self._steps_done = steps

    def _output_ready(self) -> bool:
        """Whether the terminal has output the kernel has not read yet."""
        try:
            return bool(select.select([self.child.child_fd], [], [], 0)[0])
        except (OSError, ValueError):
            return False

    def _bash_read_bytes(self) -> int | None:
        """Bytes bash has read so far, from any file (/proc/PID/io rchar)."""
        try:
            for line in Path(f"/proc/{self.child.pid}/io").read_text().splitlines():
                if line.startswith("rchar:"):
                    return int(line.split()[1])
        except (OSError, ValueError, AttributeError):
            pass
        return None

    def _bash_took_command(self, now: int | None = None) -> bool:
        """Whether bash has read the command of this cell off the terminal.

        The kernel's write reaches bash's terminal through the kernel's own queue, a
        moment later: until bash has read the whole command, bash blocked reading the
        terminal is bash about to get this cell, not a cell waiting for keyboard input.
        """
        before = getattr(self, "_read_before", None)
        if now is None:  # one reading: a second could see bash take the command after all
            now = self._bash_read_bytes()
        if before is None or now is None:
            return True  # cannot tell: as before
        return now - before >= self._command_bytes

    def _input_pending(self) -> bool:
        """Whether the terminal holds input its reader has not read yet (FIONREAD on
        our own descriptor of the terminal's slave side)."""
        fd = self._slave_fd()
        if fd is None:
            return False
        try:
            return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0] > 0
        except OSError:
            return False

    def _slave_fd(self) -> int | None:
        if getattr(self, "_slave", None) is None and self._tty:
            try:
                self._slave = os.open(self._tty, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
            except OSError:
                self._slave = None
        return getattr(self, "_slave", None)

    def _close_slave(self) -> None:
        if getattr(self, "_slave", None) is not None:
            os.close(self._slave)
            self._slave = None

    def _send_eof(self) -> None:
        self.child.send("\x04")

    def _send_line(self, line: str) -> None:
        try:
            import termios
            raw = not (termios.tcgetattr(self.child.child_fd)[3] & termios.ICANON)
        except Exception:
            raw = False
        self.child.send(line + ("\r" if raw else "\n"))

    def waiting_for_input(self) -> str:
        """The command line of a process blocked reading this terminal, or ''."""
        if not self._tty:
            return ""
        fg = self._foreground()
        if fg is None:
            return ""
        for pid in _pids_in_group(fg):
            for task in _tasks(pid):
                reads = self._bash_read_bytes() if pid == self.child.pid else None
                if not self._blocked_reading_terminal(pid, task):
                    continue
                if pid != self.child.pid:
                    return _cmdline(pid)
                # bash itself: the `read` builtin of a cell, or bash back at its prompt
                # once the cell ended, its marker still on the way to us (a terminal
                # hands written bytes to the other side a moment later, longer on a busy
                # machine): then it made the prompt file first. And bash that read
                # something meanwhile was not waiting.
                after = self._bash_read_bytes()
                if self.prompted_file.exists() or after != reads \
                        or not self._bash_took_command(after):
                    return ""
                return "read"
        return ""

    def _blocked_reading_terminal(self, pid: int, task: str) -> bool:
        """Whether this task sleeps in a read of this terminal. Asleep, not just in the
        call: a task that got its bytes but waits for a CPU to return them (a busy
        machine) is still in read(2), in state R."""
        try:
            fields = Path(f"/proc/{pid}/task/{task}/syscall").read_text().split()
            if not fields or not fields[0].isdigit() or int(fields[0]) not in _READ_SYSCALLS:
                return False
            # /dev/tty is this terminal too: the process is in its foreground group
            # (less, ssh and password prompts read it, not stdin).
            if os.readlink(f"/proc/{pid}/fd/{int(fields[1], 16)}") not in (self._tty, "/dev/tty"):
                return False
            stat = Path(f"/proc/{pid}/task/{task}/stat").read_text()
            return stat[stat.rindex(")") + 2] == "S"
        except (OSError, ValueError, IndexError):
            return False

    # -- quiet commands (completion) -------------------------------------------------
    def capture(self, code: str, timeout: float = 2.0) -> str:
        """Run a short command while idle and return its output (nothing is streamed)."""
        out: list[str] = []
        deadline = time.monotonic() + timeout

        def sink(text: str) -> None:
            out.append(text)
            if time.monotonic() > deadline:
                raise KeyboardInterrupt

        self.run(code, sink)
        return "".join(out).replace("\r\n", "\n")


_OWN_TRACE = re.compile(r"^\++ (?:\. \S*/cell\.sh(?: 2>\S*/stderr)?|__whale_prompt)\r?\n", re.M)


def _killpg(pgrp: int, sig: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgrp, sig)


def _pids_in_group(pgrp: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ... ; comm may contain spaces and parens.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and int(fields[2]) == pgrp:
            pids.append(int(entry.name))
    return pids


def _tasks(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "a command"
    return " ".join(p.decode(errors="replace") for p in raw.split(b"\0") if p) or "a command"
