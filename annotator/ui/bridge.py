"""Carries engine-service events from its worker threads to the GUI thread.

The service calls `bridge(event)` on a worker thread; the bridge only emits a Qt signal,
which a queued connection delivers on the thread the bridge lives in (the GUI thread).
Receivers must still check that the event is for the current image and request: it may
have been queued just before the user moved on.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Qt, Signal


class EventBridge(QObject):
    event = Signal(object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._closed = False

    def connect_to(self, slot) -> None:
        # Queued even when emitted from the GUI thread, so a slot never runs inside a
        # service call the GUI thread is making.
        self.event.connect(slot, Qt.ConnectionType.QueuedConnection)

    def close(self) -> None:
        """Stop forwarding (the window is going away; late events are dropped)."""
        self._closed = True

    def __call__(self, event: Any) -> None:   # called on a worker thread
        if not self._closed:
            self.event.emit(event)
