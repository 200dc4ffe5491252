"""A TCP proxy the fault tests put between examvault and what it depends on (moto's S3 server,
PostgreSQL), to break the link the ways networks break:

- `passing()`: bytes flow both ways, untouched;
- `cut()`: the port stops listening (new connections are refused) and every open connection
  is reset;
- `slow(seconds)`: every chunk, either way, waits `seconds` before it is forwarded;
- `blackhole()`: connections are accepted and whatever arrives is swallowed; nothing ever
  comes back (a partition behind a load balancer, a hung server).

Threads, one per direction of each connection: the tests open tens of connections, not
thousands, and blocking sockets keep it short and obvious.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

_CHUNK = 64 * 1024


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode = "pass"
        self.latency = 0.0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._listen()
        return self

    def close(self) -> None:
        self._stop_listening()
        self._reset_all()

    def passing(self) -> None:
        """Back to normal. Connections a blackhole swallowed bytes from are reset: their
        streams are broken, and a client must see that rather than wait on them."""
        was = self.mode
        self.mode, self.latency = "pass", 0.0
        if was == "blackhole":
            self._reset_all()
        if self._listener is None:
            self._listen()

    def cut(self) -> None:
        self.mode = "cut"
        self._stop_listening()
        self._reset_all()

    def slow(self, seconds: float) -> None:
        self.latency = seconds
        self.mode = "slow"
        if self._listener is None:
            self._listen()

    def blackhole(self) -> None:
        self.mode = "blackhole"
        if self._listener is None:
            self._listen()

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown wakes the thread blocked in accept(); close alone may not.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            self._track(client)
            if self.mode == "blackhole":
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                self._reset(client)
                continue
            self._track(upstream)
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(_CHUNK):
                if self.mode == "blackhole":
                    continue
                if self.mode == "slow" and self.latency:
                    time.sleep(self.latency)
                target.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)

    def _swallow(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while client.recv(_CHUNK):
                pass

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _reset_all(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            self._reset(sock)

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        # Linger 0: close sends RST, as a crashed peer or a dropped route would.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # SHUT_RD wakes a pump thread blocked in recv() (close alone would not) and sends
        # nothing; the close then resets the connection.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RD)
        with contextlib.suppress(OSError):
            sock.close()
