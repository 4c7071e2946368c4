"""Where and how models run: device choice, encoder autocast, allocator tuning."""
from engines.runtime.alloc import tune_allocator
from engines.runtime.device import choose_device, encoder_autocast

__all__ = ["choose_device", "encoder_autocast", "tune_allocator"]
