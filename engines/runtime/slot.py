"""The encoder runner an engine uses now, and the faster one it may switch to.

An engine asks for a runtime (or 'auto'); if that runtime is ready at once (torch, or an
OpenVINO model already converted on disk) it answers from the start. Otherwise torch
fp32 answers while `prepare()` (called on a worker thread by the window, or by
`annotator models calibrate`) calibrates and builds it, then swaps it in. A runtime that
fails falls back to torch fp32 with one message, remembered in the store.
"""
from __future__ import annotations

import logging
import threading

import torch
from torch import nn

from engines.runtime.choice import Progress, build_runner, calibrate, resolve_runtime
from engines.runtime.encoders import OV_PRECISION, RuntimeUnavailable, TorchRunner, key_suffix
from engines.runtime.store import RuntimeStore

log = logging.getLogger(__name__)


class EncoderSlot:
    def __init__(self, module: nn.Module, example_shape: tuple[int, ...], *, arch_key: str,
                 model_key: str, outputs: tuple[str, ...] = ("image_embed",),
                 runtime: str | None = None, exact: bool = False, store: RuntimeStore | None = None):
        """`arch_key`: what a calibration is valid for (architecture and input size);
        `model_key`: what a converted model is valid for (that plus the checkpoint);
        `outputs`: the names of the module's outputs, in order. Both keys end with them, so
        two graphs on one encoder (SAM's embedding; HQ-SAM's embedding + early features)
        never share a conversion, a calibration or a failure record."""
        self.module, self.example_shape, self.outputs = module, example_shape, tuple(outputs)
        names = ",".join(self.outputs)
        self.arch_key, self.model_key = f"{arch_key}->{names}", f"{model_key}->{names}"
        self.store = store or RuntimeStore()
        self.message: str | None = None         # the last fallback, for the status bar
        self._lock = threading.Lock()
        if exact:
            self.wanted, self.needs_calibration = "exact", False
        else:
            self.wanted, self.needs_calibration = resolve_runtime(runtime, self.arch_key, self.store)
        self.runner = TorchRunner(module, self.wanted if self.wanted not in OV_PRECISION else "torch-fp32")
        if self.wanted in OV_PRECISION and self.store.load_model(self.model_key) is not None:
            self._build(None)                    # converted before: compiling is quick

    @property
    def runtime(self) -> str:
        return self.runner.runtime

    @property
    def key_suffix(self) -> str:
        return key_suffix(self.runtime)

    @property
    def ready(self) -> bool:
        """True when the wanted runtime answers (nothing left for prepare() to do)."""
        return not self.needs_calibration and self.runtime == self.wanted

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.runner(x)

    def named(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The outputs by name."""
        return dict(zip(self.outputs, self.runner(x), strict=True))

    def example(self) -> torch.Tensor:
        return torch.randn(self.example_shape, generator=torch.Generator().manual_seed(0))

    def prepare(self, progress: Progress | None = None) -> str:
        """Calibrate if needed, build the wanted runtime and switch to it; the runtime
        that answers afterwards. Safe to call from a worker thread."""
        with self._lock:
            if self.needs_calibration:
                record = calibrate(self.module, self.example(), arch_key=self.arch_key,
                                   model_key=self.model_key, store=self.store, progress=progress)
                self.wanted, self.needs_calibration = str(record["picked"]), False
            if self.runtime != self.wanted:
                self._build(progress)
            return self.runtime

    def _build(self, progress: Progress | None) -> None:
        try:
            self.runner = build_runner(self.wanted, self.module, self.example(), arch_key=self.arch_key,
                                       model_key=self.model_key, store=self.store, progress=progress)
        except RuntimeUnavailable as exc:
            self.message = f"{exc}; the encoder runs torch-fp32"
            log.warning("%s", self.message)
            self.wanted = "torch-fp32"
            self.runner = TorchRunner(self.module, "torch-fp32")
