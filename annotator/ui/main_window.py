"""The annotation window: image list | canvas | classes + instances, a toolbar, keys.

Data changes go through the CommandStack (undoable, one transaction each) and come back
as store events, which redraw what they touch; engine work goes through the `Labeler`
(prompts) and the `Review` (Auto and text proposals as candidates, review.py).
"""
from __future__ import annotations

import hashlib
import logging
from typing import Any, Callable

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer
from PySide6.QtWidgets import (QCheckBox, QDockWidget, QLabel, QMainWindow,
                               QPushButton, QToolBar)

from annotator.core import commands as cmd
from annotator.core.errors import CoreError
from annotator.core.images import load_image
from annotator.core.store import Project
from annotator.ui.bridge import EventBridge
from annotator.ui.brush import BrushTool
from annotator.ui.canvas import Canvas
from annotator.ui.category_panel import CategoryPanel, category_color
from annotator.ui.detail_slider import DetailSlider
from annotator.ui.export_dialog import ExportDialog
from annotator.ui.history import History
from annotator.ui.image_list import ImageList
from annotator.ui.instance_panel import InstancePanel
from annotator.ui.labeling import Labeler
from annotator.ui.mask_cache import CropCache
from annotator.ui import class_edit, feedback, first_minute, hints, honest, picking
from annotator.ui.polygon_edit import PolygonEditor
from annotator.ui.review import Review
from annotator.ui.targets import Target, annotation
from annotator.ui.actions import install_actions
from annotator.ui.model_choice import make_session
from annotator.ui.opening import DropFilter, empty_message, opener_of
from annotator.ui.settings import read_bool, read_int, read_model_choice, write_model_choice
from annotator.ui.widgets import PromptField

log = logging.getLogger(__name__)

DEFAULT_CLASS = "object"     # created on the first accept when the project has no class
SessionFactory = Callable[[Callable[[Any], None]], Any]


class MainWindow(QMainWindow):
    def __init__(self, project: Project, session_factory: SessionFactory | None,
                 settings: QSettings, *, prefetch: int = 3, models_dir: str | None = None):
        super().__init__()
        self.project = project
        self.session_factory = session_factory
        self.models_dir = models_dir        # None: $ANNOTATOR_MODELS_DIR or the user data dir
        self.model_dialog = None            # File > Models…, made on first use
        self.train_dialog = None            # File > Train…, made on first use
        self.eval_dialog = None             # File > Evaluate…, made on first use
        self.autolabel_dialog = None        # File > Auto-label images…, made on first use
        self.opener = None                  # opening.Opener: File > Open…, Recent, drops
        self.settings = settings
        self.prefetch_count = read_int(settings, "engine/prefetch", prefetch)
        self.image_id: int | None = None
        self.crops = CropCache()             # RLE -> cropped mask: instances and candidates
        self._refreshing = False
        self._dirty: set[str] = set()
        self._count_images: set[int] = set()   # rows of the image list to update
        self._closed = False
        self._title_suffix = " (read-only)" if project.read_only else ""
        self.setWindowTitle(f"Annotator — {project.path}{self._title_suffix}")

        self.bridge = EventBridge(self)
        self.session = self._new_session() if session_factory else None
        self.canvas = Canvas(self)
        self.labeler = Labeler(self.session, self.canvas, self)
        self.history = History(self)        # undo/redo: the prompt, then this image's
        self.bridge.connect_to(self.labeler.on_event)
        self.review = Review(self)
        self.bridge.connect_to(self.review.on_event)
        self.canvas.click_filter = lambda x, y: picking.plain_click(self, x, y)
        self.brush = BrushTool(project, self.canvas, self._edit_targets,
                               self._target_color, self._push, self._redraw_all, self)
        self.polygons = PolygonEditor(self.canvas, self._push, self)
        self.canvas.editor = self.polygons
        self.setCentralWidget(self.canvas)
        self.images = ImageList(self)
        self.classes = CategoryPanel(self)
        self.instances = InstancePanel(self)
        self._dock("Images", self.images, Qt.DockWidgetArea.LeftDockWidgetArea)
        self._dock("Classes", self.classes, Qt.DockWidgetArea.RightDockWidgetArea)
        self._dock("Instances", self.instances, Qt.DockWidgetArea.RightDockWidgetArea)
        self._build_toolbar()
        self._build_status()
        install_actions(self)
        feedback.install(self)          # zoom label, View ▸ Mask fill, brush circle size
        self._connect()
        hints.install(self)             # the hint strip follows the tool

        self._unsubscribe = project.subscribe(self._on_store_event)
        self.labeler.prompt_changed.connect(self._update_undo_actions)
        self.classes.set_categories(project.categories())
        class_edit.install(self)            # class order, last class, Delete…
        self.images.set_images(project.images(), project.counts_per_image(),
                               project.pending_counts())
        self._restore_settings()
        honest.update_fine_edges(self)      # off, saying what to install, without hq-sam
        first_minute.ClassicOffer(self)     # on the first classic answer: offer SAM 2.1
        self._update_undo_actions()
        first = read_int(settings, self._last_image_key(), 0)
        ids = self.images.image_ids
        if ids:
            self.show_image(first if first in ids else ids[0])
        else:
            self.canvas.show_message(empty_message(project))
        DropFilter(self, lambda paths: opener_of(self).open_dropped(paths),
                   also=[self.canvas.viewport()])
        self.canvas.setFocus()

    # -- layout

    def _dock(self, title: str, widget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{title}")
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        return dock

    def _build_toolbar(self) -> None:
        bar = QToolBar("Tools", self)
        bar.setObjectName("toolbar-tools")
        bar.setMovable(False)
        self.addToolBar(bar)
        self.toolbar = bar
        hint = hints.HintLabel(self)        # its text follows the tool (hints.py)
        bar.addWidget(hint)
        self.hint = hint                    # hints.py changes it with the tool
        bar.addSeparator()
        self.text_field = PromptField(self, focus_back=self.canvas)
        self.text_field.setMaximumWidth(220)
        self.text_field.setClearButtonEnabled(True)
        self._show_text_engine()
        bar.addWidget(self.text_field)
        self.auto_button = QPushButton("Auto", self)
        self.auto_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        bar.addWidget(self.auto_button)
        bar.addWidget(self.review.presets)
        bar.addWidget(self.review.slider)
        self.review.update_auto()
        self.fine_edges = QCheckBox("Fine edges", self)
        self.fine_edges.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.fine_edges.setToolTip(honest.FINE_ON_TIP)
        bar.addWidget(self.fine_edges)
        bar.addSeparator()
        self.detail = DetailSlider(self)
        bar.addWidget(self.detail)

    def _show_text_engine(self) -> None:
        problem = self.session.problem("text") if self.session else "no engine running"
        self.text_field.setPlaceholderText("no text engine installed" if problem
                                           else "class name, Enter")
        self.text_field.setToolTip(problem or "segment every object of a typed class")

    def _build_status(self) -> None:
        self.engine_label = QLabel("engine: —", self)
        device = getattr(self.session, "device", None) or "no engine"
        self.device_label = QLabel(f"device: {device}", self)
        self.latency_label = QLabel("latency: —", self)
        for label in (self.engine_label, self.device_label, self.latency_label):
            self.statusBar().addPermanentWidget(label)
        if self.project.read_only:    # opened while another window holds the project
            self.statusBar().addPermanentWidget(QLabel("read-only: changes are not saved",
                                                       self))

    def _connect(self) -> None:
        self.images.image_chosen.connect(self.show_image)
        self.classes.current_changed.connect(self._class_changed)
        self.classes.add_requested.connect(self.add_class)
        self.classes.rename_requested.connect(
            lambda i, name: self._push(cmd.RenameCategory(i, name)))
        self.classes.recolor_requested.connect(
            lambda i, color: self._push(cmd.RecolorCategory(i, color)))
        self.instances.selection_changed.connect(self._instances_selected)
        self.review.status.connect(lambda text: self.statusBar().showMessage(text))
        self.instances.visibility_changed.connect(lambda _i, _v: self._redraw_instances())
        self.instances.delete_requested.connect(self.delete_instances)
        self.instances.reclass_requested.connect(self.reclass_instances)
        self.canvas.pick_requested.connect(lambda x, y: picking.ctrl_click(self, x, y))
        self.labeler.status.connect(lambda text: self.statusBar().showMessage(text))
        self.brush.status.connect(lambda text: self.statusBar().showMessage(text))
        self.polygons.status.connect(lambda text: self.statusBar().showMessage(text))
        self.detail.tolerance_changed.connect(self._detail_changed)
        self.labeler.answered.connect(self._answered)
        self.labeler.embedding_state.connect(
            lambda image_id, state, detail: self.images.set_state(image_id, state, detail))
        self.text_field.returnPressed.connect(self._text_prompt)
        self.auto_button.clicked.connect(self.auto_propose)
        self.fine_edges.toggled.connect(self._fine_edges_toggled)

    # -- images

    def show_image(self, image_id: int) -> None:
        try:
            rec = self.project.image(image_id)
            rgb = load_image(self.project.image_root / rec.file_name)
        except CoreError as exc:
            self.statusBar().showMessage(str(exc))
            self.canvas.show_message(f"This image cannot be shown.\n\n{exc}")
            self.labeler.close_image()
            self.image_id = None
            self._update_undo_actions()
            return
        self.image_id = image_id
        self.canvas.set_image(rgb)
        del rgb   # the canvas keeps a pixmap: free ours before the engine reads its copy
        self.instances.clear_hidden()
        self.images.select(image_id)
        self.review.selected = None
        self.review.refresh()
        self.labeler.open_image(image_id, self.project.image_root / rec.file_name)
        self._refresh_instances(keep_selection=False)
        self.labeler.prefetch([(i, str(self.project.image_root / self.project.image(i).file_name))
                               for i in self.images.following(image_id, self.prefetch_count)])
        self.setWindowTitle(f"Annotator — {rec.file_name} — {self.project.path.name}"
                            f"{self._title_suffix}")
        self._update_undo_actions()

    def step_image(self, step: int) -> None:
        target = self.images.neighbour(self.image_id, step)
        if target is not None and target != self.image_id:
            self.show_image(target)

    def toggle_reviewed(self) -> None:
        if self.image_id is not None:
            rec = self.project.image(self.image_id)
            self.project.set_reviewed(self.image_id, not rec.reviewed)
            feedback.confirm(self, f"{rec.file_name}: marked " + (
                "not reviewed" if rec.reviewed else "reviewed") + " (R toggles)")

    def next_unreviewed(self) -> None:
        rec = self.project.next_unreviewed(self.image_id)
        if rec is None:
            self.statusBar().showMessage("every image is reviewed")
        else:
            self.show_image(rec.id)

    # -- accepting and editing

    def accept_preview(self) -> None:
        """Enter: the preview becomes an instance of the current class (undoable); with
        no preview, the selected candidate is accepted."""
        mask = self.labeler.prompt.mask
        if mask is None and self.labeler.prompt.is_empty and self.review.accept_selected():
            return                      # no prompt live: Enter is the candidate's
        if mask is None or self.image_id is None:
            self.statusBar().showMessage("nothing to accept: click on an object first")
            return
        if not mask.any():
            self.statusBar().showMessage("the mask is empty; add a point or clear with Esc")
            return
        category = self.classes.current_id
        if category is None:
            category = self.add_class(DEFAULT_CLASS)
            if category is None:
                return
        p = self.labeler.prompt
        done = self._push(cmd.AddAnnotation(self.image_id, category, mask, score=p.score,
                                            engine=p.engine_name, prompts=p.log()))
        if done is not None:
            self.labeler.clear()
            name = next((c.name for c in self.project.categories() if c.id == category), "")
            feedback.confirm(self, f"accepted as {name} "
                                   f"({len(self.project.annotations(self.image_id))} on this image)")

    def add_class(self, name: str) -> int | None:
        done = self._push(cmd.AddCategory(name))
        if done is None:
            return None
        self.classes.set_categories(self.project.categories())
        self.classes.select_id(done.category_id)
        return done.category_id

    def delete_instances(self, ids: list[int]) -> None:
        if ids and self._push(cmd.DeleteAnnotation(ids)) is not None:
            feedback.confirm(self, f"deleted {feedback.plural(len(ids), 'instance')} "
                                   "(Ctrl+Z brings them back)")

    def set_mode(self, mode: str) -> None:
        """B / E toggle the brush / eraser on the selected instance; prompts otherwise."""
        mode = "prompt" if self.canvas.mode == mode else mode
        self.canvas.set_mode(mode)
        if mode != "prompt":
            self.labeler.clear()
            self.statusBar().showMessage(f"{mode}: drag over the selected instance "
                                         f"(radius {self.brush.radius} px, [ and ] resize; "
                                         f"Esc or {mode[0].upper()} to stop)")
        else:
            self.statusBar().showMessage("prompt mode")

    def escape(self) -> None:
        if self.canvas.mode != "prompt":
            self.set_mode(self.canvas.mode)
        elif self.labeler.prompt.is_empty and self.review.selected is not None:
            self.review.select(None)
        else:
            self.labeler.clear()

    def _edit_targets(self) -> list[Target]:
        """What the brush paints on: the selected candidate, else the selected instances."""
        target = self.review.target()
        return [target] if target is not None else \
            [annotation(i) for i in self.instances.selected_ids]

    def _target_color(self, target: Target):
        if target.kind != "annotation":
            return category_color(self.classes.current)
        try:
            ann = self.project.annotation(target.id)
            return category_color(self.project.category(ann.category_id))
        except CoreError:
            return category_color(None)

    def merge_instances(self, ids: list[int]) -> None:
        if len(ids) < 2:
            self.statusBar().showMessage("select two or more instances to merge")
            return
        if self._push(cmd.Merge(sorted(ids))) is not None:
            feedback.confirm(self, f"merged {len(ids)} instances into one")

    def split_instances(self, ids: list[int]) -> None:
        if len(ids) != 1:
            self.statusBar().showMessage("select one instance to split into its parts")
            return
        self._push(cmd.Split(ids[0]))

    def reclass_instances(self, ids: list[int]) -> None:
        category = self.classes.current_id
        if ids and category is not None:
            self._push(cmd.ChangeCategory(ids, category))

    @property
    def stack(self) -> cmd.CommandStack:
        """The current image's history (history.py: one stack per image)."""
        return self.history.current

    def undo(self) -> None:
        self.history.undo()

    def redo(self) -> None:
        self.history.redo()

    def _push(self, command):
        """Do an undoable command on the current image's history; None when refused."""
        done = self.history.push(command)
        if done is not None:
            self._flush()
        return done

    def _update_undo_actions(self) -> None:
        self.history.update_actions()

    # -- engines

    def _text_prompt(self) -> None:
        problem = self.session.problem("text") if self.session else "no engine running"
        if problem:
            self.statusBar().showMessage(problem)
            return
        self.review.text(self.text_field.text())     # candidates, like Auto's
        self.canvas.setFocus()

    def auto_propose(self) -> None:
        """Auto (G): the installed proposer's objects on this image, as candidates."""
        self.review.auto()

    def _fine_edges_toggled(self, on: bool) -> None:
        if self.labeler.service is not None:
            self.labeler.service.fine_edges = bool(on)
        self.settings.setValue("tools/fine_edges", bool(on))

    def reload_engines(self) -> bool:
        """Stop the engines and build them again with the same factory, so that models
        installed since are used. False, with a status message, when that fails."""
        if self.session_factory is None or self._closed:
            self.statusBar().showMessage("no engines to restart: start with `annotator gui`")
            return False
        if self.session is not None:
            self.session.shutdown()
        self.session = self.labeler.session = None
        try:
            self.session = self.labeler.session = self._new_session()
        except Exception as exc:    # whatever the composition root raises, say it
            self.statusBar().showMessage(f"cannot restart the engines: {exc}")
            return False
        finally:
            device = getattr(self.session, "device", None) or "no engine"
            self.device_label.setText(f"device: {device}")
            self._show_text_engine()
            self.review.update_auto()
        honest.update_fine_edges(self)
        if self.image_id is not None:
            self.show_image(self.image_id)      # embed again with the new engines
        self.statusBar().showMessage("engines restarted")
        return True

    def _new_session(self):
        """The factory's session, pinned to the models chosen in the picker (saved)."""
        return make_session(self.session_factory, self.bridge, read_model_choice(self.settings))

    def apply_model_choice(self, choice: dict) -> bool:
        """Save the picker's choice and restart the engines with it."""
        write_model_choice(self.settings, choice)
        return self.reload_engines()

    def _answered(self, engine: str, explain: str, ms: float) -> None:
        self.engine_label.setText(f"engine: {engine}")
        self.engine_label.setToolTip(explain)
        self.latency_label.setText(f"latency: {ms:.0f} ms")

    # -- store events -> views

    def _on_store_event(self, event: str, payload: dict) -> None:
        if event.startswith("annotation") or event in ("order_changed", "imported"):
            if payload.get("image_id", self.image_id) == self.image_id:
                self._dirty.add("instances")
            if "image_id" in payload:
                self._count_images.add(payload["image_id"])
            else:
                self._dirty.add("counts")       # an import: every image may have changed
        elif event.startswith("candidate"):
            if payload.get("image_id") == self.image_id:
                self._dirty.add("candidates")
            self._count_images.add(payload["image_id"])
        elif event.startswith("category"):
            self._dirty |= {"classes", "instances"}
        elif event == "image_changed":
            self._count_images.add(payload["id"])
        elif event == "images_added":
            self._dirty.add("images")
        QTimer.singleShot(0, self._flush)

    def _flush(self) -> None:
        """Bring the views in line with the store (once per burst of events)."""
        dirty, self._dirty = self._dirty, set()
        touched, self._count_images = self._count_images, set()
        if self._closed or not (dirty or touched):
            return
        if "classes" in dirty:
            self.classes.set_categories(self.project.categories())
            self._class_changed()
        if "images" in dirty:
            ids = set(self.images.image_ids)
            images = self.project.images()
            if {i.id for i in images} != ids:
                self.images.set_images(images, self.project.counts_per_image(),
                                       self.project.pending_counts())
                if self.image_id is not None:
                    self.images.select(self.image_id)
                elif self.images.image_ids and self.canvas.image_size is None:
                    self.show_image(self.images.image_ids[0])   # the first ones arrived
            dirty.add("counts")
        if "counts" in dirty or touched:
            counts = self.project.counts_per_image()
            pending = self.project.pending_counts()
            rows = self.project.images() if "counts" in dirty else \
                [self.project.image(i) for i in touched if i in counts]
            for img in rows:
                self.images.update_image(img, counts.get(img.id, 0), pending.get(img.id, 0))
        if "candidates" in dirty:
            self.review.refresh()
        if "instances" in dirty:
            self._refresh_instances()
        elif "candidates" in dirty:
            self._show_polygon(None, set(self.instances.selected_ids))

    def _refresh_instances(self, keep_selection: bool = True) -> None:
        if self.image_id is None:
            self.instances.set_instances([], {})
            self.polygons.show(None, None)
            return
        anns = self.project.annotations(self.image_id)
        cats = {c.id: c for c in self.project.categories()}
        self._refreshing = True         # its selection signal would redraw once more
        try:
            self.instances.set_instances(anns, cats, keep_selection=keep_selection)
        finally:
            self._refreshing = False
        self._redraw_instances(anns, cats)

    def _redraw_all(self) -> None:
        """The stored masks again (a live brush stroke that was refused)."""
        self.review.refresh()
        self._refresh_instances()

    def _redraw_instances(self, anns=None, cats=None) -> None:
        if self.image_id is None:
            return
        anns = self.project.annotations(self.image_id) if anns is None else anns
        cats = {c.id: c for c in self.project.categories()} if cats is None else cats
        selected = set(self.instances.selected_ids)
        items = [(ann.id, self.crops.get(ann.rle), category_color(cats.get(ann.category_id)),
                  self.instances.is_visible(ann.id), ann.id in selected) for ann in anns]
        self.canvas.set_instances(items)
        self._show_polygon(anns, selected)

    def _show_polygon(self, anns, selected: set[int]) -> None:
        """The vertex editor follows the selected candidate, or a single visible
        selected instance."""
        if self.review.show_polygon():
            return
        anns = self.project.annotations(self.image_id) if anns is None else anns
        ann = next((a for a in anns if a.id in selected), None) if len(selected) == 1 else None
        crop = self.crops.get(ann.rle) if ann is not None else None
        if crop is None or not self.instances.is_visible(ann.id):
            self.polygons.show(None, None)
        else:
            self.polygons.show(ann.id, crop.full(), ann.updated)

    def _detail_changed(self, tolerance: float) -> None:
        self.polygons.set_tolerance(tolerance)
        self.settings.setValue("tools/polygon_tolerance", tolerance)

    def delete_key(self) -> None:
        """Delete: the selected polygon vertex if there is one, else reject the selected
        candidate, else delete the selected instances."""
        if not self.polygons.delete_selected() and not self.review.reject_selected():
            self.delete_instances(self.instances.selected_ids)

    def _instances_selected(self, ids: list[int]) -> None:
        if ids and self.review.selected is not None:
            self.review.select(None)       # one selection at a time: instance or candidate
        if not self._refreshing:
            self._redraw_instances()

    def _class_changed(self, *_args) -> None:
        self.labeler.set_preview_color(category_color(self.classes.current))

    # -- export, settings, closing

    def open_export_dialog(self) -> ExportDialog:
        dialog = ExportDialog(self.project, self, self.settings.value("export/format", "coco"))
        if dialog.exec():
            self.settings.setValue("export/format", dialog.format_name)
            self.statusBar().showMessage(f"exported {len(dialog.written)} file(s) to "
                                         f"{dialog.out.text()}")
        return dialog

    def _restore_settings(self) -> None:
        geometry = self.settings.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 860)
        state = self.settings.value("window/state")
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state)
        self.fine_edges.setChecked(read_bool(self.settings, "tools/fine_edges", False))
        try:
            tolerance = float(self.settings.value("tools/polygon_tolerance", 1.0))
        except (TypeError, ValueError):
            tolerance = 1.0
        self.detail.set_tolerance(tolerance)
        self.polygons.set_tolerance(self.detail.tolerance)

    def save_settings(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        if self.image_id is not None:
            self.settings.setValue(self._last_image_key(), self.image_id)
        self.settings.sync()

    def _last_image_key(self) -> str:
        digest = hashlib.sha1(str(self.project.path).encode()).hexdigest()[:16]
        return f"last_image/{digest}"

    def shutdown(self) -> None:
        """Stop the engines and close the project (idempotent)."""
        if self._closed:
            return
        self.save_settings()
        self._closed = True
        self.bridge.close()
        if self.model_dialog is not None:
            self.model_dialog.shutdown()
        if self.train_dialog is not None:
            self.train_dialog.shutdown()
        if self.eval_dialog is not None:
            self.eval_dialog.shutdown()
        if self.autolabel_dialog is not None:
            self.autolabel_dialog.shutdown()
        self._unsubscribe()
        if self.session is not None:
            self.session.shutdown()
        self.project.close()

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)
