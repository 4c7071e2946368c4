"""Which project category an accepted candidate gets: the proposer's class name through
the project's class mapping (user-editable; a name not in it maps to the category of the
same name, made when missing), and the current class for proposals that name none."""
from __future__ import annotations

from annotator.core.dataset import CategoryRecord

DEFAULT_CLASS = "object"    # for an unnamed proposal when no class is current


def category_name_for(label: str, mapping: dict[str, str], current: CategoryRecord | None) -> str:
    """The category name a candidate with proposer class `label` is accepted as."""
    if label:
        return mapping.get(label, label).strip()
    return current.name if current is not None else DEFAULT_CLASS


def parse_class_map(text: str) -> dict[str, str]:
    """ "cat=feline, dog=canine" -> {"cat": "feline", "dog": "canine"}; ValueError names the
    bad pair."""
    mapping: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, target = part.partition("=")
        if not sep or not name.strip() or not target.strip():
            raise ValueError(f"class mapping {part.strip()!r} is not NAME=CATEGORY")
        mapping[name.strip()] = target.strip()
    return mapping
