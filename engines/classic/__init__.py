"""`classic`: OpenCV GrabCut / flood fill, so masks work with no checkpoint at all."""
from engines.classic.engine import ClassicEngine

__all__ = ["ClassicEngine"]
