"""Window geometry and tool settings, kept in QSettings between sessions."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

ORGANIZATION, APPLICATION = "sam-annotator", "annotator"


def open_settings(path: str | Path | None = None) -> QSettings:
    """The user's settings, or an ini file at `path` (tests, portable installs)."""
    if path is not None:
        return QSettings(str(path), QSettings.Format.IniFormat)
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope,
                     ORGANIZATION, APPLICATION)


def read_bool(settings: QSettings, key: str, default: bool) -> bool:
    value = settings.value(key, default)
    if isinstance(value, str):       # ini files give strings back
        return value.lower() in ("1", "true", "yes")
    return bool(value)


def read_int(settings: QSettings, key: str, default: int) -> int:
    try:
        return int(settings.value(key, default))
    except (TypeError, ValueError):
        return default


# The model picker's choice: engine -> file, in the Router's two keyword arguments.
MODEL_CHOICE_GROUPS = {"checkpoints": "models/checkpoint", "plugins": "models/plugin"}


def read_model_choice(settings: QSettings) -> dict[str, dict[str, str]]:
    """{"checkpoints": {engine: path}, "plugins": {engine: path}} as the picker saved it
    (files that have gone since are left out, so their engine is automatic again)."""
    choice: dict[str, dict[str, str]] = {}
    for kind, group in MODEL_CHOICE_GROUPS.items():
        settings.beginGroup(group)
        values = {key: str(settings.value(key) or "") for key in settings.childKeys()}
        settings.endGroup()
        choice[kind] = {k: v for k, v in values.items() if v and Path(v).is_file()}
    return choice


def write_model_choice(settings: QSettings, choice: dict[str, dict[str, str]]) -> None:
    for kind, group in MODEL_CHOICE_GROUPS.items():
        settings.remove(group)
        for engine, path in sorted(choice.get(kind, {}).items()):
            settings.setValue(f"{group}/{engine}", str(path))
    settings.sync()
