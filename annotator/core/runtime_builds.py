"""The faster encoder runtime of each engine the window routes, calibrated and built on a
background thread (engines/runtime/slot.py), so no click waits for it: until it is ready
the engine's current runtime answers. Progress and the outcome are EncoderRuntime events."""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from annotator.core.service_events import EncoderRuntime

log = logging.getLogger(__name__)


class RuntimeBuilds:
    def __init__(self, emit: Callable[[EncoderRuntime], None]):
        self._emit = emit
        self._started: set[int] = set()
        self._lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def start(self, routed: Any) -> threading.Thread | None:
        """Begin building `routed.engine`'s wanted runtime, once per encoder; None when
        there is nothing to build."""
        from engines.runtime import encoder_slot_of
        slot = encoder_slot_of(routed.engine)
        if slot is None or slot.ready:
            return None
        with self._lock:
            if id(slot) in self._started:
                return None
            self._started.add(id(slot))
        name = str(getattr(routed, "name", "engine"))
        thread = threading.Thread(target=self._build, args=(slot, name), daemon=True,
                                  name=f"encoder-runtime-{name}")
        self.threads.append(thread)
        thread.start()
        return thread

    def _build(self, slot, name: str) -> None:
        def progress(line: str) -> None:
            self._emit(EncoderRuntime(name, "building", slot.runtime, f"{name}: {line}…"))
        try:
            runtime = slot.prepare(progress=progress)
        except Exception as exc:    # the engine keeps answering with its current runtime
            log.exception("encoder runtime build for %s failed", name)
            self._emit(EncoderRuntime(name, "failed", slot.runtime,
                                      f"{name}: could not prepare a faster encoder ({exc}); "
                                      f"{slot.runtime} answers"))
            return
        note = f" ({slot.message})" if slot.message else ""
        self._emit(EncoderRuntime(name, "ready", runtime, f"{name}: the encoder runs {runtime}{note}"))
