"""The line a class's starts wait in (whale_hub.startline): first come, first served, at
most `limit` at once, each waiting learner told their place as it changes."""
from __future__ import annotations

import asyncio

import pytest

from whale_hub.startline import StartLine, ordinal


def test_ordinals_read_as_english():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111, 112)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st",
        "111th", "112th"]


async def crowd(line: StartLine, n: int, work: float = 0.02, cancel: set[int] = frozenset()):
    """n learners enter at once (in order); returns (order they got in, places each was
    told, most holders at any moment)."""
    order, told, busiest = [], {i: [] for i in range(n)}, [0]

    async def learner(i):
        async with line.enter(told[i].append):
            order.append(i)
            busiest[0] = max(busiest[0], line.running)
            await asyncio.sleep(work)

    tasks = []
    for i in range(n):
        tasks.append(asyncio.ensure_future(learner(i)))
        await asyncio.sleep(0)  # each is in line before the next arrives
    for i in cancel:
        tasks[i].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return order, told, busiest[0]


def test_at_most_limit_at_once_first_come_first_served():
    line = StartLine(2)
    order, told, busiest = asyncio.run(crowd(line, 6))
    assert order == [0, 1, 2, 3, 4, 5]
    assert busiest == 2
    # The first two got in at once and were told nothing. The others heard their place
    # on arriving, then each time it changed (two leaving together move it by two).
    assert told[0] == told[1] == []
    for i in range(2, 6):
        assert told[i][0] == i - 1, told
        assert all(a > b >= 1 for a, b in zip(told[i], told[i][1:], strict=False)), told
    assert len(told[5]) >= 2, told
    assert (line.running, line.waiting) == (0, 0)


def test_a_learner_who_gives_up_leaves_the_line_and_the_rest_move_up():
    line = StartLine(1)
    order, told, _ = asyncio.run(crowd(line, 4, work=0.3, cancel={2}))
    assert order == [0, 1, 3]
    assert told[3][:2] == [3, 2]
    assert told[3][-1] == 1
    assert (line.running, line.waiting) == (0, 0)


def test_a_start_that_fails_gives_its_place_to_the_next():
    line = StartLine(1)

    async def go():
        async def fails():
            async with line.enter():
                raise RuntimeError("the engine did not start")

        async def waits():
            async with line.enter():
                return line.running

        first = asyncio.ensure_future(fails())
        await asyncio.sleep(0)
        second = asyncio.ensure_future(waits())
        with pytest.raises(RuntimeError, match="did not start"):
            await first
        return await asyncio.wait_for(second, 2)

    assert asyncio.run(go()) == 1
    assert (line.running, line.waiting) == (0, 0)


def test_a_raised_limit_lets_more_in_at_the_next_move():
    line = StartLine(1)

    async def go():
        async def hold(release):
            async with line.enter():
                await release.wait()

        release = asyncio.Event()
        tasks = [asyncio.ensure_future(hold(release)) for _ in range(3)]
        await asyncio.sleep(0.01)
        before = (line.running, line.waiting)
        line.limit = 3
        line._admit()  # what the next arrival or departure does
        await asyncio.sleep(0.01)
        after = (line.running, line.waiting)
        release.set()
        await asyncio.gather(*tasks)
        return before, after

    assert asyncio.run(go()) == ((1, 2), (3, 0))
