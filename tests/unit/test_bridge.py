"""The sync/async bridge (coderunner.backends.bridge), on the real InProcess backend in both directions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from coderunner import ConfigurationError, SessionNotFoundError
from coderunner.backend import AsyncBackend, Backend
from coderunner.backends.bridge import AsyncBrowserBridge, SyncBrowserBridge, to_async_backend, to_sync_backend
from coderunner.backends.docker import AsyncDockerBackend
from coderunner.backends.inprocess import AsyncInProcessBackend, InProcessBackend
from coderunner.browser.protocol import AsyncBrowserBackend, BrowserBackend
from coderunner.config import Settings
from coderunner.errors import BackendError
from coderunner.specs import ExecRequest, SessionSpec
from coderunner.testing import AsyncFakeBackend, FakeBackend, FakeCall


@pytest.fixture(scope="module")
def inprocess() -> Iterator[InProcessBackend]:
    backend = InProcessBackend(Settings.from_env(pool_size=0))
    yield backend
    backend.close()


@pytest.fixture
def bridged(inprocess: InProcessBackend) -> AsyncBrowserBridge[InProcessBackend]:
    """The async twin of the (itself bridged) sync InProcess backend: calls in worker threads."""
    return to_async_backend(inprocess)  # never closed: that would close the shared sync backend


async def test_a_cancelled_execute_interrupts_its_session_which_keeps_its_state(
    bridged: AsyncBrowserBridge[InProcessBackend],
) -> None:
    sid = (await bridged.create_session()).session_id
    try:
        await bridged.execute(sid, ExecRequest("x = 41"))
        loop = asyncio.get_running_loop()
        started = asyncio.Event()

        def on_stdout(_: str) -> None:  # called from a worker thread
            loop.call_soon_threadsafe(started.set)

        task = asyncio.ensure_future(
            bridged.execute(
                sid,
                ExecRequest("import time\nprint('go', flush=True)\ntime.sleep(60)"),
                on_stdout=on_stdout,
            )
        )
        await asyncio.wait_for(started.wait(), 60)
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The worker thread's execute was interrupted, not left sleeping: the session is free, state intact.
        after = await bridged.execute(sid, ExecRequest("print(x + 1)"))
        assert after.stdout == "42\n" and after.error is None
        assert time.monotonic() - cancelled_at < 30
    finally:
        await bridged.close_session(sid)


async def test_errors_pass_through_unchanged(inprocess: InProcessBackend) -> None:
    # The real backend's error, the same through one bridge (sync InProcess) and through two (its async twin).
    with pytest.raises(SessionNotFoundError) as direct:
        inprocess.get_session("no-such-session")
    with pytest.raises(SessionNotFoundError) as twice:
        await to_async_backend(inprocess).get_session("no-such-session")
    assert twice.value.message == direct.value.message and twice.value.code == direct.value.code
    with pytest.raises(SessionNotFoundError):
        inprocess.browser_get_session("no-such-browser-session")
    # A user's failure stays data on the result, in both colours.
    sid = inprocess.create_session().session_id
    try:
        assert inprocess.execute(sid, ExecRequest("1/0")).error is not None
        assert (await to_async_backend(inprocess).execute(sid, ExecRequest("1/0"))).error is not None
    finally:
        inprocess.close_session(sid)

    # The very exception object a backend raised reaches the caller, in both directions.
    boom = BackendError("boom")

    def fail(call: FakeCall) -> str:
        raise boom

    with pytest.raises(BackendError) as through_threads:
        fake = to_async_backend(FakeBackend(fail))
        await fake.execute((await fake.create_session()).session_id, ExecRequest("x"))
    assert through_threads.value is boom
    on_a_loop = to_sync_backend(AsyncFakeBackend(fail))
    try:
        with pytest.raises(BackendError) as through_loop:
            on_a_loop.execute(on_a_loop.create_session().session_id, ExecRequest("x"))
        assert through_loop.value is boom
    finally:
        on_a_loop.close()


async def test_session_options_are_checked_against_the_wrapped_backend(
    bridged: AsyncBrowserBridge[InProcessBackend],
) -> None:
    # Through both bridges down to the engine's create_session, which takes no container options.
    with pytest.raises(ConfigurationError, match="no session option cpus"):
        await bridged.create_session(SessionSpec(options={"cpus": 2}))


def test_browser_methods_only_when_the_wrapped_backend_has_them(inprocess: InProcessBackend) -> None:
    with_browser = to_async_backend(inprocess)
    assert isinstance(with_browser, AsyncBackend) and isinstance(with_browser, AsyncBrowserBackend)
    assert isinstance(inprocess, Backend) and isinstance(inprocess, BrowserBackend)
    assert with_browser.name == "inprocess"

    plain = to_async_backend(FakeBackend())
    assert isinstance(plain, AsyncBackend) and not isinstance(plain, AsyncBrowserBackend)
    assert not hasattr(plain, "browser_navigate")
    sync_plain = to_sync_backend(AsyncFakeBackend())
    try:
        assert isinstance(sync_plain, Backend) and not isinstance(sync_plain, BrowserBackend)
        assert sync_plain.name == "fake"
    finally:
        sync_plain.close()

    # Checked on the class: building one would start Docker.
    assert issubclass(AsyncDockerBackend, AsyncBrowserBackend)


async def test_browser_calls_are_bridged(inprocess: InProcessBackend) -> None:
    # Listing needs no Chromium: the browser engine starts it with the first browser session.
    assert await to_async_backend(inprocess).browser_list_sessions() == []
    assert inprocess.browser_list_sessions() == []


def test_a_sync_bridge_with_its_own_loop_works_inside_a_running_loop_and_closes_everything() -> None:
    wrapped = AsyncInProcessBackend(Settings.from_env(pool_size=0))
    backend = to_sync_backend(wrapped)
    assert isinstance(backend, SyncBrowserBridge)

    async def from_a_running_loop() -> str:
        # Where asyncio.run would fail (Jupyter, FastAPI): the coroutines run on the bridge's loop thread.
        sid = backend.create_session().session_id
        return backend.execute(sid, ExecRequest("print(6 * 7)")).stdout

    assert asyncio.run(from_a_running_loop()) == "42\n"
    backend.close()
    backend.close()  # idempotent
    with pytest.raises(ConfigurationError, match="closed"):
        backend.list_sessions()
    with pytest.raises(ConfigurationError, match="closed"):  # the wrapped backend was closed too
        asyncio.run(wrapped.list_sessions())


def test_the_sync_inprocess_backend_refuses_calls_once_closed() -> None:
    backend = InProcessBackend(Settings.from_env(pool_size=0))
    sid = backend.create_session().session_id
    assert backend.execute(sid, ExecRequest("print(1)")).stdout == "1\n"
    assert backend.stats()["executions"] == 1 and backend.engine is backend.wrapped.engine
    backend.close()
    backend.close()
    with pytest.raises(ConfigurationError, match="create a new CodeRunner"):
        backend.execute(sid, ExecRequest("print(1)"))
