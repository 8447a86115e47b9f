"""The line learners' starts wait in when a whole class presses Start at once.

Starting a learner's engine and notebook server is CPU work (a dockerd booting, a
Jupyter server importing its extensions). Thirty of them at once on a small machine
share the CPU thirty ways, and every learner waits for the slowest. The line lets
`limit` starts run at a time, first come, first served, and tells each waiting learner
their place as it changes ("you are 12th in line"), which the spawn page shows.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ... 11th, 12th, 13th, ... 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class StartLine:
    """First come, first served: at most `limit` holders at once; the rest wait in line.

    `enter(told)` is an async context manager. While its caller waits, `told(place)` is
    called with the caller's place in line (1 is next) each time it changes; it is not
    called for a caller who gets in at once. A caller cancelled while waiting (its
    learner's start timed out or was stopped) leaves the line, and the ones behind move
    up. `limit` may be changed at any time; it is read on each admission.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.running = 0
        self._line: list[asyncio.Future] = []
        self._moved = asyncio.Event()
        self._idle_since: float | None = time.monotonic()

    def quiet_for(self) -> float:
        """Seconds since the last start left the line (0 while one is starting or waiting)."""
        if self.running or self._line or self._idle_since is None:
            return 0.0
        return time.monotonic() - self._idle_since

    @property
    def waiting(self) -> int:
        return len(self._line)

    def _admit(self) -> None:
        while self._line and self.running < max(1, self.limit):
            self._line.pop(0).set_result(None)
            self.running += 1
        self._idle_since = None if self.running or self._line else time.monotonic()
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    @contextlib.asynccontextmanager
    async def enter(self, told: Callable[[int], None] = lambda place: None) -> AsyncIterator[None]:
        turn = asyncio.get_running_loop().create_future()
        self._line.append(turn)
        self._admit()
        said = None
        try:
            while not turn.done():
                place = self._line.index(turn) + 1
                if place != said:
                    told(place)
                    said = place
                moved = asyncio.ensure_future(self._moved.wait())
                try:
                    await asyncio.wait({turn, moved}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    moved.cancel()
        except BaseException:
            if turn in self._line:
                self._line.remove(turn)
                self._admit()
                raise
            # Let in just as it was cancelled: give the place back.
            self.running -= 1
            self._admit()
            raise
        try:
            yield
        finally:
            self.running -= 1
            self._admit()
