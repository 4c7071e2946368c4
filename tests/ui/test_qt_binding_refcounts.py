"""Guard against the PySide6 6.12.0 / Python 3.11 bug that drops a reference to None on
every void method call (the app aborted with 'none_dealloc' after a few hundred clicks).
pyproject.toml pins a release without it; this test fails if a bad one comes back."""
import sys

from PySide6.QtCore import QObject, QRectF, Signal
from PySide6.QtWidgets import QGraphicsRectItem, QGraphicsScene


class _Emitter(QObject):
    fired = Signal(bool)


def test_void_calls_and_signals_keep_none_and_true_alive(qapp):
    scene = QGraphicsScene()
    item = QGraphicsRectItem(QRectF(0, 0, 4, 4))
    scene.addItem(item)
    none_before = sys.getrefcount(None)
    for i in range(2000):
        item.setPos(float(i), 1.0)
        item.setZValue(i)
    assert sys.getrefcount(None) - none_before > -50

    emitter = _Emitter()
    seen = [0]

    def count(_value):
        seen[0] += 1          # keeps no reference to the argument
    emitter.fired.connect(count)
    true_before = sys.getrefcount(True)
    for _ in range(2000):
        emitter.fired.emit(True)
    assert seen[0] == 2000
    assert sys.getrefcount(True) - true_before > -50
