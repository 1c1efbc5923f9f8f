"""A loopback TCP proxy that injects network faults between a client and a server.

Tests put a :class:`FaultProxy` between an ``AsyncMongoClient`` and the embedded server
and switch it between modes while a load runs:

``pass``
    forward bytes both ways (optionally delaying each server reply by ``delay_s``:
    a slow network or an overloaded server);
``refuse``
    stop listening and reset every open connection: new connections are refused, as
    when the server process is down;
``reset``
    keep listening but reset (TCP RST) every connection, open or new;
``blackhole``
    accept connections but forward nothing, either way: a hung server or a network
    partition. Bytes are held, not dropped, and flow again when the mode changes back,
    as TCP delivers them once a partition heals.

The proxy runs its own event loop in a daemon thread, so a busy test loop never skews
its timing, and it is bounded: it stops itself after ``max_lifetime_s`` even if a test
forgets to stop it. It only listens on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Literal

__all__ = ["FaultProxy", "Mode"]

Mode = Literal["pass", "refuse", "reset", "blackhole"]

_CHUNK = 65_536
_UPSTREAM_CONNECT_S = 5.0


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close ``writer``'s socket with a TCP RST (SO_LINGER 0), not a polite FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port``, with injectable faults.

    Args:
        target_host: The server's host.
        target_port: The server's port.
        max_lifetime_s: The proxy stops itself after this many seconds.
    """

    def __init__(self, target_host: str, target_port: int, *, max_lifetime_s: float = 120.0):
        self._target = (target_host, target_port)
        self._max_lifetime_s = max_lifetime_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._mode: Mode = "pass"
        self._delay_s = 0.0
        self._port = 0
        self._started = threading.Event()
        self._stopped = threading.Event()
        self.accepted = 0
        """How many connections the proxy accepted (read from the test thread)."""

    @property
    def port(self) -> int:
        """The loopback port clients connect to (fixed for the proxy's life)."""
        return self._port

    @property
    def mode(self) -> Mode:
        """The current mode."""
        return self._mode

    def uri(self) -> str:
        """A MongoDB URI that reaches the server through this proxy."""
        return f"mongodb://127.0.0.1:{self._port}/?directConnection=true"

    # -- lifecycle (test thread) --------------------------------------------------------

    def start(self) -> FaultProxy:
        """Start listening; returns once the port is bound."""
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the fault proxy did not start within 10 s")
        return self

    def stop(self) -> None:
        """Stop listening, reset every connection and end the proxy's thread."""
        stop = self._stop
        if self._thread.is_alive() and stop is not None and not self._stopped.is_set():
            with contextlib.suppress(RuntimeError):  # the loop ended on its own meanwhile
                self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def set_mode(self, mode: Mode, *, delay_s: float = 0.0) -> None:
        """Switch to ``mode`` (and reply delay); returns once it is in effect."""
        self._call(self._apply(mode, delay_s))

    # -- the proxy's own loop -------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._stop = asyncio.Event()
        await self._listen()
        self._started.set()
        with contextlib.suppress(TimeoutError):  # the lifetime bound: stop by itself
            await asyncio.wait_for(self._stop.wait(), self._max_lifetime_s)
        self._stopped.set()
        await self._unlisten()
        for writer in list(self._writers):
            _reset(writer)
        self._flowing.set()  # let paused pumps see their closed sockets and end
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self._port, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def _unlisten(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            # Server.wait_closed waits for every handler; the sockets are already shut.
            await asyncio.sleep(0)

    async def _apply(self, mode: Mode, delay_s: float) -> None:
        assert self._flowing is not None
        self._mode, self._delay_s = mode, delay_s
        if mode == "blackhole":
            self._flowing.clear()
            return
        self._flowing.set()
        if mode in {"refuse", "reset"}:
            if mode == "refuse":
                await self._unlisten()
            for writer in list(self._writers):
                _reset(writer)
        elif self._server is None:
            await self._listen()

    async def _handle(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        if self._mode in {"reset", "refuse"}:
            _reset(client_writer)
            return
        self._writers.add(client_writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            server_reader, upstream = await asyncio.wait_for(
                asyncio.open_connection(*self._target), _UPSTREAM_CONNECT_S
            )
            self._writers.add(upstream)
            await asyncio.gather(
                self._pump(client_reader, upstream, reply=False),
                self._pump(server_reader, client_writer, reply=True),
            )
        except (OSError, TimeoutError):
            pass
        finally:
            for writer in (client_writer, upstream):
                if writer is not None:
                    self._writers.discard(writer)
                    writer.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, reply: bool
    ) -> None:
        assert self._flowing is not None
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(_CHUNK)
                if not data:
                    break
                # Bytes read just before a black hole opened are held as well.
                await self._flowing.wait()
                if reply and self._delay_s > 0:
                    await asyncio.sleep(self._delay_s)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()
