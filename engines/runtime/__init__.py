"""Where and how models run: device choice, encoder autocast, allocator tuning, and the
CPU encoder runtimes (torch fp32 / bf16, OpenVINO fp32 / bf16) chosen per machine."""
from engines.runtime.alloc import tune_allocator
from engines.runtime.device import choose_device, encoder_autocast
from engines.runtime.choice import ENV_RUNTIME, FEATURE_BOUND, requested_runtime
from engines.runtime.encoders import RUNTIMES, RuntimeUnavailable
from engines.runtime.machine import machine_facts
from engines.runtime.slot import EncoderSlot


def encoder_slot_of(engine) -> EncoderSlot | None:
    """The EncoderSlot behind an engine (its own, or its host's), if it has one."""
    for obj in (engine, getattr(engine, "host", None)):
        slot = getattr(obj, "encoder", None)
        if isinstance(slot, EncoderSlot):
            return slot
    return None


def encoder_runtime(engine) -> str | None:
    """The runtime answering for an engine's encoder now ('torch-fp32', 'openvino-bf16', ...);
    None for engines whose encoder is not behind a slot (classic, GPU devices, encoders
    of their own such as PMG-SAM's)."""
    slot = encoder_slot_of(engine)
    return None if slot is None else slot.runtime


__all__ = ["ENV_RUNTIME", "FEATURE_BOUND", "RUNTIMES", "EncoderSlot", "RuntimeUnavailable",
           "choose_device", "encoder_autocast", "encoder_runtime", "encoder_slot_of",
           "machine_facts", "requested_runtime", "tune_allocator"]
