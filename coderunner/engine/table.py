"""The session table: live sessions, the bounded record of gone ones, capacity and expiry, written once.

Every host of sessions (the code engine, the browser engine, the Docker backend) keeps the same four
things: the live sessions by id; a bounded record of the ids that are gone and why, so that using one
raises a :class:`~coderunner.errors.SessionNotFoundError` saying "it expired at ... because it was idle
for more than 300 s" rather than "does not exist"; a ``max_sessions`` check that counts sessions still
being created; and the decision which sessions expired. :class:`SessionTable` is those four, and no I/O.

It is safe from any thread and from an event loop alike: every method takes a private lock for a few
dictionary operations and never waits for anything else while holding it. Waiting (the expiry loop's
sleep) and closing what a session holds (kernels, browser contexts, containers) stay with each host, in
its own colour: asyncio in the engines, threads in the Docker backend.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Generic, Protocol, TypeVar

from coderunner.errors import CapacityError, SessionNotFoundError

__all__ = ["Expirable", "Expired", "Reservation", "SessionTable"]

GONE = "Session {session_id} is gone: {reason}. Start a new session."
"""Default message for a session id that is gone (``{session_id}`` and ``{reason}`` are filled in)."""
UNKNOWN = "Session {session_id!r} does not exist. Create one with create_session()."
"""Default message for a session id that was never seen (or whose record was dropped)."""
FULL = "This runner already has {count} sessions (max_sessions={limit}). Close one, or raise CODERUNNER_MAX_SESSIONS."
"""Default message when the table is full (``{count}``: live sessions, ``{limit}``: the maximum)."""
KEEP = 1000
"""How many gone ids are remembered (oldest forgotten first): enough for any agent's recent past."""


class Expirable(Protocol):
    """What the table needs of a session to expire it: the session decides, the table asks."""

    @property
    def idle_timeout(self) -> float | None:
        """Seconds of inactivity after which the session expires (None or 0: never)."""

    @property
    def expires_at(self) -> datetime | None:
        """When the session's lifetime ends (None: no lifetime)."""

    def expiry_reason(self, now: float, /) -> str | None:
        """Why the session should expire at ``now`` (``time.monotonic()``), e.g. 'its lifetime ended'; None if not.

        Called with the table's lock held: it must decide from the session's own fields, not call the table.
        """


S = TypeVar("S", bound=Expirable)


@dataclass(frozen=True)
class Expired(Generic[S]):
    """A session that :meth:`SessionTable.expire` took out of the table, for its host to close."""

    session_id: str
    """The session's id."""
    session: S
    """The session itself, no longer in the table."""
    reason: str
    """The session's own reason, e.g. 'it was idle for more than 300 s' (the record says when, too)."""


class SessionTable(Generic[S]):
    """Live sessions by id, plus why the recently gone ones are gone.

    Args:
        limit: Most live sessions (``max_sessions``); sessions being created count too.
        gone: Message of the error for a gone id, with ``{session_id}`` and ``{reason}``.
        unknown: Message of the error for an id never seen, with ``{session_id}``.
        full: Message of the :class:`CapacityError` when full, with ``{count}`` and ``{limit}``.
        keep: How many gone ids to remember.
    """

    def __init__(
        self,
        limit: int,
        *,
        gone: str = GONE,
        unknown: str = UNKNOWN,
        full: str = FULL,
        keep: int = KEEP,
    ) -> None:
        self.limit = limit
        self._gone_message = gone
        self._unknown_message = unknown
        self._full_message = full
        self._keep = keep
        self._live: dict[str, S] = {}
        # id -> (reason, the error class to raise): a crashed browser session raises its own subclass.
        self._gone: OrderedDict[str, tuple[str, type[SessionNotFoundError]]] = OrderedDict()
        self._pending = 0
        self._lock = threading.Lock()

    # -- reading -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        """How many sessions are live (not counting those being created)."""
        with self._lock:
            return len(self._live)

    def __contains__(self, session_id: object) -> bool:
        """Whether ``session_id`` is live."""
        with self._lock:
            return session_id in self._live

    def values(self) -> list[S]:
        """The live sessions, as a list of their own (the table may change while it is walked)."""
        with self._lock:
            return list(self._live.values())

    def get(self, session_id: str) -> S:
        """The live session ``session_id``.

        Raises:
            SessionNotFoundError: It is gone (the message says why; the class is the one it was forgotten
                with), or it never existed.
        """
        with self._lock:
            session = self._live.get(session_id)
            record = self._gone.get(session_id)
        if session is not None:
            return session
        if record is not None:
            reason, error = record
            raise error(self._gone_message.format(session_id=session_id, reason=reason))
        raise SessionNotFoundError(self._unknown_message.format(session_id=session_id))

    def is_gone(self, session_id: str) -> bool:
        """Whether ``session_id`` was live and is gone (closing it again is then a no-op)."""
        with self._lock:
            return session_id not in self._live and session_id in self._gone

    # -- adding ------------------------------------------------------------------------------------

    @contextmanager
    def reserve(self) -> Iterator[Reservation[S]]:
        """Hold a place for a session being created, for as long as the block runs.

        The place counts against ``limit`` from the check on, so sessions created at the same time (across
        an ``await`` or in other threads) cannot pass the limit together. Call :meth:`Reservation.add` in
        the block; a block that leaves without it (an error) gives the place back.

        Raises:
            CapacityError: ``limit`` sessions are live or being created.
        """
        with self._lock:
            if len(self._live) + self._pending >= self.limit:
                raise CapacityError(self._full_message.format(count=len(self._live), limit=self.limit))
            self._pending += 1
        reservation = Reservation(self)
        try:
            yield reservation
        finally:
            reservation._release()

    def _fill(self, session_id: str, session: S) -> None:
        with self._lock:
            self._pending -= 1
            self._live[session_id] = session

    def _give_back(self) -> None:
        with self._lock:
            self._pending -= 1

    # -- removing ----------------------------------------------------------------------------------

    def forget(
        self, session_id: str, reason: str, *, error: type[SessionNotFoundError] = SessionNotFoundError
    ) -> S | None:
        """Take a session out and remember why: using its id later raises ``error`` with ``reason``.

        Args:
            session_id: The session; recorded as gone even when it is not live (a failed creation).
            reason: Completes "Session X is gone: ...", e.g. 'it was closed'.
            error: The exception class later lookups raise.

        Returns:
            The session, for the caller to close; None when it was not live.
        """
        with self._lock:
            return self._forget(session_id, reason, error)

    def _forget(self, session_id: str, reason: str, error: type[SessionNotFoundError]) -> S | None:
        session = self._live.pop(session_id, None)
        self._gone[session_id] = (reason, error)
        while len(self._gone) > self._keep:
            self._gone.popitem(last=False)
        return session

    def forget_all(self, reason: str) -> list[S]:
        """Take every live session out, each remembered as gone for ``reason`` (e.g. 'the runner was closed')."""
        with self._lock:
            sessions = list(self._live.values())
            for sid in list(self._live):
                self._forget(sid, reason, SessionNotFoundError)
            return sessions

    def clear(self) -> list[S]:
        """Take every live session out without remembering them: their ids become unknown."""
        with self._lock:
            sessions = list(self._live.values())
            self._live.clear()
            return sessions

    # -- expiry ------------------------------------------------------------------------------------

    def expire(self, now: float) -> list[Expired[S]]:
        """Take out every session whose :meth:`~Expirable.expiry_reason` says it expired at ``now``.

        Each is remembered as gone "at <UTC time> because <its reason>". Deciding and taking out happen
        together, so a session cannot be used between the two.

        Args:
            now: ``time.monotonic()`` of this check.

        Returns:
            The expired sessions, for the host to log and close.
        """
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        expired: list[Expired[S]] = []
        with self._lock:
            for sid, session in list(self._live.items()):
                reason = session.expiry_reason(now)
                if reason:
                    self._forget(sid, f"it expired at {stamp} because {reason}", SessionNotFoundError)
                    expired.append(Expired(sid, session, reason))
        return expired

    def next_check(self, *, floor: float, longest: float = 5.0) -> float:
        """Seconds until the next expiry check is due: a quarter of the shortest idle timeout, or a lifetime's end.

        Args:
            floor: Never less than this (a lifetime already over would otherwise give a busy loop).
            longest: Never more than this.
        """
        limits = [longest]
        wall = time.time()
        with self._lock:
            for s in self._live.values():
                if s.idle_timeout:
                    limits.append(s.idle_timeout / 4)
                if s.expires_at is not None:
                    limits.append(s.expires_at.timestamp() - wall)
        return max(floor, min(limits))


class Reservation(Generic[S]):
    """A place in a :class:`SessionTable` held by :meth:`SessionTable.reserve` for one session being created."""

    def __init__(self, table: SessionTable[S]) -> None:
        self._table = table
        self._open = True

    def add(self, session_id: str, session: S) -> None:
        """Put the created session in the place: it is live from now on."""
        if not self._open:
            raise RuntimeError("This reservation was used already.")
        self._open = False
        self._table._fill(session_id, session)

    def _release(self) -> None:
        if self._open:
            self._open = False
            self._table._give_back()
