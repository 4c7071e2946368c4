"""The polygon detail control: a slider for the simplification tolerance (pixels) of the
polygon outline shown for editing. It changes what is drawn, never the stored mask."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QWidget

STEP_PX = 0.5          # one slider step, in image pixels
MAX_STEPS = 20         # up to 10 px: coarser than that is rarely an outline worth editing

TOOLTIP = ("How closely the outline you edit follows the mask: to the left, exact (a "
           "handle at every corner of the mask); to the right, fewer handles, easier to "
           "drag. Moving it never changes the mask. Editing a handle redraws the whole "
           "outline at this detail, so for a small local fix move it left first. "
           "Keys: , fewer handles · . more handles")


class DetailSlider(QWidget):
    tolerance_changed = Signal(float)

    def __init__(self, parent=None, tolerance: float = 1.0):
        super().__init__(parent)
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setRange(0, MAX_STEPS)
        self.slider.setPageStep(2)
        self.slider.setMaximumWidth(120)
        # Tab/click focus: arrows, Page Up/Down and Home/End then move it; shortcuts too
        self.slider.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.label = QLabel(self)
        self.label.setMinimumWidth(70)
        self.setToolTip(TOOLTIP)
        self.slider.setToolTip(TOOLTIP)
        self.slider.setAccessibleName("polygon tolerance")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        layout.addWidget(QLabel("Polygon", self))
        layout.addWidget(self.slider)
        layout.addWidget(self.label)
        self.slider.setValue(self._steps(tolerance))
        self._show_label()
        self.slider.valueChanged.connect(self._moved)

    @property
    def tolerance(self) -> float:
        return self.slider.value() * STEP_PX

    def set_tolerance(self, tolerance: float) -> None:
        self.slider.setValue(self._steps(tolerance))

    def step(self, steps: int) -> None:
        """Keyboard shortcuts: positive = coarser (fewer vertices)."""
        self.slider.setValue(self.slider.value() + steps)

    @staticmethod
    def _steps(tolerance: float) -> int:
        return max(0, min(MAX_STEPS, round(float(tolerance) / STEP_PX)))

    def _moved(self, _value: int) -> None:
        self._show_label()
        self.tolerance_changed.emit(self.tolerance)

    def _show_label(self) -> None:
        t = self.tolerance
        self.label.setText("exact" if t == 0 else f"± {t:.1f} px")
