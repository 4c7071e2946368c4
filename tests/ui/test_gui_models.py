"""File ▸ Models…: the catalogue with installed state, downloads on a worker thread with a
progress dialog (from a 127.0.0.1 server started here), Cancel, a bad hash, and restarting
the engines afterwards."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QPushButton

from annotator.core.models import download_model, load_catalogue, model_statuses
from annotator.ui import model_dialog
from annotator.ui.model_dialog import PROGRESS_STEPS, ModelDialog

from gui_helpers import WAIT_MS, click, key, open_window, wait_preview

DATA = os.urandom(200 * 1024 + 77)
SHA = hashlib.sha256(DATA).hexdigest()
CHUNK = 8 * 1024
COLUMN = {name: i for i, name in enumerate(model_dialog.COLUMNS)}


class SlowServer:
    """Serves DATA at /model.pth with Range support, CHUNK bytes every `delay` seconds."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                record = {"range": self.headers.get("Range"), "sent": 0, "complete": False}
                server.requests.append(record)
                match = re.fullmatch(r"bytes=(\d+)-", record["range"] or "")
                start = int(match.group(1)) if match else 0
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")
                self.send_header("Content-Length", str(len(DATA) - start))
                self.end_headers()
                try:
                    for i in range(start, len(DATA), CHUNK):
                        self.wfile.write(DATA[i:i + CHUNK])
                        self.wfile.flush()
                        record["sent"] += len(DATA[i:i + CHUNK])
                        time.sleep(server.delay)
                    record["complete"] = True
                except OSError:          # the client hung up (a cancelled download)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,),
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/model.pth"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def local_entry(server: SlowServer, **changes):
    """The first catalogue entry, pointed at the local server and at DATA's size/hash."""
    entry = load_catalogue()[0]
    fields = dict(url=server.url, size=len(DATA), sha256=SHA, sha256_prefix=None, md5=None)
    fields.update(changes)
    return dataclasses.replace(entry, **fields)


class Boxes:
    """Stands in for QMessageBox's static dialogs (a real one would block the test)."""

    def __init__(self, monkeypatch, answer=QMessageBox.StandardButton.Yes):
        self.questions: list[str] = []
        self.warnings: list[str] = []
        monkeypatch.setattr(QMessageBox, "question",
                            lambda _parent, _title, text, *a: self.questions.append(text)
                            or answer)
        monkeypatch.setattr(QMessageBox, "warning",
                            lambda _parent, _title, text, *a: self.warnings.append(text)
                            or QMessageBox.StandardButton.Ok)


def make_dialog(qtbot, tmp_path, entries, **kw) -> ModelDialog:
    dialog = ModelDialog(directory=tmp_path / "models", entries=entries, **kw)
    dialog.download_options.update(chunk_size=CHUNK, timeout=5, backoff=0)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def cell(dialog: ModelDialog, name: str, column: str) -> str:
    row = [st.entry.name for st in dialog.statuses].index(name)
    return dialog.table.item(row, COLUMN[column]).text()


def wait_done(qtbot, dialog: ModelDialog) -> None:
    qtbot.waitUntil(lambda: not dialog.downloading, timeout=WAIT_MS)


def test_lists_the_catalogue_with_installed_state(qtbot, tmp_path, monkeypatch):
    entries = load_catalogue()
    folder = tmp_path / "models"
    folder.mkdir()
    by_engine: dict[str, list] = {}
    for e in entries:
        by_engine.setdefault(e.engine, []).append(e)
    small, large = by_engine["sam"][0], by_engine["sam"][1]
    with open(folder / small.filename, "wb") as fh:     # sparse: only the size counts
        fh.truncate(small.size)
    with open(folder / large.filename, "wb") as fh:
        fh.truncate(large.size)
    partial = by_engine["sam2"][0]
    (folder / (partial.filename + ".part")).write_bytes(b"x" * 2_000_000)
    monkeypatch.setenv("ANNOTATOR_MODELS_DIR", str(folder))

    dialog = ModelDialog(current_engine="sam")        # the folder comes from the env
    qtbot.addWidget(dialog)
    assert dialog.directory == folder
    assert dialog.table.rowCount() == len(entries)
    assert [dialog.table.item(r, 0).text() for r in range(len(entries))] == \
        [e.name for e in entries]
    assert "sam" in dialog.engine_label.text()
    assert cell(dialog, small.name, "Installed") == "yes"
    assert cell(dialog, small.name, "Used") == "yes"
    assert cell(dialog, large.name, "Installed") == "yes"
    assert cell(dialog, large.name, "Used") == ""       # the router takes the smaller one
    assert cell(dialog, partial.name, "Installed") == "no (2.0 MB partial)"
    assert cell(dialog, small.name, "Size (MB)") == f"{small.size / 1e6:.1f}"
    assert cell(dialog, small.name, "Engine") == "sam"
    assert cell(dialog, small.name, "Arch") == small.arch

    dialog.select(small.name)
    assert not dialog.download_button.isEnabled()       # installed: nothing to download
    assert not dialog.start_download()
    dialog.select(partial.name)
    assert dialog.download_button.isEnabled()
    assert dialog.download_button.text() == "Resume download"
    assert not dialog.restart_button.isEnabled()        # no engines to restart here
    uninstalled = [st for st in model_statuses(folder, entries) if not st.installed]
    assert len(uninstalled) == len(entries) - 2


def test_download_shows_progress_installs_and_restarts_the_engines(qtbot, tmp_path,
                                                                    monkeypatch):
    boxes = Boxes(monkeypatch)
    restarts = []
    threads = []

    def recording_download(*args, **kw):
        threads.append(threading.get_ident())
        return download_model(*args, **kw)

    with SlowServer(delay=0.01) as server:
        entry = local_entry(server)
        dialog = make_dialog(qtbot, tmp_path, [entry], download_fn=recording_download,
                             reload_engines=lambda: restarts.append(1) or True)
        finished = []
        dialog.download_finished.connect(lambda name, path: finished.append((name, path)))
        assert cell(dialog, entry.name, "Installed") == "no"
        qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
        assert dialog.downloading and not dialog.download_button.isEnabled()
        seen = []
        dialog.thread.progressed.connect(lambda done, _total: seen.append(done))
        wait_done(qtbot, dialog)

    dest = tmp_path / "models" / entry.filename
    assert dest.read_bytes() == DATA
    assert not dest.with_name(dest.name + ".part").exists()
    assert threads and threading.get_ident() not in threads     # never on the GUI thread
    assert dialog.progress.maximum() == PROGRESS_STEPS
    assert dialog.progress.value() == PROGRESS_STEPS            # 100 %
    assert "100 %" in dialog.progress.labelText()
    assert seen == sorted(seen) and seen[-1] == len(DATA)
    assert finished == [(entry.name, str(dest))]
    assert cell(dialog, entry.name, "Installed") == "yes"
    assert cell(dialog, entry.name, "Used") == "yes"
    assert len(boxes.questions) == 1 and entry.name in boxes.questions[0]
    assert restarts == [1]
    assert not boxes.warnings
    assert "restarted" in dialog.status.text()


def test_cancel_stops_the_download_and_a_resume_finishes_it(qtbot, tmp_path, monkeypatch):
    boxes = Boxes(monkeypatch, answer=QMessageBox.StandardButton.No)
    restarts = []
    with SlowServer(delay=0.1) as server:         # the whole file would take ~2.5 s
        entry = local_entry(server)
        dest = tmp_path / "models" / entry.filename
        part = dest.with_name(dest.name + ".part")
        dialog = make_dialog(qtbot, tmp_path, [entry],
                             reload_engines=lambda: restarts.append(1) or True)
        assert dialog.start_download(entry.name)
        qtbot.waitUntil(lambda: dialog.progress.value() > 0, timeout=WAIT_MS)
        cancel = dialog.progress.findChild(QPushButton)
        assert cancel is not None and cancel.text() == "Cancel"
        started = time.monotonic()
        qtbot.mouseClick(cancel, Qt.MouseButton.LeftButton)
        wait_done(qtbot, dialog)
        stopped_after = time.monotonic() - started
        assert not dest.exists()
        assert 0 < part.stat().st_size < len(DATA)
        assert not server.requests[0]["complete"]
        assert stopped_after < 1.5
        assert "cancelled" in dialog.status.text()
        assert not boxes.warnings and not boxes.questions and not restarts
        assert cell(dialog, entry.name, "Installed").startswith("no (")
        assert dialog.download_button.text() == "Resume download"

        server.delay = 0.0
        kept = part.stat().st_size
        qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
        wait_done(qtbot, dialog)
    assert dest.read_bytes() == DATA
    assert server.requests[-1]["range"] == f"bytes={kept}-"
    assert len(boxes.questions) == 1 and not restarts       # the user said No


def test_a_wrong_hash_is_reported_and_leaves_nothing(qtbot, tmp_path, monkeypatch):
    boxes = Boxes(monkeypatch)
    restarts = []
    with SlowServer() as server:
        entry = local_entry(server, sha256="0" * 64)
        dialog = make_dialog(qtbot, tmp_path, [entry],
                             reload_engines=lambda: restarts.append(1) or True)
        assert dialog.start_download()
        wait_done(qtbot, dialog)
    dest = tmp_path / "models" / entry.filename
    assert len(boxes.warnings) == 1
    assert "SHA-256" in boxes.warnings[0] and entry.filename in boxes.warnings[0]
    assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()
    assert not boxes.questions and not restarts
    assert cell(dialog, entry.name, "Installed") == "no"
    assert dialog.download_button.isEnabled()


def test_window_menu_opens_the_picker_and_restarts_the_engines(
        qtbot, tmp_path, monkeypatch, image_folder, settings_path, classic_factory):
    Boxes(monkeypatch)
    monkeypatch.setenv("ANNOTATOR_MODELS_DIR", str(tmp_path / "downloads"))
    with SlowServer() as server:
        entry = local_entry(server)
        monkeypatch.setattr("annotator.core.models.load_catalogue", lambda: [entry])
        w = open_window(qtbot, image_folder, classic_factory, settings_path)
        restarts = []
        real_reload = w.reload_engines
        monkeypatch.setattr(w, "reload_engines", lambda: restarts.append(1) or real_reload())
        click(qtbot, w, 55, 45)
        wait_preview(qtbot, w)
        key(qtbot, w, Qt.Key.Key_M, Qt.KeyboardModifier.ControlModifier)
        dialog = w.model_dialog
        assert dialog is not None and dialog.isVisible()
        assert dialog.engine_label.text().endswith(w.engine_label.text().partition(": ")[2])
        assert [st.entry.name for st in dialog.statuses] == [entry.name]
        dialog.download_options.update(chunk_size=CHUNK, timeout=5, backoff=0)
        old = w.session
        assert dialog.start_download()
        wait_done(qtbot, dialog)
        dialog.reject()
    assert restarts == [1]
    assert w.session is not old and w.labeler.session is w.session
    assert old.shutdown(0.1)                         # the old engines were shut down
    click(qtbot, w, 55, 45)                          # the new engines answer
    wait_preview(qtbot, w)
    assert w.labeler.prompt.mask.any()
    w.shutdown()


def test_reload_without_engines_says_so(qtbot, image_folder, settings_path):
    w = open_window(qtbot, image_folder, None, settings_path)
    assert w.reload_engines() is False
    assert "no engines to restart" in w.statusBar().currentMessage()
    w.shutdown()


def choose(qtbot, combo, prefix: str) -> None:
    """Pick the item starting with `prefix` with the keyboard, as a user would."""
    target = next(i for i in range(combo.count()) if combo.itemText(i).startswith(prefix))
    while combo.currentIndex() != target:
        step = Qt.Key.Key_Down if combo.currentIndex() < target else Qt.Key.Key_Up
        qtbot.keyClick(combo, step)


def test_picker_pins_engines_to_the_chosen_files_and_the_choice_persists(
        qtbot, tmp_path, monkeypatch, image_folder, settings_path, one_torch_thread):
    import torch

    import engines.hq_sam.engine  # noqa: F401  (registers hq-sam with the router)
    from annotator.commands.gui import SessionFactory
    from annotator.ui.model_choice import PLUGIN_COLUMNS
    from annotator.ui.settings import open_settings, read_model_choice
    from engines.files.checkpoints import checkpoint_identity
    from engines.hq_sam.weights import split_hq_checkpoint
    from engines.hq_sam.engine import tiny_hq_sam
    from engines.files.plugins import save_plugin
    from PySide6.QtWidgets import QFileDialog

    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("ANNOTATOR_MODELS_DIR", str(models))
    sam_state, hq_state = split_hq_checkpoint(tiny_hq_sam(seed=3).state_dict())
    backbone = tmp_path / "elsewhere" / "tiny_sam.pth"     # not a catalogue file
    backbone.parent.mkdir()
    torch.save(sam_state, backbone)
    plugin = save_plugin(models / "plugins" / "hq-sam" / "run1" / "hq.safetensors", hq_state,
                         engine="hq-sam", backbone_arch="sam:tiny",
                         backbone_checkpoint=checkpoint_identity(backbone),
                         metrics={"tight-box/miou": 0.5, "tight-box/mbiou": 0.25})
    calls = []

    class Recording(SessionFactory):
        def __call__(self, on_event, **pins):
            calls.append(pins)
            return super().__call__(on_event, **pins)

    factory = Recording(str(models), "cpu", 64)
    w = open_window(qtbot, image_folder, factory, settings_path)
    assert calls == [{}]
    key(qtbot, w, Qt.Key.Key_M, Qt.KeyboardModifier.ControlModifier)
    picker = w.model_dialog
    col = {name: i for i, name in enumerate(PLUGIN_COLUMNS)}
    row = lambda: {c: picker.choices.table.item(0, i).text() for c, i in col.items()}  # noqa: E731
    assert picker.choices.table.rowCount() == 1
    assert row()["Held-out metrics"] == "tight-box/mbiou 0.250, tight-box/miou 0.500"
    assert (row()["Backbone installed"], row()["Used"]) == ("no", "")
    combos = picker.choices.combos
    assert combos["hq-sam"].currentText() == "automatic (nothing installed)"
    assert not picker.apply_button.isEnabled()

    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(backbone), ""))
    choose(qtbot, combos["sam"], "Other checkpoint file")
    assert combos["sam"].currentText() == "file tiny_sam.pth"
    choose(qtbot, combos["hq-sam"], "plugin hq.safetensors on sam:tiny")
    assert picker.apply_button.isEnabled() and calls == [{}]     # nothing applied yet
    old = w.session
    qtbot.mouseClick(picker.apply_button, Qt.MouseButton.LeftButton)
    pins = {"checkpoints": {"sam": str(backbone)}, "plugins": {"hq-sam": str(plugin)}}
    assert calls[-1] == pins and w.session is not old
    router = w.session.engines
    assert router.checkpoints == {"sam": backbone} and router.plugins == {"hq-sam": plugin}
    assert read_model_choice(open_settings(settings_path)) == pins
    assert (row()["Backbone installed"], row()["Used"]) == ("tiny_sam.pth", "chosen")
    assert "restarted" in picker.status.text() and not picker.apply_button.isEnabled()
    picker.reject()

    click(qtbot, w, 55, 45)                          # the pinned SAM answers plain clicks
    wait_preview(qtbot, w)
    assert w.engine_label.text() == "engine: sam"
    assert "tiny_sam.pth" in w.engine_label.toolTip()
    key(qtbot, w, Qt.Key.Key_Escape)
    w.fine_edges.setChecked(True)                    # and the pinned HQ plugin fine edges
    click(qtbot, w, 55, 45)
    wait_preview(qtbot, w)
    assert w.engine_label.text() == "engine: hq-sam"
    assert "hq.safetensors" in w.engine_label.toolTip()
    w.shutdown()

    w = open_window(qtbot, image_folder, factory, settings_path)    # the choice persists
    assert calls[-1] == pins
    key(qtbot, w, Qt.Key.Key_M, Qt.KeyboardModifier.ControlModifier)
    picker = w.model_dialog
    assert picker.choices.combos["sam"].currentText() == "file tiny_sam.pth"
    assert picker.choices.combos["hq-sam"].currentText().startswith("plugin hq.safetensors")
    choose(qtbot, picker.choices.combos["sam"], "automatic")
    choose(qtbot, picker.choices.combos["hq-sam"], "automatic")
    qtbot.mouseClick(picker.apply_button, Qt.MouseButton.LeftButton)
    assert calls[-1] == {} and w.session.engines.checkpoints == {}
    assert read_model_choice(open_settings(settings_path)) == {"checkpoints": {}, "plugins": {}}
    assert row()["Backbone installed"] == "no"
    w.shutdown()
