"""asyncio helpers: honouring a cancellation that Python 3.11 can swallow, running coroutines until
the first one ends, and a concurrency limit that a hanging call cannot hold for long."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any


def honour_cancellation() -> None:
    """Raise CancelledError if the current task has been asked to stop.

    On Python 3.11, `asyncio.wait_for` (used inside aiomqtt and zeroconf) can swallow a cancellation
    that arrives just as the awaited operation completes; a `while True` loop would then run forever
    and shutdown would hang. Every long-running loop calls this once per turn.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def first_of(*coroutines: Coroutine[Any, Any, Any], name: str) -> None:
    """Run coroutines as tasks until the first one ends; cancel and await the rest; re-raise its error.

    Used instead of a TaskGroup where one side ending is normal (a reconnect, a device that moved):
    on Python 3.11 a TaskGroup aborted by a failing child leaves its parent task counted as
    cancelling, which would make every later `honour_cancellation()` stop the parent for good.
    """
    try:
        honour_cancellation()  # a cancellation swallowed just before must not be followed by a long wait
    except asyncio.CancelledError:
        for coroutine in coroutines:
            coroutine.close()
        raise
    tasks = [asyncio.create_task(c, name=f"{name}.{i}") for i, c in enumerate(coroutines)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()


class FairLimiter:
    """At most `size` calls at once, but a call may hold its slot for `hold` seconds only: a device that
    hangs or is retried by the library for many seconds (a dead one) goes on on its own time and never
    makes the others wait. The limit keeps CPU and sockets bounded; it is not a per-device budget."""

    def __init__(self, size: int, hold: float) -> None:
        self._slots = asyncio.Semaphore(size)
        self._hold = hold

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a slot; it is given back when the block ends or after `hold` seconds."""
        await self._slots.acquire()
        given_back = False

        def give_back() -> None:
            nonlocal given_back
            if not given_back:
                given_back = True
                self._slots.release()

        timer = asyncio.get_running_loop().call_later(self._hold, give_back)
        try:
            yield
        finally:
            timer.cancel()
            give_back()
