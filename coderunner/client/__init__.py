"""The user-facing clients: ``CodeRunner`` (sync) and ``AsyncCodeRunner`` (async), twins over one pure core.

Method names follow the InstaVM SDK (``execute``, ``execute_async``,
``get_task_result``, ``start_session``, ``close_session``,
``is_session_active``, ``upload_file``, ``download_file``) so a script moves
between local and cloud unchanged; explicit :class:`Session` objects,
``list_files`` and ``install_packages`` are our own richer API.

Where things are: ``core.py`` (what both share, no I/O), ``sync.py`` (:class:`CodeRunner`, :class:`Session`),
``aio.py`` (:class:`AsyncCodeRunner`, :class:`AsyncSession`).
"""

from __future__ import annotations

from coderunner.client.aio import AsyncCodeRunner, AsyncSession
from coderunner.client.sync import CodeRunner, Session

__all__ = ["AsyncCodeRunner", "AsyncSession", "CodeRunner", "Session"]
