"""The one way the hub runs blocking Docker work: a shared thread pool.

DockerSpawner runs its own calls to the operator's engine on `spawner.executor`; the
spawner returns this pool there, and providers' blocking methods run on it too, so
every blocking Docker call of the hub goes through one executor. It has several
threads: one slow call (say an engine being removed) does not hold up every other
learner's spawn. Each call makes its own Docker client, so a slow or dead endpoint
stalls only its own spawn.
"""
from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor

THREADS = 16
_pool: ThreadPoolExecutor | None = None


def docker_executor() -> ThreadPoolExecutor:
    """The hub's pool for blocking Docker work (made on first use)."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(THREADS, thread_name_prefix="whale-docker")
    return _pool


async def blocking(func, *args, timeout: float | None = None, **kwargs):
    """Run `func(*args, **kwargs)` on the Docker executor; give up waiting after
    `timeout` seconds (asyncio.TimeoutError)."""
    loop = asyncio.get_running_loop()
    call = functools.partial(func, *args, **kwargs)
    return await asyncio.wait_for(loop.run_in_executor(docker_executor(), call), timeout)
