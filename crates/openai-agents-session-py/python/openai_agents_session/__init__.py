"""Durable conversation memory for the OpenAI Agents SDK, with a Rust core underneath.

Drop-in sessions for ``agents.Runner``::

    from openai_agents_session import RedisSession, SQLiteSession
    session = RedisSession(session_id="user-123-conv-456", redis_client=client, ttl=3600)
    result = await Runner.run(agent, "Hello", session=session)

Every method is a genuine awaitable running in Rust: it never waits on the event loop's thread
(SQLite's short reads, and its appends with ``synchronous=normal`` when its writer is idle, are
answered there at once, in tens of microseconds, never waiting for a lock or an fsync). Sessions
created from the same client or URL share one store (one connection pool, one runtime);
constructors do no I/O.

One run at a time per conversation, across processes, with a lease and its fencing token::

    async with session.lease("worker-1", ttl=30.0, wait=60.0) as fenced:
        result = await Runner.run(agent, "Hello", session=fenced)
"""

from __future__ import annotations

import asyncio
import atexit
import copy
import datetime as _datetime
import inspect
import json
import math
import os
import threading
from typing import Any, Dict, Generic, List, Mapping, Optional, Tuple, Type, TypeVar, Union
from urllib.parse import quote, urlencode

from ._native import NativeError, NativeStore, _close_exit_gate

# Before the interpreter finalizes, wait for the native runtime's threads to finish delivering
# results: one that needs the GIL during finalization would abort the process (SIGABRT).
atexit.register(_close_exit_gate)

__version__ = "0.2.0.dev0"

__all__ = [
    "ConfigError",
    "DynamoDBSession",
    "EncryptionKeyMissingError",
    "FencedError",
    "HistoryConflictError",
    "InvalidInputError",
    "InvalidSessionIdError",
    "LeaseHeldError",
    "LegacyDataError",
    "OutcomeUnknownConnectionError",
    "OutcomeUnknownError",
    "OutcomeUnknownTimeoutError",
    "PostgresSession",
    "RedisSession",
    "SQLiteSession",
    "SessionClosedError",
    "SessionConnectionError",
    "SessionError",
    "SessionLease",
    "SessionNotFoundError",
    "SessionTimeoutError",
    "SessionTooLargeError",
    "UnreadableRecordError",
    "UnsupportedFormatError",
    "__version__",
    "create_table_if_not_exists",
    "generate_encryption_key",
    "open_session",
]

try:  # A real SessionABC when the Agents SDK is installed: isinstance holds, the Runner accepts it.
    from agents.memory import SessionABC as _SessionBase
except Exception:  # pragma: no cover - exercised without openai-agents
    import abc

    class _SessionBase(abc.ABC):  # type: ignore[no-redef]
        session_id: str
        session_settings: Any = None

try:
    from agents.memory import SessionSettings as _SessionSettings
except Exception:  # pragma: no cover - exercised without openai-agents
    import dataclasses as _dataclasses

    @_dataclasses.dataclass
    class _SessionSettings:  # type: ignore[no-redef]
        """The SDK's ``SessionSettings`` when openai-agents is not installed: ``limit`` is the
        default of ``get_items()`` (None: every item)."""

        limit: Optional[int] = None

        def resolve(self, override: Any) -> "_SessionSettings":
            if override is None:
                return self
            if isinstance(override, dict):
                override = _SessionSettings(**override)
            changes = {f.name: getattr(override, f.name) for f in _dataclasses.fields(self) if getattr(override, f.name) is not None}
            return _dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------------- errors ---
#
# One table for every surface (the Rust core's ErrorKind::name() is the `kind`; the Node package
# uses the same class names and kinds):
#
#   kind                  class                           also an instance of
#   invalid_input         InvalidInputError               SessionError, ValueError
#   invalid_session_id    InvalidSessionIdError           InvalidInputError
#   too_large             SessionTooLargeError            InvalidInputError
#   config                ConfigError                     InvalidInputError
#   encryption_key_missing EncryptionKeyMissingError      ConfigError
#     (the session holds encrypted records; the store was opened without a key)
#   not_found             SessionNotFoundError            SessionError, LookupError
#   connection            SessionConnectionError          SessionError, ConnectionError, redis-py's
#   timeout               SessionTimeoutError             SessionError, TimeoutError, redis-py's
#   outcome_unknown       OutcomeUnknownTimeoutError      OutcomeUnknownError, SessionTimeoutError
#     (cause timeout)
#   outcome_unknown       OutcomeUnknownConnectionError   OutcomeUnknownError, SessionConnectionError
#     (cause connection)
#   outcome_unknown       OutcomeUnknownError             SessionError
#     (no cause)
#   unreadable            UnreadableRecordError           SessionError
#   unsupported_format    UnsupportedFormatError          SessionError
#   legacy_data           LegacyDataError                 SessionError
#   conflict              HistoryConflictError            SessionError, ValueError
#     (.reason: operation_reused or suffix_mismatch)
#   lease_held            LeaseHeldError                  SessionError, ValueError
#     (.lease, .owner, .expires_at: the holder)
#   fenced                FencedError                     SessionError, ValueError
#     (.lease: the session's live lease, if any)
#   backend (and any      SessionError                    Exception
#     kind added later)

try:  # Redis connection and timeout errors are also redis-py's, so the seed's handlers work.
    import redis.exceptions as _redis_exceptions

    _REDIS_CONNECTION: tuple = (_redis_exceptions.ConnectionError,)
    _REDIS_TIMEOUT: tuple = (_redis_exceptions.TimeoutError,)
    # redis-py (>= 6) reads these in its __repr__ and handlers; its __init__ never runs for
    # our classes (the builtin OSError base does not chain to it), so they are set here.
    _REDIS_ERROR_TYPE: Any = getattr(getattr(_redis_exceptions, "ExceptionType", None), "NETWORK", None)
except Exception:  # pragma: no cover
    _REDIS_CONNECTION = ()
    _REDIS_TIMEOUT = ()
    _REDIS_ERROR_TYPE = None


class SessionError(Exception):
    """Any failure of a session operation; the message names the operation and the session.

    ``kind`` is the stable name of the failure (the table above), ``operation`` the call that
    failed (``get_items``, ``add_items``, ``pop_item``, ``clear_session``, ``open``...) and
    ``session_id`` the session it was about, or None."""

    kind: str = "backend"
    operation: Optional[str] = None
    session_id: Optional[str] = None
    error_type: Any = _REDIS_ERROR_TYPE
    status_code: Optional[str] = None

    def __init__(self, message: str = "", *, kind: Optional[str] = None, operation: Optional[str] = None, session_id: Optional[str] = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        self.operation = operation
        self.session_id = session_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class InvalidInputError(SessionError, ValueError):
    """The input breaks the contract (not a JSON object, a bad option value...); nothing was written."""

    kind = "invalid_input"


class InvalidSessionIdError(InvalidInputError):
    """The session id is empty or too long."""

    kind = "invalid_session_id"


class SessionTooLargeError(InvalidInputError):
    """An item is larger than max_item_bytes; nothing was written."""

    kind = "too_large"


class ConfigError(InvalidInputError):
    """The store URL is unusable: unknown scheme or option, missing path, failed authentication."""

    kind = "config"


class EncryptionKeyMissingError(ConfigError):
    """The session holds encrypted records and the store was opened without an encryption key
    (``encryption_key=``, or the URL's ``encryption_key_env`` / ``encryption_key_file``).
    Nothing was changed."""

    kind = "encryption_key_missing"


class SessionNotFoundError(SessionError, LookupError):
    """The session does not exist (or has expired)."""

    kind = "not_found"


class SessionConnectionError(SessionError, ConnectionError, *_REDIS_CONNECTION):  # type: ignore[misc]
    """The store could not be reached (or the connection failed); nothing was applied."""

    kind = "connection"


class SessionTimeoutError(SessionError, TimeoutError, *_REDIS_TIMEOUT):  # type: ignore[misc]
    """The store did not answer in time; nothing was applied."""

    kind = "timeout"


class OutcomeUnknownError(SessionError):
    """A write was sent but its answer was lost: it may or may not have been applied."""

    kind = "outcome_unknown"


class OutcomeUnknownTimeoutError(OutcomeUnknownError, SessionTimeoutError):
    """A write got no answer in time: it may or may not have been applied. Also a
    ``TimeoutError`` (and redis-py's), so the seed's ``except redis.TimeoutError:`` catches it."""

    kind = "outcome_unknown"


class OutcomeUnknownConnectionError(OutcomeUnknownError, SessionConnectionError):
    """The connection failed while a write was in flight: it may or may not have been applied.
    Also a ``ConnectionError`` (and redis-py's)."""

    kind = "outcome_unknown"


class UnreadableRecordError(SessionError):
    """A stored record cannot be read with this configuration; it was left in place."""

    kind = "unreadable"


class UnsupportedFormatError(SessionError):
    """Stored data is in a newer format version than this build understands."""

    kind = "unsupported_format"


class LegacyDataError(SessionError):
    """Data in an older program's layout was found; the message names the migration to run."""

    kind = "legacy_data"


class HistoryConflictError(SessionError, ValueError):
    """``apply_history_transaction`` was refused; nothing was changed. ``reason`` says why:
    ``"operation_reused"`` (the operation id was used before for another transaction) or
    ``"suffix_mismatch"`` (the newest items are not ``expected_suffix``). Not retryable as is:
    read the history again and retry with a new operation id."""

    kind = "conflict"
    reason: Optional[str] = None

    def __init__(self, message: str = "", *, reason: Optional[str] = None, kind: Optional[str] = None, operation: Optional[str] = None, session_id: Optional[str] = None) -> None:
        super().__init__(message, kind=kind, operation=operation, session_id=session_id)
        self.reason = reason


LeaseInfo = Dict[str, Any]
"""A lease as ``lease_info()`` gives it: ``{"owner": str, "token": int, "expires_at": datetime}``
(``expires_at`` timezone-aware, UTC)."""

_EPOCH = _datetime.datetime(1970, 1, 1, tzinfo=_datetime.timezone.utc)


def _lease_info(lease: Any) -> Optional[LeaseInfo]:
    """The dict of a native lease ``(owner, token, expires_at in epoch milliseconds)``."""
    if lease is None:
        return None
    owner, token, millis = lease
    return {"owner": owner, "token": int(token), "expires_at": _EPOCH + _datetime.timedelta(milliseconds=int(millis))}


class LeaseHeldError(SessionError, ValueError):
    """``session.lease()`` found the session's lease held by another owner (and ``wait``, if
    given, ran out); nothing was changed. ``lease`` is the holder's lease (``lease_info()``'s
    dict), ``owner`` and ``expires_at`` its owner and expiry (None when not known)."""

    kind = "lease_held"
    lease: Optional[LeaseInfo] = None

    def __init__(self, message: str = "", *, lease: Optional[LeaseInfo] = None, kind: Optional[str] = None, operation: Optional[str] = None, session_id: Optional[str] = None) -> None:
        super().__init__(message, kind=kind, operation=operation, session_id=session_id)
        self.lease = lease

    @property
    def owner(self) -> Optional[str]:
        """The holder's owner label."""
        return None if self.lease is None else self.lease["owner"]

    @property
    def expires_at(self) -> Optional[_datetime.datetime]:
        """When the holder's lease expires unless renewed (timezone-aware, UTC)."""
        return None if self.lease is None else self.lease["expires_at"]


class FencedError(SessionError, ValueError):
    """A write of a fenced session (the one ``session.lease()`` yields) was refused because its
    fencing token is no longer the session's live lease: the block was left, the lease expired
    or another owner took it over. Nothing was changed. ``lease`` is the session's live lease
    at the time (``lease_info()``'s dict), or None when there is none or it is not known."""

    kind = "fenced"
    lease: Optional[LeaseInfo] = None

    def __init__(self, message: str = "", *, lease: Optional[LeaseInfo] = None, kind: Optional[str] = None, operation: Optional[str] = None, session_id: Optional[str] = None) -> None:
        super().__init__(message, kind=kind, operation=operation, session_id=session_id)
        self.lease = lease


class SessionClosedError(SessionError, RuntimeError):
    """The session was closed."""


_KINDS: Dict[str, Any] = {
    "invalid_input": InvalidInputError,
    "invalid_session_id": InvalidSessionIdError,
    "too_large": SessionTooLargeError,
    "config": ConfigError,
    "encryption_key_missing": EncryptionKeyMissingError,
    "not_found": SessionNotFoundError,
    "connection": SessionConnectionError,
    "timeout": SessionTimeoutError,
    "outcome_unknown": OutcomeUnknownError,
    "unreadable": UnreadableRecordError,
    "unsupported_format": UnsupportedFormatError,
    "legacy_data": LegacyDataError,
    "conflict": HistoryConflictError,
    "lease_held": LeaseHeldError,
    "fenced": FencedError,
    "backend": SessionError,
}

_OUTCOME_UNKNOWN_BY_CAUSE: Dict[Optional[str], Any] = {
    "timeout": OutcomeUnknownTimeoutError,
    "connection": OutcomeUnknownConnectionError,
    None: OutcomeUnknownError,
}


def _error_class(kind: str, cause: Optional[str]) -> Any:
    """The class of the error table for a core kind and cause (a kind added later: SessionError)."""
    if kind == "outcome_unknown":
        return _OUTCOME_UNKNOWN_BY_CAUSE.get(cause, OutcomeUnknownError)
    return _KINDS.get(kind, SessionError)


def _convert(err: NativeError, session_id: Optional[str] = None) -> SessionError:
    """The package's error for a core error (args: kind, cause, operation, session_id, message,
    reason, lease); ``session_id`` names the session when the core's error names none."""
    args = err.args
    if len(args) == 7:
        kind, cause, operation, sid, message, reason, lease = args
    else:  # pragma: no cover - the transport always sends seven
        kind, cause, operation, sid, message, reason, lease = "backend", None, None, None, str(err), None, None
    cls = _error_class(kind, cause)
    sid = sid if sid is not None else session_id
    if issubclass(cls, HistoryConflictError):
        return cls(message, reason=reason, kind=kind, operation=operation, session_id=sid)  # type: ignore[no-any-return]
    if issubclass(cls, (LeaseHeldError, FencedError)):
        return cls(message, lease=_lease_info(lease), kind=kind, operation=operation, session_id=sid)  # type: ignore[no-any-return]
    return cls(message, kind=kind, operation=operation, session_id=sid)  # type: ignore[no-any-return]


async def _call(make: Any, session_id: Optional[str] = None) -> Any:
    try:
        awaitable = make()
        return await awaitable
    except NativeError as err:
        raise _convert(err, session_id) from None


# ---------------------------------------------------------------------------------- stores ---

_stores: Dict[str, NativeStore] = {}
_stores_lock = threading.Lock()


_client_stores: Dict[Any, Tuple[NativeStore, "_ClientCredentials"]] = {}


EncryptionKey = Union[bytes, str]


def generate_encryption_key() -> str:
    """A new encryption key: 32 random bytes as standard base64 (as ``agent-session keygen``)."""
    return str(NativeStore.generate_key())


def _keys(encryption_key: Any) -> Optional[List[Any]]:
    """``encryption_key=``: ``bytes``, a base64 ``str``, or a list of them, newest first (the
    first encrypts, all decrypt)."""
    if encryption_key is None:
        return None
    if isinstance(encryption_key, (bytes, bytearray, memoryview)):
        return [bytes(encryption_key)]
    if isinstance(encryption_key, str):
        return [encryption_key]
    if isinstance(encryption_key, (list, tuple)):
        return [bytes(k) if isinstance(k, (bytearray, memoryview)) else k for k in encryption_key]
    raise ConfigError("encryption_key must be bytes, a base64 str, or a list of them (newest first)", operation="open")


def _native_store(url: str, credentials: Any = None, keys: Optional[List[Any]] = None) -> NativeStore:
    try:
        return NativeStore(url, credentials, keys)
    except NativeError as err:
        raise _convert(err) from None


def _store_key(url: str, keys: Optional[List[Any]]) -> Any:
    """Stores are shared per URL and key ids (never the keys themselves)."""
    if keys is None:
        return url
    return (url, tuple(_native_store("memory://", None, keys).encryption_key_ids))


def _shared_store(url: str, encryption_key: Any = None) -> NativeStore:
    """One store per URL (and keys) in the process: sessions share its connections and runtime."""
    keys = _keys(encryption_key)
    key = _store_key(url, keys)
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = _native_store(url, None, keys)
        return store


def _client_store(url: str, credentials: "_ClientCredentials", encryption_key: Any = None) -> Tuple[NativeStore, "_ClientCredentials"]:
    """One store per URL and client credentials: sessions made from the same client share it,
    and its credentials source (whose event loop every session keeps current)."""
    keys = _keys(encryption_key)
    with _stores_lock:
        key = (_store_key(url, keys), id(credentials.credentials))  # the store keeps the credentials alive
        entry = _client_stores.get(key)
        if entry is None:
            entry = _client_stores[key] = (_native_store(url, credentials, keys), credentials)
        return entry


def _with_query(url: str, **options: Any) -> str:
    options = {k: v for k, v in options.items() if v is not None}
    if not options:
        return url
    text = {k: ("true" if v is True else "false" if v is False else str(v)) for k, v in options.items()}
    return url + ("&" if "?" in url else "?") + urlencode(text)


def _coerce_settings(settings: Any) -> Any:
    """As the SDK's own sessions: None gives ``SessionSettings()`` (its ``limit`` None), a dict
    is coerced, a ``SessionSettings`` is kept."""
    if settings is None:
        return _SessionSettings()
    if isinstance(settings, dict):
        return _SessionSettings(**settings)
    return settings


def _dump(item: Any, session_id: str) -> str:
    if hasattr(item, "model_dump"):
        item = item.model_dump(mode="json")
    if not isinstance(item, dict):
        raise InvalidInputError(
            f"add_items on session {session_id!r}: an item must be a dict, got {type(item).__name__}; nothing was written",
            operation="add_items",
            session_id=session_id,
        )
    try:
        return json.dumps(item, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise InvalidInputError(
            f"add_items on session {session_id!r}: an item is not JSON ({err}); nothing was written",
            operation="add_items",
            session_id=session_id,
        ) from None


_TRANSACTION_LISTS = ("items", "expected_suffix", "expectedSuffix", "replacement")


def _dump_transaction(transaction: Any, session_id: str) -> str:
    """A transaction dict as JSON text for the core, its items dumped as ``add_items`` dumps
    them (dicts, or pydantic models through ``model_dump``); the core checks the shape."""
    operation = "apply_history_transaction"

    def invalid(problem: str) -> InvalidInputError:
        return InvalidInputError(f"{operation} on session {session_id!r}: {problem}; nothing was written", operation=operation, session_id=session_id)

    if hasattr(transaction, "model_dump"):
        transaction = transaction.model_dump(mode="json")
    if not isinstance(transaction, Mapping):
        raise invalid(f"a transaction must be a dict, got {type(transaction).__name__}")
    body: Dict[Any, Any] = {}
    for key, value in transaction.items():
        if key in _TRANSACTION_LISTS and isinstance(value, (list, tuple)):
            value = [v.model_dump(mode="json") if hasattr(v, "model_dump") else v for v in value]
        body[key] = value
    try:
        return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise invalid(f"the transaction is not JSON ({err})") from None


class _LeaseState:
    """What a fenced session knows of its lease: the token, and whether the lease ended (its
    block was left) or was lost (a renewal or a write was refused with ``fenced``). Shared by
    the ``SessionLease`` that renews it and the fenced session that writes with it."""

    __slots__ = ("owner", "token", "expires_at", "ended", "lost")

    def __init__(self, owner: str, token: int, expires_at: _datetime.datetime) -> None:
        self.owner = owner
        self.token = token
        self.expires_at = expires_at
        self.ended = False
        self.lost: Optional[FencedError] = None

    def check(self, operation: str, session_id: str) -> None:
        """Raises ``FencedError`` (nothing is sent) once the lease ended or was lost."""
        if not self.ended and self.lost is None:
            return
        why = "its `async with session.lease()` block was left" if self.lost is None else f"the lease was lost ({self.lost})"
        message = f"{operation} on session {json.dumps(session_id, ensure_ascii=False)}: fenced: fencing token {self.token} is no longer valid: {why}; nothing was changed"
        raise FencedError(message, operation=operation, session_id=session_id)


_S = TypeVar("_S", bound="_NativeSession")


class _NativeSession(_SessionBase):
    """A session of a shared native store."""

    session_settings: "_SessionSettings"  # never None: SessionSettings() by default, as the SDK's
    _lease_state: Optional[_LeaseState] = None  # set on the fenced copies session.lease() yields

    def __init__(self, session_id: str, store: NativeStore, session_settings: Any = None) -> None:
        try:
            NativeStore.validate_session_id(session_id)
        except NativeError as err:
            raise _convert(err) from None
        self.session_id = session_id
        self.session_settings = _coerce_settings(session_settings)
        self._store = store
        self._closed = False

    def _check_open(self, operation: str) -> None:
        if self._closed:
            raise SessionClosedError(f"{operation}: session {self.session_id!r} is closed", operation=operation, session_id=self.session_id)

    def _fencing_token(self, operation: str) -> Optional[int]:
        """The token a write carries (None: unfenced); raises ``FencedError`` once the lease of a
        fenced session ended or was lost."""
        state = self._lease_state
        if state is None:
            return None
        state.check(operation, self.session_id)
        return state.token

    async def _write(self, make: Any) -> Any:
        """A write through ``_call``; a ``fenced`` refusal marks this session's lease lost."""
        try:
            return await _call(make)
        except FencedError as err:
            if self._lease_state is not None and self._lease_state.lost is None:
                self._lease_state.lost = err
            raise

    @property
    def fencing_token(self) -> Optional[int]:
        """The fencing token this session's writes carry: set on the session that
        ``lease()`` yields, None on an ordinary (unfenced) session."""
        return None if self._lease_state is None else self._lease_state.token

    def lease(self: _S, owner: str, ttl: float = 30.0, wait: Optional[float] = None) -> "SessionLease[_S]":
        """The session's lease for ``owner``, as an async context manager::

            async with session.lease("worker-1", ttl=30.0, wait=60.0) as fenced:
                await Runner.run(agent, "Hello", session=fenced)

        Entering acquires the lease (one writer at a time per conversation, across processes):
        while another owner holds it, ``LeaseHeldError`` at once (``wait=None``) or after
        waiting up to ``wait`` seconds for it. It yields a fenced session of the same class
        whose writes (``add_items``, ``pop_item``, ``clear_session``,
        ``apply_history_transaction``) check atomically that its token is still the live
        lease's; reads are not fenced. The lease renews itself in the background every
        ``ttl / 3`` seconds and is released when the block is left. After the block, or once
        the lease is lost (it expired, e.g. the process stalled past ``ttl``, and another owner
        took it), the fenced session's writes raise ``FencedError`` and change nothing; leaving
        the block after the lease was lost raises nothing new.

        ``owner`` (1 to 256 bytes) names the holder: give each holder its own (an owner that
        acquires again while it holds the lease gets the same token, extended). Other sessions
        of the conversation are not fenced: leases are cooperative."""
        return SessionLease(self, owner, ttl, wait)

    async def lease_info(self) -> Optional[LeaseInfo]:
        """The session's live lease, ``{"owner": str, "token": int, "expires_at": datetime}``
        (``expires_at`` timezone-aware, UTC), or None when no lease is held."""
        self._check_open("lease_info")
        return _lease_info(await _call(lambda: self._store.lease_info(self.session_id)))

    async def get_items(self, limit: Optional[int] = None) -> List[Any]:
        """The newest ``limit`` items (all with None), oldest first; ``0`` or less gives []."""
        self._check_open("get_items")
        if limit is None and self.session_settings is not None:
            limit = getattr(self.session_settings, "limit", None)
        if limit is not None and limit <= 0:
            return []
        text = await _call(lambda: self._store.get_items(self.session_id, limit))
        items: List[Any] = json.loads(text)
        return items

    async def add_items(self, items: List[Any]) -> None:
        """Appends the items as one atomic batch; nothing is written if any item is invalid."""
        self._check_open("add_items")
        token = self._fencing_token("add_items")
        texts = [_dump(item, self.session_id) for item in items]
        if texts:
            await self._write(lambda: self._store.add_items(self.session_id, texts, token))

    async def apply_history_transaction(self, operation_id: str, transaction: Mapping[str, Any]) -> bool:
        """Applies a history transaction under ``operation_id`` (non-empty, at most 256 bytes of
        UTF-8; the same on every retry), atomically and idempotently:

        * ``{"type": "append_items", "items": [...]}`` appends the items;
        * ``{"type": "replace_suffix", "expected_suffix": [...], "replacement": [...]}``
          replaces the newest ``len(expected_suffix)`` items with ``replacement``, only if they
          equal ``expected_suffix`` as JSON values (key order ignored, ``1 == 1.0``).

        Returns True when it was applied now, False when it had been applied before under the
        same id (a retry: nothing is applied again). Raises ``HistoryConflictError`` (nothing
        changed; ``reason`` ``"operation_reused"`` or ``"suffix_mismatch"``), and
        ``InvalidInputError`` for an invalid transaction or id (nothing written). A transaction
        that fails does not use up its id."""
        self._check_open("apply_history_transaction")
        token = self._fencing_token("apply_history_transaction")
        if not isinstance(operation_id, str):
            raise InvalidInputError(
                f"apply_history_transaction on session {self.session_id!r}: the operation id must be a str, got {type(operation_id).__name__}; nothing was written",
                operation="apply_history_transaction",
                session_id=self.session_id,
            )
        text = _dump_transaction(transaction, self.session_id)
        return bool(await self._write(lambda: self._store.apply_history_transaction(self.session_id, operation_id, text, token)))

    async def pop_item(self) -> Optional[Any]:
        """Removes and returns the newest item, or None."""
        self._check_open("pop_item")
        token = self._fencing_token("pop_item")
        text = await self._write(lambda: self._store.pop_item(self.session_id, token))
        return None if text is None else json.loads(text)

    async def clear_session(self) -> None:
        """Deletes the session (succeeds when it does not exist)."""
        self._check_open("clear_session")
        token = self._fencing_token("clear_session")
        await self._write(lambda: self._store.clear_session(self.session_id, token))

    async def ping(self) -> bool:
        """Connects if needed; True when the store answers."""
        self._check_open("open")
        await _call(lambda: self._store.connect(), self.session_id)
        return True

    async def close(self) -> None:
        """Closes this session (the shared store stays open for the others); idempotent."""
        self._closed = True

    def __repr__(self) -> str:
        fence = "" if self._lease_state is None else f", fencing_token={self._lease_state.token}"
        return f"{type(self).__name__}(session_id={self.session_id!r}, store={self._store.redacted_url!r}{fence})"


def _lease_seconds(value: Any, name: str, session_id: str, minimum_exclusive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (minimum_exclusive and value == 0):
        bound = "more than 0" if minimum_exclusive else "at least 0"
        raise InvalidInputError(
            f"acquire_lease on session {session_id!r}: {name} must be a finite number of seconds, {bound}, got {value!r}",
            operation="acquire_lease",
            session_id=session_id,
        )
    return float(value)


class SessionLease(Generic[_S]):
    """The async context manager ``session.lease(owner, ttl, wait)`` returns (see
    ``lease()``); entered once. ``info`` is the lease while the block runs (its ``expires_at``
    moves with each renewal), None before."""

    def __init__(self, session: _S, owner: str, ttl: float = 30.0, wait: Optional[float] = None) -> None:
        sid = session.session_id
        if not isinstance(owner, str):
            raise InvalidInputError(f"acquire_lease on session {sid!r}: the owner must be a str, got {type(owner).__name__}", operation="acquire_lease", session_id=sid)
        self._session = session
        self._owner = owner
        self._ttl = _lease_seconds(ttl, "ttl", sid, True)
        self._wait = None if wait is None else _lease_seconds(wait, "wait", sid, False)
        self._state: Optional[_LeaseState] = None
        self._renewal: Optional["asyncio.Task[None]"] = None

    @property
    def info(self) -> Optional[LeaseInfo]:
        state = self._state
        if state is None:
            return None
        return {"owner": state.owner, "token": state.token, "expires_at": state.expires_at}

    async def __aenter__(self) -> _S:
        session = self._session
        if self._state is not None:
            raise RuntimeError("a SessionLease is entered once: call session.lease() again")
        session._check_open("acquire_lease")
        store, sid = session._store, session.session_id
        acquired = _lease_info(await _call(lambda: store.acquire_lease(sid, self._owner, self._ttl, self._wait)))
        assert acquired is not None
        state = self._state = _LeaseState(acquired["owner"], acquired["token"], acquired["expires_at"])
        fenced = copy.copy(session)
        fenced._lease_state = state
        self._renewal = asyncio.get_running_loop().create_task(self._renew(store, sid, state))
        return fenced

    async def _renew(self, store: NativeStore, sid: str, state: _LeaseState) -> None:
        """Renews the lease every ttl/3 until cancelled; stops once it is refused with
        ``fenced`` (the lease is lost). Other failures (the store unreachable...) are retried
        sooner, every ttl/30: the lease holds until its expiry, and a renewal after that is
        refused with ``fenced``."""
        interval = self._ttl / 3
        delay = interval
        while True:
            await asyncio.sleep(delay)
            try:
                renewed = _lease_info(await _call(lambda: store.renew_lease(sid, state.token, self._ttl)))
            except FencedError as err:
                if state.lost is None:
                    state.lost = err
                return
            except Exception:
                delay = interval / 10
                continue
            if renewed is not None:
                state.expires_at = renewed["expires_at"]
            delay = interval

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Any) -> None:
        """Stops the renewal and releases the lease. After the lease was lost, nothing is
        raised; a release that fails otherwise (the store unreachable: the lease then ends at
        its expiry) raises only when the block itself raised nothing."""
        state, renewal = self._state, self._renewal
        if state is None or renewal is None:  # pragma: no cover - __aexit__ without __aenter__
            return None
        state.ended = True  # the fenced session's writes fail from now on, without I/O
        renewal.cancel()
        await asyncio.wait([renewal])  # a renewal in flight is abandoned (a late one is refused)
        if not renewal.cancelled():
            renewal.exception()  # retrieved: the loop ends only by cancellation or a refusal
        if state.lost is not None:
            return None
        store, sid = self._session._store, self._session.session_id
        try:
            await _call(lambda: store.release_lease(sid, state.token))
        except FencedError:
            pass  # lost meanwhile (expired and taken over): nothing new to report
        except SessionError:
            if exc_type is None:
                raise
        return None


def open_session(url: str, session_id: str, *, session_settings: Any = None, encryption_key: Any = None) -> _NativeSession:
    """A session of the store at ``url`` (any URL the library takes: sqlite://, redis://,
    rediss://, redis+cluster://, dynamodb://, postgres://, memory://...). ``encryption_key``: ``bytes``, a
    base64 ``str``, or a list of them, newest first (docs/encryption.md)."""
    return _NativeSession(session_id, _shared_store(url, encryption_key), session_settings)


class SQLiteSession(_NativeSession):
    """Like ``agents.SQLiteSession``: ``db_path=":memory:"`` is private to this session."""

    def __init__(self, session_id: str, db_path: str = ":memory:", *, ttl: Optional[int] = None, session_settings: Any = None, encryption_key: Any = None) -> None:
        if str(db_path) == ":memory:":
            store = _native_store(_with_query("memory://", ttl=ttl), None, _keys(encryption_key))
        else:
            path = os.path.abspath(os.fspath(db_path))
            store = _shared_store(_with_query("sqlite://" + quote(path), ttl=ttl), encryption_key)
        super().__init__(session_id, store, session_settings)


class PostgresSession(_NativeSession):
    """A session in PostgreSQL: ``PostgresSession(session_id, "postgres://user:pw@host/db")``.

    ``url`` is libpq's form (``postgres://`` or ``postgresql://``, options such as
    ``sslmode=verify-full&sslrootcert=/ca.pem``; ``PGHOST``, ``PGUSER``, ``PGPASSWORD``... fill
    what it leaves out). Sessions made from the same URL share one connection pool. The tables
    and functions are created on first use when missing (``docs/storage/postgres.md``).

    ``encryption_key``: ``bytes``, a base64 ``str``, or a list of them, newest first: records
    are encrypted at rest (docs/encryption.md), as on every other session class.
    """

    def __init__(
        self,
        session_id: str,
        url: str,
        *,
        ttl: Optional[int] = None,
        session_settings: Any = None,
        encryption_key: Any = None,
    ) -> None:
        text = str(url)
        if not text.lower().startswith(("postgres://", "postgresql://")):
            raise ConfigError("PostgresSession needs a postgres:// or postgresql:// URL", operation="open", session_id=session_id)
        super().__init__(session_id, _shared_store(_with_query(text, ttl=ttl), encryption_key), session_settings)


def _redis_url(client: Any, key_prefix: str, ttl: Optional[int]) -> str:
    """A store URL with the settings of a redis-py client (sync or asyncio, cluster or not)."""
    nodes = getattr(client, "startup_nodes", None) or getattr(getattr(client, "nodes_manager", None), "startup_nodes", None)
    kwargs: Dict[str, Any]
    if nodes is not None and hasattr(client, "nodes_manager"):
        hosts = []
        for node in (nodes.values() if isinstance(nodes, dict) else nodes):
            hosts.append(f"{node.host}:{node.port}")
        kwargs = dict(getattr(client.nodes_manager, "connection_kwargs", {}) or {})
        scheme = "rediss+cluster" if kwargs.get("ssl") or "SSL" in str(kwargs.get("connection_class", "")) else "redis+cluster"
        location, db = ",".join(hosts), 0
    else:
        pool = client.connection_pool
        kwargs = dict(pool.connection_kwargs)
        if kwargs.get("path"):
            raise ConfigError("Unix socket Redis connections are not supported; use host and port", operation="open")
        ssl = "SSL" in getattr(pool.connection_class, "__name__", "") or bool(kwargs.get("ssl"))
        scheme = "rediss" if ssl else "redis"
        location, db = f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}", int(kwargs.get("db", 0) or 0)
    user, password = kwargs.get("username"), kwargs.get("password")
    userinfo = ""
    if user or password:
        userinfo = quote(user or "", safe="") + (":" + quote(str(password), safe="") if password else "") + "@"
    url = f"{scheme}://{userinfo}{location}/" + (str(db) if db else "")
    reqs = kwargs.get("ssl_cert_reqs")
    insecure = scheme.startswith("rediss") and (reqs == "none" or getattr(reqs, "name", None) == "CERT_NONE" or reqs == 0)
    return _with_query(
        url,
        prefix=key_prefix,
        ttl=ttl,
        connect_timeout=kwargs.get("socket_connect_timeout"),
        response_timeout=kwargs.get("socket_timeout"),
        tls_ca_file=kwargs.get("ssl_ca_certs") if scheme.startswith("rediss") else None,
        tls_insecure=True if insecure else None,
    )


class RedisSession(_NativeSession):
    """The seed's ``RedisSession(session_id, redis_client, *, key_prefix, ttl)``, on the Rust core.

    The redis-py client (sync or asyncio, cluster or not) is only read for its settings (host,
    port, db, username, password, TLS, timeouts); the connection is the core's own, shared by
    every session made from the same settings.
    """

    def __init__(
        self,
        session_id: str,
        redis_client: Any = None,
        *,
        key_prefix: str = "openai_agents_session",
        ttl: Optional[int] = None,
        session_settings: Any = None,
        url: Optional[str] = None,
        encryption_key: Any = None,
    ) -> None:
        if url is None:
            if redis_client is None:
                raise InvalidInputError("RedisSession needs redis_client or url", operation="open", session_id=session_id)
            url = _redis_url(redis_client, key_prefix, ttl)
        else:
            url = _with_query(url, prefix=key_prefix, ttl=ttl)
        super().__init__(session_id, _shared_store(url, encryption_key), session_settings)

    @classmethod
    def from_url(cls, session_id: str, *, url: str, key_prefix: str = "openai_agents_session", ttl: Optional[int] = None, session_settings: Any = None, encryption_key: Any = None) -> "RedisSession":
        return cls(session_id, key_prefix=key_prefix, ttl=ttl, session_settings=session_settings, url=url, encryption_key=encryption_key)


class _ClientCredentials:
    """Reads a boto3 / aiobotocore client's credentials for the Rust core, which calls it (from a
    worker thread) whenever its cached copy is due to expire. botocore refreshes assumed-role and
    SSO credentials itself when asked for them near their expiry, so nothing is copied once."""

    def __init__(self, credentials: Any) -> None:
        self.credentials = credentials
        self.loop: Optional[asyncio.AbstractEventLoop] = None

    def remember_loop(self) -> None:
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - called from the session's coroutines
            pass

    def __call__(self) -> Tuple[str, str, Optional[str], Optional[float]]:
        frozen = self.credentials.get_frozen_credentials()
        if inspect.isawaitable(frozen):  # aiobotocore: refresh on the client's own loop
            loop = self.loop
            if loop is not None and loop.is_running():
                frozen = asyncio.run_coroutine_threadsafe(_awaited(frozen), loop).result(120)
            else:
                frozen = asyncio.run(_awaited(frozen))
        expiry = getattr(self.credentials, "_expiry_time", None)
        return (
            frozen.access_key,
            frozen.secret_key,
            frozen.token or None,
            expiry.timestamp() if expiry is not None else None,
        )


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _client_credentials(client: Any) -> Optional[_ClientCredentials]:
    """The credentials object a boto3 / aiobotocore client signs with (None without a client,
    or for an unsigned one: the standard AWS chain is used then)."""
    signer = getattr(client, "_request_signer", None)
    credentials = getattr(signer, "_credentials", None)
    if credentials is None or not hasattr(credentials, "get_frozen_credentials"):
        return None
    return _ClientCredentials(credentials)


def _dynamodb_url(table_name: str, client: Any, region_name: Optional[str], endpoint_url: Optional[str], ttl: Optional[int]) -> str:
    """A store URL with the settings of a boto3 / aiobotocore client: region, endpoint, and its
    botocore ``Config`` timeouts and retry attempts."""
    meta = getattr(client, "meta", None)
    region = region_name or getattr(meta, "region_name", None)
    endpoint = endpoint_url or getattr(meta, "endpoint_url", None)
    if endpoint and "amazonaws.com" in endpoint:
        endpoint = None  # the core resolves AWS's own endpoints
    config = getattr(meta, "config", None)
    retries = getattr(config, "retries", None) or {}
    attempts = retries.get("total_max_attempts")
    if attempts is None and retries.get("max_attempts") is not None:
        attempts = int(retries["max_attempts"]) + 1  # botocore's max_attempts counts retries
    return _with_query(
        f"dynamodb://{table_name}",
        region=region,
        endpoint=endpoint,
        ttl=ttl,
        connect_timeout=getattr(config, "connect_timeout", None),
        response_timeout=getattr(config, "read_timeout", None),
        max_attempts=max(1, int(attempts)) if attempts is not None else None,
    )


class DynamoDBSession(_NativeSession):
    """The seed's ``DynamoDBSession(session_id, dynamodb_client, table_name, *, ttl_seconds)``.

    Region and endpoint come from the boto3 or aiobotocore client (or ``region_name`` /
    ``endpoint_url``). Credentials are the client's own, asked of it whenever they need
    refreshing (assumed-role and SSO credentials expire); without a client, the standard AWS
    chain of the process.
    """

    def __init__(
        self,
        session_id: str,
        dynamodb_client: Any = None,
        table_name: str = "",
        *,
        ttl_seconds: Optional[int] = None,
        region_name: Optional[str] = None,
        endpoint_url: Optional[str] = None,
        session_settings: Any = None,
        encryption_key: Any = None,
    ) -> None:
        if not table_name:
            raise InvalidInputError("DynamoDBSession needs table_name", operation="open", session_id=session_id)
        url = _dynamodb_url(table_name, dynamodb_client, region_name, endpoint_url, ttl_seconds)
        credentials = _client_credentials(dynamodb_client)
        self._credentials: Optional[_ClientCredentials] = None
        if credentials is None:
            store = _shared_store(url, encryption_key)
        else:
            store, self._credentials = _client_store(url, credentials, encryption_key)
        super().__init__(session_id, store, session_settings)

    def _check_open(self, operation: str) -> None:
        super()._check_open(operation)
        if self._credentials is not None:
            self._credentials.remember_loop()


async def create_table_if_not_exists(client: Any, table_name: str, *, enable_ttl: bool = True, region_name: Optional[str] = None, endpoint_url: Optional[str] = None) -> None:
    """The seed's helper, with its signature ``(client, table_name, *, enable_ttl=True)``: creates
    the table when it does not exist (this library's layout, on-demand billing) and waits until
    it is active. ``client`` is a boto3 or aiobotocore DynamoDB client (its region, endpoint and
    credentials are used), or None for the standard AWS chain with ``region_name`` /
    ``endpoint_url``.

    ``enable_ttl=True`` turns DynamoDB's TTL on the attribute ``ttl`` on, also on an existing
    table. ``enable_ttl=False`` leaves it off: an existing table is left as it is but for TTL,
    turned off with UpdateTimeToLive if it is on. Expired sessions are hidden at read time
    either way; the TTL sweep only reclaims their space.
    """
    url = _dynamodb_url(table_name, client, region_name, endpoint_url, None)
    credentials = _client_credentials(client)
    if credentials is None:
        store = _shared_store(url)
    else:
        store, credentials = _client_store(url, credentials)
        credentials.remember_loop()
    if enable_ttl:
        await _call(lambda: store.init())  # creates the table, waits until active, TTL on `ttl`
        return
    client = _client_or_boto3(client, region_name, endpoint_url)
    if not await _table_exists(client, table_name):
        # The core's init also turns TTL on; it is turned off again below. (DynamoDB allows
        # one TTL change per table per hour: on AWS that second change is refused, and the
        # error says so.)
        await _call(lambda: store.init())
    await _disable_ttl(client, table_name)


def _client_or_boto3(client: Any, region_name: Optional[str], endpoint_url: Optional[str]) -> Any:
    if client is not None:
        return client
    try:
        import boto3
    except ImportError:
        raise ConfigError("create_table_if_not_exists(None, ..., enable_ttl=False) needs a DynamoDB client (or boto3 installed) to read and turn off the table's TTL", operation="open") from None
    return boto3.client("dynamodb", region_name=region_name, endpoint_url=endpoint_url)


async def _client_call(client: Any, name: str, **kwargs: Any) -> Any:
    """Calls a boto3 (in a worker thread, off the event loop) or aiobotocore client method."""
    method = getattr(client, name)
    if inspect.iscoroutinefunction(method):
        return await method(**kwargs)
    result = await asyncio.get_running_loop().run_in_executor(None, lambda: method(**kwargs))
    return (await result) if inspect.isawaitable(result) else result


def _client_error_code(err: BaseException) -> Optional[str]:
    response = getattr(err, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


async def _table_exists(client: Any, table_name: str) -> bool:
    try:
        await _client_call(client, "describe_table", TableName=table_name)
        return True
    except Exception as err:
        if _client_error_code(err) == "ResourceNotFoundException":
            return False
        raise SessionError(f"open: describing DynamoDB table {table_name!r} failed: {err}", operation="open") from err


async def _disable_ttl(client: Any, table_name: str) -> None:
    """Turns the table's TTL off through the caller's client, as the seed turns it on."""
    try:
        described = await _client_call(client, "describe_time_to_live", TableName=table_name)
        ttl = described.get("TimeToLiveDescription", {})
        if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
            spec = {"Enabled": False, "AttributeName": ttl.get("AttributeName", "ttl")}
            await _client_call(client, "update_time_to_live", TableName=table_name, TimeToLiveSpecification=spec)
    except Exception as err:
        hint = " (DynamoDB accepts one TTL change per table per hour)" if _client_error_code(err) == "ValidationException" else ""
        raise SessionError(f"open: turning TTL off on DynamoDB table {table_name!r} failed{hint}: {err}", operation="open") from err
