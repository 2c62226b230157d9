"""SessionTable: lookups with the gone-reason, the bounded record of gone ids, capacity, expiry."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from coderunner.engine.table import KEEP, SessionTable
from coderunner.errors import CapacityError, SessionNotFoundError


@dataclass
class Fake:
    """A session as the table sees it: it decides itself whether it expired."""

    name: str
    idle_timeout: float | None = None
    expires_at: datetime | None = None
    reason: str | None = None

    def expiry_reason(self, now: float, /) -> str | None:
        return self.reason


class Lost(SessionNotFoundError):
    code = "lost_for_the_test"


def _table(limit: int = 10, **messages_and_keep: Any) -> SessionTable[Fake]:
    return SessionTable(limit, **messages_and_keep)


def _add(table: SessionTable[Fake], sid: str, session: Fake | None = None) -> Fake:
    session = session or Fake(sid)
    with table.reserve() as place:
        place.add(sid, session)
    return session


# -- lookups and reasons ---------------------------------------------------------------------------


def test_live_sessions_are_found_counted_and_listed() -> None:
    table = _table()
    a, b = _add(table, "a"), _add(table, "b")
    assert table.get("a") is a and table.get("b") is b
    assert len(table) == 2 and "a" in table and "zzz" not in table
    assert table.values() == [a, b]
    assert not table.is_gone("a")


def test_an_unknown_id_says_it_does_not_exist() -> None:
    with pytest.raises(SessionNotFoundError) as caught:
        _table().get("nope")
    assert caught.value.message == "Session 'nope' does not exist. Create one with create_session()."
    assert type(caught.value) is SessionNotFoundError


def test_a_forgotten_id_says_why_it_is_gone() -> None:
    table = _table()
    session = _add(table, "a")
    assert table.forget("a", "it was closed") is session
    assert "a" not in table and len(table) == 0 and table.is_gone("a")
    with pytest.raises(SessionNotFoundError, match=r"^Session a is gone: it was closed\. Start a new session\.$"):
        table.get("a")


def test_forget_records_the_error_class_to_raise() -> None:
    table = _table()
    _add(table, "a")
    table.forget("a", "its browser crashed", error=Lost)
    with pytest.raises(Lost, match="its browser crashed"):
        table.get("a")


def test_forgetting_an_id_that_was_never_live_still_records_it() -> None:
    # A creation that failed half-way: the caller's id must not read as 'does not exist'.
    table = _table()
    assert table.forget("half", "its interpreter failed to start") is None
    assert table.is_gone("half")
    with pytest.raises(SessionNotFoundError, match="its interpreter failed to start"):
        table.get("half")


def test_messages_are_the_callers() -> None:
    table = _table(
        gone="Browser session {session_id} is gone: {reason}. Bye.",
        unknown="Browser session {session_id!r}? Never heard of it.",
    )
    with pytest.raises(SessionNotFoundError, match=r"^Browser session 'x'\? Never heard of it\.$"):
        table.get("x")
    _add(table, "y")
    table.forget("y", "a reason with {braces}")  # the reason is data, not a template
    with pytest.raises(SessionNotFoundError, match=r"^Browser session y is gone: a reason with \{braces\}\. Bye\.$"):
        table.get("y")


def test_forget_all_remembers_every_session_and_clear_remembers_none() -> None:
    table = _table()
    a, b = _add(table, "a"), _add(table, "b")
    assert table.forget_all("the runner was closed") == [a, b]
    assert len(table) == 0
    for sid in ("a", "b"):
        with pytest.raises(SessionNotFoundError, match="is gone: the runner was closed"):
            table.get(sid)

    c = _add(table, "c")
    assert table.clear() == [c]
    assert len(table) == 0 and not table.is_gone("c")
    with pytest.raises(SessionNotFoundError, match="does not exist"):
        table.get("c")


# -- the bound on gone ids -------------------------------------------------------------------------


def test_only_the_newest_gone_ids_are_remembered() -> None:
    table = _table(keep=3)
    for i in range(5):
        table.forget(f"s{i}", f"reason {i}")
    for i in (0, 1):
        assert not table.is_gone(f"s{i}")
        with pytest.raises(SessionNotFoundError, match="does not exist"):
            table.get(f"s{i}")
    for i in (2, 3, 4):
        with pytest.raises(SessionNotFoundError, match=f"is gone: reason {i}"):
            table.get(f"s{i}")


def test_the_default_bound_is_a_thousand() -> None:
    table = _table()
    for i in range(KEEP + 1):
        table.forget(str(i), "it was closed")
    assert KEEP == 1000
    assert not table.is_gone("0")
    assert table.is_gone("1") and table.is_gone(str(KEEP))


def test_forgetting_again_updates_the_reason_in_place() -> None:
    table = _table(keep=2)
    table.forget("a", "first")
    table.forget("b", "second")
    table.forget("a", "its page crashed", error=Lost)
    with pytest.raises(Lost, match="its page crashed"):
        table.get("a")
    table.forget("c", "third")  # 'a' is still the oldest record: it goes first
    assert not table.is_gone("a") and table.is_gone("b") and table.is_gone("c")


# -- capacity --------------------------------------------------------------------------------------


def test_a_full_table_refuses_with_the_count_and_the_limit() -> None:
    table = _table(limit=2)
    _add(table, "a")
    _add(table, "b")
    with pytest.raises(CapacityError) as caught:
        _add(table, "c")
    assert caught.value.message == (
        "This runner already has 2 sessions (max_sessions=2). Close one, or raise CODERUNNER_MAX_SESSIONS."
    )
    assert caught.value.retryable
    table.forget("a", "it was closed")
    _add(table, "c")  # a closed session makes room
    assert len(table) == 2


def test_sessions_being_created_count_but_are_not_reported_as_open() -> None:
    table = _table(limit=2, full="{count} open (max {limit})")
    _add(table, "a")
    with table.reserve() as place:
        with pytest.raises(CapacityError, match=r"^1 open \(max 2\)$"):
            _add(table, "b")
        place.add("c", Fake("c"))
    assert [s.name for s in table.values()] == ["a", "c"]


def test_a_creation_that_fails_gives_its_place_back() -> None:
    table = _table(limit=1)
    with pytest.raises(OSError), table.reserve():
        raise OSError("disk full")
    _add(table, "a")
    assert len(table) == 1


def test_a_place_takes_one_session() -> None:
    table = _table()
    with table.reserve() as place:
        place.add("a", Fake("a"))
        with pytest.raises(RuntimeError):
            place.add("b", Fake("b"))
    assert len(table) == 1
    _add(table, "c")  # the used place was not given back a second time
    with table.reserve(), table.reserve():
        pass
    assert len(table) == 2


async def test_a_place_is_held_across_an_await() -> None:
    table = _table(limit=1)
    started = asyncio.Event()

    async def create(sid: str) -> None:
        with table.reserve() as place:
            started.set()
            await asyncio.sleep(0.05)  # e.g. a browser context being prepared
            place.add(sid, Fake(sid))

    first = asyncio.ensure_future(create("a"))
    await started.wait()
    with pytest.raises(CapacityError):
        await create("b")
    await first
    assert [s.name for s in table.values()] == ["a"]


def test_threads_creating_at_once_never_pass_the_limit() -> None:
    table = _table(limit=5)
    barrier = threading.Barrier(20)
    refused: list[str] = []

    def create(i: int) -> None:
        barrier.wait()
        try:
            with table.reserve() as place:
                time.sleep(0.01)  # e.g. a container starting
                place.add(str(i), Fake(str(i)))
        except CapacityError:
            refused.append(str(i))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(table) == 5 and len(refused) == 15


# -- expiry ----------------------------------------------------------------------------------------


def test_expire_takes_out_what_says_it_expired_and_records_when() -> None:
    table = _table()
    idle = _add(table, "idle", Fake("idle", reason="it was idle for more than 300 s"))
    _add(table, "busy")
    gone = table.expire(time.monotonic())
    assert [(g.session_id, g.session, g.reason) for g in gone] == [("idle", idle, "it was idle for more than 300 s")]
    assert [s.name for s in table.values()] == ["busy"]
    with pytest.raises(SessionNotFoundError) as caught:
        table.get("idle")
    match = re.fullmatch(
        r"Session idle is gone: it expired at (\S+) because it was idle for more than 300 s\. Start a new session\.",
        caught.value.message,
    )
    assert match is not None
    stamp = datetime.fromisoformat(match.group(1))
    assert stamp.tzinfo is not None and abs(stamp - datetime.now(timezone.utc)) < timedelta(seconds=5)
    assert table.expire(time.monotonic()) == []


def test_expire_passes_the_time_of_the_check() -> None:
    seen: list[float] = []

    class Clocked(Fake):
        def expiry_reason(self, now: float, /) -> str | None:
            seen.append(now)
            return None

    table = _table()
    _add(table, "a", Clocked("a"))
    table.expire(123.5)
    assert seen == [123.5]


def test_next_check_is_a_quarter_of_the_shortest_idle_timeout() -> None:
    table = _table()
    assert table.next_check(floor=0.1) == 5.0
    _add(table, "a", Fake("a", idle_timeout=8.0))
    _add(table, "b", Fake("b", idle_timeout=12.0))
    _add(table, "never", Fake("never", idle_timeout=0))
    assert table.next_check(floor=0.1) == 2.0
    assert table.next_check(floor=0.1, longest=1.0) == 1.0
    _add(table, "c", Fake("c", idle_timeout=0.04))
    assert table.next_check(floor=0.05) == 0.05


def test_next_check_is_due_when_a_lifetime_ends() -> None:
    table = _table()
    _add(table, "a", Fake("a", expires_at=datetime.now(timezone.utc) + timedelta(seconds=3)))
    assert 2.5 < table.next_check(floor=0.1) <= 3.0
    _add(table, "late", Fake("late", expires_at=datetime.now(timezone.utc) - timedelta(seconds=60)))
    assert table.next_check(floor=0.1) == 0.1
