"""`sam-amg` / `sam2-amg`: "segment everything" proposers on a SAM / SAM 2 host (the
reference automatic mask generators' algorithm and defaults), the baseline Auto engine."""
from engines.sam_amg.engine import Sam2AmgEngine, SamAmgEngine
from engines.sam_amg.options import AmgOptions

__all__ = ["SamAmgEngine", "Sam2AmgEngine", "AmgOptions"]
