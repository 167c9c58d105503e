"""Durable conversation memory for the OpenAI Agents SDK, with a Rust core underneath.

Drop-in sessions for ``agents.Runner``::

    from openai_agents_session import RedisSession, SQLiteSession
    session = RedisSession(session_id="user-123-conv-456", redis_client=client, ttl=3600)
    result = await Runner.run(agent, "Hello", session=session)

Every method is a genuine awaitable running in Rust: it never blocks the event loop. Sessions
created from the same client or URL share one store (one connection pool, one runtime);
constructors do no I/O.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import threading
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import quote, urlencode

from ._native import NativeError, NativeStore

__version__ = "0.2.0.dev0"

__all__ = [
    "ConfigError",
    "DynamoDBSession",
    "HistoryConflictError",
    "InvalidInputError",
    "InvalidSessionIdError",
    "LegacyDataError",
    "OutcomeUnknownConnectionError",
    "OutcomeUnknownError",
    "OutcomeUnknownTimeoutError",
    "RedisSession",
    "SQLiteSession",
    "SessionClosedError",
    "SessionConnectionError",
    "SessionError",
    "SessionNotFoundError",
    "SessionTimeoutError",
    "SessionTooLargeError",
    "UnreadableRecordError",
    "UnsupportedFormatError",
    "__version__",
    "create_table_if_not_exists",
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


class SessionClosedError(SessionError, RuntimeError):
    """The session was closed."""


_KINDS: Dict[str, Any] = {
    "invalid_input": InvalidInputError,
    "invalid_session_id": InvalidSessionIdError,
    "too_large": SessionTooLargeError,
    "config": ConfigError,
    "not_found": SessionNotFoundError,
    "connection": SessionConnectionError,
    "timeout": SessionTimeoutError,
    "outcome_unknown": OutcomeUnknownError,
    "unreadable": UnreadableRecordError,
    "unsupported_format": UnsupportedFormatError,
    "legacy_data": LegacyDataError,
    "conflict": HistoryConflictError,
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
    reason); ``session_id`` names the session when the core's error names none."""
    args = err.args
    if len(args) == 6:
        kind, cause, operation, sid, message, reason = args
    else:  # pragma: no cover - the transport always sends six
        kind, cause, operation, sid, message, reason = "backend", None, None, None, str(err), None
    cls = _error_class(kind, cause)
    sid = sid if sid is not None else session_id
    if issubclass(cls, HistoryConflictError):
        return cls(message, reason=reason, kind=kind, operation=operation, session_id=sid)  # type: ignore[no-any-return]
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


def _shared_store(url: str) -> NativeStore:
    """One store per URL in the process: sessions share its connections and runtime."""
    with _stores_lock:
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = NativeStore(url)
        return store


def _client_store(url: str, credentials: "_ClientCredentials") -> Tuple[NativeStore, "_ClientCredentials"]:
    """One store per URL and client credentials: sessions made from the same client share it,
    and its credentials source (whose event loop every session keeps current)."""
    with _stores_lock:
        key = (url, id(credentials.credentials))  # the store keeps the credentials alive
        entry = _client_stores.get(key)
        if entry is None:
            entry = _client_stores[key] = (NativeStore(url, credentials), credentials)
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


class _NativeSession(_SessionBase):
    """A session of a shared native store."""

    session_settings: "_SessionSettings"  # never None: SessionSettings() by default, as the SDK's

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

    async def get_items(self, limit: Optional[int] = None) -> List[Any]:
        """The newest ``limit`` items (all with None), oldest first; ``0`` or less gives []."""
        self._check_open("get_items")
        if limit is None and self.session_settings is not None:
            limit = getattr(self.session_settings, "limit", None)
        if limit is not None and limit <= 0:
            return []
        texts = await _call(lambda: self._store.get_items(self.session_id, limit))
        return [json.loads(t) for t in texts]

    async def add_items(self, items: List[Any]) -> None:
        """Appends the items as one atomic batch; nothing is written if any item is invalid."""
        self._check_open("add_items")
        texts = [_dump(item, self.session_id) for item in items]
        if texts:
            await _call(lambda: self._store.add_items(self.session_id, texts))

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
        if not isinstance(operation_id, str):
            raise InvalidInputError(
                f"apply_history_transaction on session {self.session_id!r}: the operation id must be a str, got {type(operation_id).__name__}; nothing was written",
                operation="apply_history_transaction",
                session_id=self.session_id,
            )
        text = _dump_transaction(transaction, self.session_id)
        return bool(await _call(lambda: self._store.apply_history_transaction(self.session_id, operation_id, text)))

    async def pop_item(self) -> Optional[Any]:
        """Removes and returns the newest item, or None."""
        self._check_open("pop_item")
        text = await _call(lambda: self._store.pop_item(self.session_id))
        return None if text is None else json.loads(text)

    async def clear_session(self) -> None:
        """Deletes the session (succeeds when it does not exist)."""
        self._check_open("clear_session")
        await _call(lambda: self._store.clear_session(self.session_id))

    async def ping(self) -> bool:
        """Connects if needed; True when the store answers."""
        self._check_open("open")
        await _call(lambda: self._store.connect(), self.session_id)
        return True

    async def close(self) -> None:
        """Closes this session (the shared store stays open for the others); idempotent."""
        self._closed = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}(session_id={self.session_id!r}, store={self._store.redacted_url!r})"


def open_session(url: str, session_id: str, *, session_settings: Any = None) -> _NativeSession:
    """A session of the store at ``url`` (any URL the library takes: sqlite://, redis://,
    rediss://, redis+cluster://, dynamodb://, memory://...)."""
    return _NativeSession(session_id, _shared_store(url), session_settings)


class SQLiteSession(_NativeSession):
    """Like ``agents.SQLiteSession``: ``db_path=":memory:"`` is private to this session."""

    def __init__(self, session_id: str, db_path: str = ":memory:", *, ttl: Optional[int] = None, session_settings: Any = None) -> None:
        if str(db_path) == ":memory:":
            store = NativeStore(_with_query("memory://", ttl=ttl))
        else:
            path = os.path.abspath(os.fspath(db_path))
            store = _shared_store(_with_query("sqlite://" + quote(path), ttl=ttl))
        super().__init__(session_id, store, session_settings)


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
    ) -> None:
        if url is None:
            if redis_client is None:
                raise InvalidInputError("RedisSession needs redis_client or url", operation="open", session_id=session_id)
            url = _redis_url(redis_client, key_prefix, ttl)
        else:
            url = _with_query(url, prefix=key_prefix, ttl=ttl)
        super().__init__(session_id, _shared_store(url), session_settings)

    @classmethod
    def from_url(cls, session_id: str, *, url: str, key_prefix: str = "openai_agents_session", ttl: Optional[int] = None, session_settings: Any = None) -> "RedisSession":
        return cls(session_id, key_prefix=key_prefix, ttl=ttl, session_settings=session_settings, url=url)


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
    ) -> None:
        if not table_name:
            raise InvalidInputError("DynamoDBSession needs table_name", operation="open", session_id=session_id)
        url = _dynamodb_url(table_name, dynamodb_client, region_name, endpoint_url, ttl_seconds)
        credentials = _client_credentials(dynamodb_client)
        self._credentials: Optional[_ClientCredentials] = None
        if credentials is None:
            store = _shared_store(url)
        else:
            store, self._credentials = _client_store(url, credentials)
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
