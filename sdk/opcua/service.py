"""What every ModelLine server process shares: an OPC UA server set up the same way, and a service
lifecycle that owns its background tasks (started in ``_start``, stopped on exit, failures surfaced)."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Self

from asyncua import Server, ua

import nodesets
from sdk import __version__
from sdk.errors import UsageError
from sdk.opcua import access, logins, sessions
from sdk.opcua.logins import LoginPolicy
from sdk.opcua.model_shelf import init_with_models
from sdk.opcua.security import secure
from sdk.opcua.transport import set_limits
from sdk.opcua.users import Role, UserStore
from sdk.opcua.values import fill_null_values
from sdk.opcua.writes import WriteChecks

_log = logging.getLogger(__name__)


async def new_server(
    *,
    endpoint: str,
    name: str,
    application_uri: str,
    product: str,
    manufacturer: str = "ModelLine",
    users_file: Path | None = None,
    anonymous_role: str | None = "Observer",
    max_byte_string: int = 1 << 20,
    pki_dir: Path | None = None,
    login_policy: LoginPolicy | None = None,
    allow_insecure: bool = False,
    certificate_roles: Mapping[str, str] | None = None,
) -> tuple[Server, nodesets.Namespaces, int]:
    """An initialised, not yet started server with DI and ModelLine loaded, logins and roles, and
    transport limits set from ``max_byte_string`` and advertised (``set_limits``); returns it, the
    model namespaces and its own instance namespace.

    With ``pki_dir`` the server is secure (``secure``): its own certificate, trust lists, the
    Basic256Sha256, Aes128_Sha256_RsaOaep and Aes256_Sha256_RsaPss endpoints with Sign and
    SignAndEncrypt, and the unencrypted endpoint only with ``allow_insecure`` (then read-only).
    Without ``pki_dir`` it offers only the unencrypted endpoint (bench and unit tests).

    Roles are enforced and shown per session: only the variables given to ``WriteChecks`` are
    writable by clients (sdk.opcua.writes), UserAccessLevel/UserExecutable answer for the reading
    session (sdk.opcua.access), and password logins are checked off the event loop with failure
    counting and lockouts per ``login_policy`` (sdk.opcua.logins). An X509 user identity in the trust list
    has the role ``certificate_roles`` gives its ApplicationUri (a shell pattern) or thumbprint, unless the
    users file's ``[certificates]`` says otherwise; any other certificate identity is refused."""
    sessions.install()
    access.install()
    logins.install()
    render_asyncua_records()
    users = UserStore.load(users_file, anonymous_role or None, login_policy)
    users.certificate_roles = {key: Role.parse(role) for key, role in (certificate_roles or {}).items()}
    server = Server(user_manager=users)
    models = await init_with_models(server)  # the NodeSets imported, from the cache when it is warm
    server.set_endpoint(endpoint)
    if pki_dir is not None:
        await secure(server, users, pki_dir, application_uri, name, allow_insecure)
    server.set_server_name(name)
    await server.set_application_uri(application_uri)
    await server.set_build_info(
        product_uri=f"urn:modelline:{product}",
        manufacturer_name=manufacturer,
        product_name=name,
        software_version=__version__,
        build_number=__version__,
        build_date=ua.get_win_epoch(),
    )
    if models is None:
        ns = await nodesets.load(server)
        # The standard and DI instances (the Server object's capabilities and diagnostics, DeviceTopology/
        # OnlineAccess, Aliases/LastChange...) come partly without values: give them their DataType's
        # default, as every ModelLine instance gets (sdk/opcua/values.py). The cache holds them filled.
        await fill_null_values(server.nodes.objects)
    else:
        ns = models
    instance_ns = await server.register_namespace(application_uri)
    await set_limits(server, max_byte_string)
    WriteChecks.of(server)  # from now on clients write only the nodes given to it
    return server, ns, instance_ns


class _AddressInUse(logging.Filter):
    """asyncua logs a traceback when its port is taken; ``start_listening`` reports that in one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE)


_address_in_use = _AddressInUse()


class _RefusalsAreNotErrors(logging.Filter):
    """asyncua logs every service fault it answers at ERROR ("sending service fault response: ..."): a
    refused login, a method call without the role, an unknown session. Those are answers, not faults of
    the server; ModelLine logs and audits the refusals that matter itself (with who and from where), so
    these lines show only when asyncua's processor logs at DEBUG. Internal errors keep their own ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and str(record.msg).startswith("sending service fault response"):
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


_refusals_are_not_errors = _RefusalsAreNotErrors()


def render_asyncua_records() -> None:
    """Give every asyncua log record its final text when it is made, not when a handler formats it
    (idempotent; the text is the same).

    asyncua logs live objects as arguments: the XML importer the server's Nodes at every start (a
    Node reaches the whole address space through its session), a client session the callbacks of
    its subscriptions (and through them their handlers, and whatever these hold). A handler that
    keeps records, such as pytest's log capture or logging.handlers.MemoryHandler, kept every stopped
    server alive with them: 14 MiB per in-process gateway restart in the soak (bench/RESULTS.md)."""
    global _previous_factory
    if _previous_factory is not None:
        return
    previous = _previous_factory = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.args and record.name.startswith("asyncua"):
            try:
                record.msg, record.args = record.getMessage(), None
            except (TypeError, ValueError):  # a malformed call: leave it to the handler to report
                pass
        return record

    logging.setLogRecordFactory(factory)


_previous_factory: Callable[..., logging.LogRecord] | None = None


async def start_listening(stack: AsyncExitStack, server: Server, endpoint: str) -> None:
    """Start ``server`` (stopped when ``stack`` closes); a port in use is a one-line UsageError, not a traceback."""
    logger = logging.getLogger("asyncua.server.server")
    if _address_in_use not in logger.filters:
        logger.addFilter(_address_in_use)
    processor = logging.getLogger("asyncua.server.uaprocessor")
    if _refusals_are_not_errors not in processor.filters:
        processor.addFilter(_refusals_are_not_errors)
    stack.push_async_callback(sessions.close_left_over, server)  # after the server stopped
    try:
        await stack.enter_async_context(server)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise UsageError(
            f"cannot listen on {endpoint}: the address is in use (another edge node or gateway, or another program)"
        ) from None


STOP_TASKS_S = 20.0
"""How long a stopping service waits for its background tasks to end after cancelling them."""


class Service:
    """An async context manager that starts in ``_start`` and owns the tasks it spawns."""

    def __init__(self) -> None:
        self._stack = AsyncExitStack()
        self._tasks: list[asyncio.Task[None]] = []
        self._failed = asyncio.Event()

    async def _start(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self._stack.push_async_callback(self._stop_tasks)
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        # The background tasks stop first, while the stores and the server they use are still open; then the
        # rest in reverse order of start.
        await self._stop_tasks()
        await self._stack.aclose()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            _log.error("%s: task %s stopped: %r", type(self).__name__, task.get_name(), task.exception())
            self._failed.set()

    async def _stop_tasks(self) -> None:
        """Cancel the background tasks and wait for them, at most STOP_TASKS_S: a task that does not end (a
        peer that never answers its close) is named in the log and left behind, so that a stop always ends."""
        running = [task for task in self._tasks if not task.done()]
        for task in running:
            task.cancel()
        if not running:
            return
        _, stuck = await asyncio.wait(running, timeout=STOP_TASKS_S)
        for task in stuck:
            _log.error("%s: task %s did not stop within %.0f s; left behind", type(self).__name__, task.get_name(),
                       STOP_TASKS_S)  # fmt: skip

    async def wait_closed(self) -> None:
        """Serve until cancelled; a background task that fails ends the wait with its error."""
        await self._failed.wait()
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def serve_until_signalled(self) -> None:
        """Serve until SIGINT or SIGTERM (a service manager stops us with SIGTERM: clean up all the same);
        a background task that fails ends the wait with its error."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        serving = asyncio.ensure_future(self.wait_closed())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (serving, stopping):
                task.cancel()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        if serving.done() and not serving.cancelled() and serving.exception() is not None:
            raise serving.exception()  # type: ignore[misc]
