"""Render what programs write to a terminal as Jupyter stream output.

Docker draws pull/push/build progress with cursor movements: it prints one line per
layer, then moves the cursor up and rewrites those lines in place. A notebook output
is append-only text, so passing those bytes through gives a wall of escape codes.
`TerminalScreen` keeps the cell's output as lines with a cursor, applies the
movements, and hands out either the text appended since last time or, when a line
that was already shown changed, the whole output to redraw (after a clear_output).
Colours (SGR sequences) are kept: every Jupyter front end renders them.
"""
from __future__ import annotations

import re

# CSI with parameters, OSC up to BEL/ST, two-char escapes, single controls, plain text.
_TOKEN = re.compile(
    r"(?P<csi>\x1b\[(?P<params>[0-?]*)[ -/]*(?P<final>[@-~]))"
    r"|(?P<osc>\x1b\][^\x07\x1b]*(?:\x07|\x1b\\))"
    r"|(?P<esc>\x1b[@-Z\\-_])"
    r"|(?P<ctl>[\x00-\x1f\x7f])"
    r"|(?P<text>[^\x00-\x1f\x7f\x1b]+)"
)
# An escape sequence cut in half by a read boundary: keep it for the next feed.
_PARTIAL = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*|)$")


class TerminalScreen:
    """The output of one cell, as a terminal would show it."""

    def __init__(self, max_lines: int = 5000):
        self.max_lines = max_lines
        self.lines: list[str] = [""]
        self.row = 0
        self.col = 0
        self._sent_rows = 0      # lines[:_sent_rows] were shown whole, newline included
        self._sent_cols = 0      # this many chars of lines[_sent_rows] were shown
        self._redraw = False     # a line that was shown changed
        self._carry = ""

    # -- feeding ---------------------------------------------------------------
    def feed(self, data: str) -> None:
        """Apply terminal output to the screen."""
        data = self._carry + data
        m = _PARTIAL.search(data)
        if m and m.start() >= max(0, len(data) - 256):
            self._carry, data = data[m.start():], data[:m.start()]
        else:
            self._carry = ""
        for tok in _TOKEN.finditer(data):
            kind = tok.lastgroup
            if kind == "text":
                self._write(tok.group("text"))
            elif tok.group("csi") is not None:
                self._csi(tok.group("params"), tok.group("final"))
            elif kind == "ctl":
                self._control(tok.group("ctl"))
            # OSC (window titles) and other escapes draw nothing.
        self._trim()

    def _touch(self, row: int, col: int) -> None:
        if row < self._sent_rows or (row == self._sent_rows and col < self._sent_cols):
            self._redraw = True

    def _write(self, text: str) -> None:
        line = self.lines[self.row]
        if self.col > len(line):
            line += " " * (self.col - len(line))
        self._touch(self.row, self.col)
        self.lines[self.row] = line[: self.col] + text + line[self.col + len(text):]
        self.col += len(text)

    def _down(self, n: int = 1) -> None:
        self.row += n
        while self.row >= len(self.lines):
            self.lines.append("")

    def _control(self, ch: str) -> None:
        if ch == "\n":
            self._down()
            self.col = 0
        elif ch == "\r":
            self.col = 0
        elif ch == "\b":
            self.col = max(0, self.col - 1)
        elif ch == "\t":
            self._write(" " * (8 - self.col % 8))

    def _csi(self, params: str, final: str) -> None:
        if final == "m":  # colour: keep it, zero width on screen but part of the text
            line = self.lines[self.row]
            self._touch(self.row, self.col)
            line = line.ljust(self.col)
            sgr = f"\x1b[{params}m"
            self.lines[self.row] = line[: self.col] + sgr + line[self.col:]
            self.col += len(sgr)
            return
        nums = [int(p) if p.isdigit() else 0 for p in params.lstrip("?").split(";")] if params else []
        n = max(nums[0], 1) if nums else 1
        if final == "A":
            self.row = max(0, self.row - n)
        elif final in "BE":
            self._down(n)
            if final == "E":
                self.col = 0
        elif final == "F":
            self.row = max(0, self.row - n)
            self.col = 0
        elif final == "C":
            self.col += n
        elif final == "D":
            self.col = max(0, self.col - n)
        elif final == "G":
            self.col = n - 1
        elif final == "K":
            mode = nums[0] if nums else 0
            line = self.lines[self.row]
            if mode == 0:
                if self.col < len(line):
                    self._touch(self.row, self.col)
                    self.lines[self.row] = line[: self.col]
            else:
                if line:
                    self._touch(self.row, 0)
                self.lines[self.row] = (" " * self.col + line[self.col:]) if mode == 1 else ""
        elif final == "J" and nums and nums[0] in (2, 3):  # `clear`
            if any(self.lines):
                self._redraw = True
            self.lines, self.row, self.col = [""], 0, 0
        elif final in "Hf":
            # Absolute positions only make sense on a full-screen program; home is
            # the top of what is on screen: the last 24 rows.
            top = max(0, len(self.lines) - 24)
            r = (nums[0] if nums else 1) or 1
            c = (nums[1] if len(nums) > 1 else 1) or 1
            self.row = top + r - 1
            self._down(0)
            self.col = c - 1

    def _trim(self) -> None:
        extra = len(self.lines) - self.max_lines
        if extra > 0 and not self._redraw and self._sent_rows >= extra and self.row >= extra:
            del self.lines[:extra]
            self.row -= extra
            self._sent_rows -= extra

    # -- reading -----------------------------------------------------------------
    def take(self) -> tuple[bool, str]:
        """What to show now: (redraw, text).

        redraw False: text is to be appended to what was shown.
        redraw True: clear the output and show text instead.
        """
        if self._redraw:
            redraw, text = True, "\n".join(self.lines)
        else:
            redraw = False
            text = "\n".join(self.lines[self._sent_rows:])[self._sent_cols:]
        self._redraw = False
        self._sent_rows = len(self.lines) - 1
        self._sent_cols = len(self.lines[-1])
        return redraw, text

    @property
    def pending(self) -> bool:
        """True if take() would return something."""
        return self._redraw or len(self.lines) - 1 > self._sent_rows or \
            len(self.lines[-1]) > self._sent_cols

    def text(self) -> str:
        """Everything on the screen (what the cell shows once done)."""
        return "\n".join(self.lines)
