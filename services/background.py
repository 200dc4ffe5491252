"""A long-running job as a thread with a `stop_event` (frigate's habit): `stop_event.wait(...)`
between rounds so shutdown is prompt, and a failed round is logged, never fatal."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from typing import Protocol

from storage.outages import outage_of

logger = logging.getLogger(__name__)


class BackgroundJob(Protocol):
    """What runs beside the app for its lifetime: started and stopped with it."""

    def start(self) -> None: ...

    def stop(self, timeout: float = 30.0) -> None: ...


class BackgroundThread(ABC):
    name = "background"

    def __init__(self) -> None:
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)

    def _wake(self) -> None:
        """Interrupt a blocking wait; subclasses that block on something else (a queue, say)
        extend this."""
        self.stop_event.set()

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                pause = self.run_once()
            except Exception as exc:
                if outage_of(exc) is not None:
                    # A dependency is down: readiness reports it; one line here is enough.
                    logger.warning("%s: round failed, trying again next round: %s", self.name, exc)
                else:
                    logger.exception("%s: round failed; trying again next round", self.name)
                pause = 60.0
            if pause > 0 and self.stop_event.wait(pause):
                return

    @abstractmethod
    def run_once(self) -> float:
        """Do one round; return how many seconds to wait before the next."""
