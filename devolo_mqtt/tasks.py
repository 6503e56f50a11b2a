"""asyncio helpers for long-running loops: honouring a cancellation that Python 3.11 can swallow, and
running coroutines until the first one ends."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
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
