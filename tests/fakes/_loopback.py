"""What every wire fake shares: its HTTP server on 127.0.0.1 in a thread, `url`, `stop`, `with`."""

from __future__ import annotations

import threading
from http.server import HTTPServer
from types import TracebackType
from typing import Self

__all__ = ["Loopback"]


class Loopback:
    """Base of a fake whose `__init__` ends with `self._serve(its_server)`."""

    _server: HTTPServer
    _thread: threading.Thread

    def _serve(self, server: HTTPServer) -> None:
        self._server = server
        # A short poll interval keeps stop() quick: shutdown() waits for the loop to look.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
