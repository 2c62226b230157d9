"""A private event loop on a daemon thread, so sync and async callers share one async engine.

Why not ``asyncio.run`` in the sync client: it fails inside a running loop
(Jupyter, FastAPI handlers). A dedicated loop thread works from anywhere, and
the async facade awaits the same futures without blocking its own loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["LoopThread"]


class LoopThread:
    """Runs an asyncio loop on a background thread until :meth:`stop`."""

    def __init__(self, name: str = "coderunner-engine") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def in_loop_thread(self) -> bool:
        """True when called from the loop's own thread (blocking there would deadlock)."""
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop and return a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and block the calling thread for its result."""
        if self.in_loop_thread:
            coro.close()
            raise RuntimeError("LoopThread.run() called from the loop thread itself; await the coroutine instead.")
        return self.submit(coro).result(timeout)

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and await its result from another loop."""
        if self.in_loop_thread:
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    def stop(self) -> None:
        """Stop the loop and join the thread (pending tasks are cancelled)."""
        if not self.loop.is_running():
            return

        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if not self.in_loop_thread:
            with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                self.submit(_cancel_all()).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.in_loop_thread:
            self._thread.join(timeout=5)
            if not self._thread.is_alive():
                self.loop.close()
