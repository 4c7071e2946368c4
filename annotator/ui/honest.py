"""Controls that say what they can do: Fine edges is disabled, with a tooltip saying what
to install, when no fine-edge engine (hq-sam) can serve; Tab says when there is only one
candidate (or none) instead of doing nothing."""
from __future__ import annotations

from engines.files import CatalogueError, load_catalogue

from annotator.ui.feedback import CONFIRM_MS
from annotator.ui.settings import read_bool

FINE_ENGINE = "hq-sam"
FINE_ON_TIP = "sharper mask edges: the fine-edge model (hq-sam) answers the clicks"


def _smallest(engine: str) -> str:
    """'name, N MB' of the catalogue's first (smallest) model of `engine`."""
    try:
        entry = next((e for e in load_catalogue() if e.engine == engine), None)
    except CatalogueError:
        entry = None
    if entry is None:
        return "an HQ-SAM checkpoint"
    size = f", {entry.size_mb:.0f} MB" if entry.size_mb else ""
    return f"{entry.name}{size}"


def fine_edges_problem(w) -> str | None:
    if w.session is None:
        return "no engine is running"
    return w.session.engine_problem(FINE_ENGINE, "points")


def update_fine_edges(w) -> None:
    """Enable Fine edges only when hq-sam can answer; the saved choice is kept, so it
    comes back once a model is installed and the engines restart."""
    box = w.fine_edges
    problem = fine_edges_problem(w)
    box.blockSignals(True)
    try:
        if problem:
            box.setChecked(False)
            box.setEnabled(False)
            box.setToolTip("Fine edges is off: it needs the fine-edge engine (hq-sam), which "
                           f"is not installed. Install {_smallest(FINE_ENGINE)} from "
                           "File ▸ Models… (Ctrl+M), then restart the engines.")
        else:
            box.setEnabled(True)
            box.setChecked(read_bool(w.settings, "tools/fine_edges", False))
            box.setToolTip(FINE_ON_TIP)
    finally:
        box.blockSignals(False)
    if w.labeler.service is not None:
        w.labeler.service.fine_edges = box.isEnabled() and box.isChecked()


def tab(w, step: int = 1) -> None:
    """Tab: the prompt's next candidate mask, else the next pending candidate; says so
    when there is only one, or nothing to step through."""
    say = w.statusBar().showMessage
    prediction = w.labeler.prompt.prediction
    if prediction is not None:
        if not w.labeler.cycle_candidate():
            say("only one candidate: the engine gave a single mask for this prompt",
                CONFIRM_MS)
        return
    ids = w.review.shown_ids()
    if len(ids) == 1 and w.review.selected == ids[0]:
        say("only one candidate on this image", CONFIRM_MS)
    elif not w.review.cycle(step):
        say("no candidates to step through: click on an object, or Auto (G)", CONFIRM_MS)
