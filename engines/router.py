"""Picks the engine that answers a prompt, falling back along a documented chain.

The chains (first installed engine wins; the last step needs no model at all):

| request                     | chain                                            |
|-----------------------------|--------------------------------------------------|
| points or box               | stable-sam -> sam2 -> sam -> classic             |
| points or box, fine edges   | hq-sam -> stable-sam -> sam2 -> sam -> classic   |
| typed class name ("text")   | sam-mi (no fallback: nothing else reads text)    |
| no prompt ("auto")          | pmg-sam -> ip-sam -> sam2-amg -> sam-amg          |
| "auto" with a preset        | the preset's engines, then the "auto" chain      |

Auto presets (manifest.AUTO_PRESETS, each engine's `preset`): "salient" (pmg-sam),
"camouflaged" (ip-sam), "everything" (sam2-amg, sam-amg). A preset is a preference: when
none of its engines is installed the normal chain answers, and `skipped` says why each
of the preset's engines was not used.

SAM 2 comes before SAM because Hiera-T encodes an image several times faster than ViT-B
on a CPU. An engine is "installed" when it is registered and, if it needs a checkpoint,
one is in the models folder (or was given explicitly). Plugin engines (stable-sam, and
hq-sam without an official HQ checkpoint) are installed when a trained plugin sits in
the models folder's plugins/ together with the exact backbone checkpoint it was trained
on (engines/files/plugin_index.py). An engine whose frozen files are its own catalogue
entries (`backbone_files`: pmg-sam's Hiera-B+ file and u2net.pth) is installed when all of
them are in the models folder and a plugin trained on the first is in plugins/. An engine
that runs on another engine's checkpoints and optionally a plugin (sam-mi: a SAM host, the
CLIP file beside it, a plugin trained on both) runs in its trained mode when plugins/ holds
a plugin recorded with an installed host and the CLIP file beside that host, else in its
training-free mode; `Routed.mode` says which and why. Engines are built once and kept.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from engines.files import catalogue
from engines.manifest import AUTO_PRESETS, NOT_INSTALLED_HINT, ROUTES, preset_engines
from engines.registry import get_spec
from engines.types import Engine, EngineError

POINT_CHAIN = ROUTES[("points", False)]


@dataclass(frozen=True)
class Located:
    checkpoint: Path | None = None
    arch: str | None = None
    plugin: Path | None = None


@dataclass
class Routed:
    engine: Engine
    name: str
    checkpoint: Path | None
    skipped: list[str] = field(default_factory=list)   # "name: why it was not used"
    plugin: Path | None = None
    mode: str | None = None     # optional-plugin engines: "trained plugin X" / "training-free: why"

    def explain(self) -> str:
        files = [p.name for p in (self.checkpoint, self.plugin) if p is not None]
        ckpt = f" ({' + '.join(files)})" if files else ""
        mode = f", {self.mode}" if self.mode else ""
        why = f"; skipped {'; '.join(self.skipped)}" if self.skipped else ""
        return f"{self.name}{ckpt}{mode}{self.runtime_note()}{why}"

    def runtime_note(self) -> str:
        """', encoder openvino-bf16' when the encoder does not run the fp32 torch modules,
        so the status bar says which precision answered."""
        from engines.runtime import encoder_runtime
        runtime = encoder_runtime(self.engine)
        return f", encoder {runtime}" if runtime not in (None, "exact", "torch-fp32") else ""


class Router:
    def __init__(self, *, models_dir: str | Path | None = None, device: str | None = None,
                 checkpoints: dict[str, str | Path] | None = None,
                 plugins: dict[str, str | Path] | None = None):
        """`checkpoints` / `plugins` pin an engine to files (the user's choice in the
        model picker); other engines use what the models folder has."""
        self.models_dir = catalogue.models_dir(models_dir)
        self.device = device
        self.checkpoints = {k: Path(v) for k, v in (checkpoints or {}).items()}
        self.plugins = {k: Path(v) for k, v in (plugins or {}).items()}
        self._built: dict[tuple[str, Path | None, Path | None], Engine] = {}

    def chain(self, task: str, fine_edges: bool = False) -> tuple[str, ...]:
        try:
            return ROUTES[(task, fine_edges)]
        except KeyError:
            raise EngineError(f"unknown task {task!r}; tasks: points, box, text, auto") from None

    def route(self, task: str, *, fine_edges: bool = False, engine: str | None = None,
              preset: str | None = None) -> Routed:
        """The engine for `task`; `engine` forces one (no fallback: the user chose it);
        `preset` ("auto" only) tries that Auto preset's engines first."""
        if engine:
            names: tuple[str, ...] = (engine,)
        elif preset is not None:
            first = self.preset_chain(preset, task)
            names = first + tuple(n for n in self.chain(task, fine_edges) if n not in first)
        else:
            names = self.chain(task, fine_edges)
        skipped: list[str] = []
        for name in names:
            why = self._unavailable_reason(name, task)
            if why:
                skipped.append(f"{name}: {why}")
                continue
            found = self._locate(name)
            return Routed(self._build(name, found), name, found.checkpoint, skipped, found.plugin,
                          self.mode(name, found))
        head = NOT_INSTALLED_HINT.get(task, f"no engine can answer a {task} prompt")
        raise EngineError(f"{head} ({'; '.join(skipped)})")

    @staticmethod
    def preset_chain(preset: str, task: str = "auto") -> tuple[str, ...]:
        """The engines serving an Auto preset (EngineError for an unknown one)."""
        if task != "auto":
            raise EngineError(f"an Auto preset is for auto requests, not {task!r}")
        try:
            return preset_engines(preset)
        except ValueError as exc:
            raise EngineError(str(exc)) from None

    def preset_problem(self, preset: str) -> str | None:
        """None when an engine of this Auto preset is installed, else what is missing
        (each of its engines and why), without building any engine."""
        names = self.preset_chain(preset)
        reasons = [f"{name}: {why}" for name in names
                   if (why := self._unavailable_reason(name, "auto"))]
        if len(reasons) < len(names):
            return None
        return f"{AUTO_PRESETS[preset]} needs {' or '.join(names)} ({'; '.join(reasons)})"

    def unavailable(self, name: str, task: str = "points") -> str | None:
        """Why engine `name` cannot answer `task` here (None: it can), without building
        it: the window disables controls that nothing could serve."""
        return self._unavailable_reason(name, task)

    def _unavailable_reason(self, name: str, task: str) -> str | None:
        try:
            spec = get_spec(name)
        except EngineError:
            return "not part of this build"
        if task not in spec.tasks:
            return f"does not answer {task} prompts"
        if spec.needs_checkpoint and self._locate(name).checkpoint is None:
            missing = self.own_backbones(name)[1] if spec.backbone_files else None
            if missing:
                return missing
            if spec.plugin_required:
                return self._no_plugin_reason(name)
            return f"no checkpoint in {self.models_dir} (see `annotator models list`)"
        return None

    def _no_plugin_reason(self, name: str) -> str:
        """No plugin pairs with an installed backbone: say so, and name the plugins that
        were trained on other files and those that cannot be read."""
        from engines.files.plugin_index import find_plugins, unreadable_plugins
        why = f"no trained plugin with its backbone in {self.models_dir} (see `annotator train {name}`)"
        others = [p.path.name for p in find_plugins(self.models_dir, name)]
        if name in self.plugins:
            others = [self.plugins[name].name]
        if others:
            files = [p.name for p in self._backbone_candidates(name)]
            why += (f"; {', '.join(others[:3])}{' ...' if len(others) > 3 else ''} "
                    f"{'was' if len(others) == 1 else 'were'} trained on another backbone file than "
                    f"{', '.join(files) or 'any installed one'} (a plugin only works on the frozen "
                    "file it was trained with)")
        return "; ".join([why, *unreadable_plugins(self.models_dir, name)[:2]])

    def _locate(self, name: str) -> Located:
        """The files an engine loads: an explicit checkpoint (arch read from its keys),
        else the first catalogued one installed; for plugin engines, else a trained
        plugin paired with the installed backbone it was trained on."""
        spec = get_spec(name)
        plugin = self.plugins.get(name)
        if name in self.checkpoints:
            return Located(self.checkpoints[name], None, plugin)
        if not spec.needs_checkpoint:
            return Located()
        if spec.checkpoints_of:        # e.g. sam-amg runs on whatever sam would load
            host = self._locate(spec.checkpoints_of)
            if spec.plugin_hosts:      # sam-mi: trained with the host it was trained with
                pair = self._companion_pair(name, [plugin] if plugin else None)[0]
                if pair is not None:
                    return Located(pair[1], None, pair[0])
            # a pinned plugin no host pairs with rides along (the engine checks its CLIP file)
            return Located(host.checkpoint, host.arch, plugin) if plugin and host.checkpoint else host
        if plugin is None and not spec.plugin_required:
            own = self._catalogued(name)
            if own is not None:
                return own
        if spec.backbone_files:       # e.g. pmg-sam: its own frozen files + a plugin
            files, missing = self.own_backbones(name)
            return Located() if missing else self._plugin_pair(name, files, plugin)
        if spec.plugin_hosts:
            return self._plugin_pair(name, self.host_backbones(spec.plugin_hosts), plugin)
        return Located()

    def mode(self, name: str, found: Located | None = None) -> str | None:
        """Which mode an engine with an optional plugin on another engine's checkpoints
        (sam-mi) runs in and why, without building it: "trained plugin X (...)" or
        "training-free: no trained plugin for the installed host (...)". None for the
        other engines, which have one mode. `found`: what `_locate` already gave."""
        spec = get_spec(name)
        if not (spec.checkpoints_of and spec.plugin_hosts):
            return None
        found = self._locate(name) if found is None else found
        host = found.checkpoint.name if found.checkpoint else "none installed"
        if found.plugin is not None:
            pinned = ", pinned" if name in self.plugins else ""
            return f"trained plugin {found.plugin.name} (host {host}{pinned})"
        _, why = self._companion_pair(name, None)
        return f"training-free: no trained plugin for the installed host ({host}){why}"

    def _companion_pair(self, name: str, pinned: list[Path] | None
                        ) -> tuple[tuple[Path, Path] | None, str]:
        """(plugin, host checkpoint) for an engine whose plugin records both the file of
        its own it was trained on (`backbone_checkpoint`: sam-mi's CLIP file, looked for
        beside the host) and the host (`sam_host`: that host's backbone key), newest
        plugin first; else None and why each plugin found was not usable."""
        from engines.files.plugin_index import (
            find_plugins,
            read_installed,
            unreadable_plugins,
        )
        from engines.files.plugin_meta import read_plugin_metadata
        from engines.sam_mi.engine import find_clip
        from engines.types import CheckpointError
        try:
            plugins = [read_installed(p) for p in pinned] if pinned else \
                find_plugins(self.models_dir, name)
        except CheckpointError as exc:
            return None, f"; {exc}"
        hosts = self.host_backbones(get_spec(name).plugin_hosts)
        why: list[str] = []
        for plugin in plugins:
            try:
                recorded = str(read_plugin_metadata(plugin.path).get("sam_host") or "")
            except CheckpointError as exc:
                why.append(str(exc))
                continue
            host_id = recorded.split(":")[2].split("+")[0] if recorded.count(":") >= 2 else ""
            if not host_id:
                why.append(f"{plugin.path.name} records no host it was trained with")
                continue
            host = next((h for h in hosts if _identity(h) == host_id), None)
            if host is None:
                installed = ", ".join(h.name for h in hosts) or "none"
                why.append(f"{plugin.path.name} was trained with another host ({recorded}) than "
                           f"the installed ones ({installed})")
                continue
            own = find_clip(host)
            if own is None or _identity(own) != plugin.backbone_checkpoint:
                what = own.name if own is not None else "no file"
                why.append(f"{plugin.path.name} was trained on another CLIP file than the one "
                           f"beside {host.name} ({what})")
                continue
            return (plugin.path, host), ""
        why += unreadable_plugins(self.models_dir, name)[:2]
        return None, "".join(f"; {w}" for w in why[:3])

    def _catalogued(self, name: str) -> Located | None:
        try:
            found = catalogue.find_checkpoint(name, directory=self.models_dir)
        except EngineError:       # no catalogued checkpoints for this engine
            return None
        return Located(found[1], found[0].arch) if found else None

    def host_backbones(self, hosts: tuple[str, ...]) -> list[Path]:
        """Checkpoints a plugin for these host engines may sit on: pinned ones first,
        then every installed catalogue entry of those engines."""
        found = [self.checkpoints[h] for h in hosts if h in self.checkpoints]
        try:
            entries = catalogue.load_catalogue()
        except EngineError:
            return found
        return found + [catalogue.model_path(e, self.models_dir) for e in entries
                        if e.engine in hosts and catalogue.is_installed(e, self.models_dir)]

    def own_backbones(self, name: str) -> tuple[list[Path], str | None]:
        """For an engine with `backbone_files` (its own catalogued frozen files): the
        files its plugin may pair with (the pinned one, then the installed entries of its
        first backbone arch), and why it cannot run when one of its files is missing."""
        spec = get_spec(name)
        try:
            entries = [e for e in catalogue.load_catalogue() if e.engine == name]
        except EngineError:
            entries = []
        pinned = [self.checkpoints[name]] if name in self.checkpoints else []
        first: list[Path] = []
        for index, arch in enumerate(spec.backbone_files):
            rows = [e for e in entries if e.arch == arch]
            have = [catalogue.model_path(e, self.models_dir) for e in rows
                    if catalogue.is_installed(e, self.models_dir)]
            if index == 0:
                first = have
            if not have and not (index == 0 and pinned):
                what = (f"{rows[0].filename} (see `annotator models download {rows[0].name}`)"
                        if rows else f"a catalogued {arch} file")
                return pinned + first, f"backbone file missing: no {what} in {self.models_dir}"
        return pinned + first, None

    def _backbone_candidates(self, name: str) -> list[Path]:
        spec = get_spec(name)
        if spec.backbone_files:
            return self.own_backbones(name)[0]
        return self.host_backbones(spec.plugin_hosts)

    def plugin_backbone(self, plugin) -> Path | None:
        """The installed (or pinned) checkpoint an InstalledPlugin was trained on, if any."""
        from engines.files.plugin_index import usable_plugin
        try:
            spec = get_spec(plugin.engine)
            candidates = self._backbone_candidates(plugin.engine)
        except EngineError:       # an engine this build does not have
            return None
        if spec.checkpoints_of and spec.plugin_hosts:     # sam-mi: the host it was trained with
            pair = self._companion_pair(plugin.engine, [plugin.path])[0]
            return pair[1] if pair else None
        pair = usable_plugin([plugin], candidates)
        return pair[1] if pair else None

    def _plugin_pair(self, name: str, backbones: list[Path], plugin: Path | None) -> Located:
        from engines.files.plugin_index import find_plugins, read_installed, usable_plugin
        candidates = [read_installed(plugin)] if plugin is not None else \
            find_plugins(self.models_dir, name)
        pair = usable_plugin(candidates, backbones)
        return Located(pair[1], None, pair[0].path) if pair else Located()

    def _build(self, name: str, found: Located) -> Engine:
        key = (name, found.checkpoint, found.plugin)
        if key not in self._built:
            factory = get_spec(name).factory
            if found.checkpoint is None:
                self._built[key] = factory(device=self.device)
            else:
                extra = {"plugin": found.plugin} if found.plugin is not None else {}
                self._built[key] = factory.from_checkpoint(found.checkpoint, arch=found.arch,
                                                           device=self.device, **extra)
        return self._built[key]


def _identity(path: Path) -> str | None:
    """checkpoint_identity of a file, remembered per file version (routing asks often);
    None for a file that is gone."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return _identity_of(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=256)
def _identity_of(path: str, size: int, mtime_ns: int) -> str:
    from engines.files.identity import checkpoint_identity
    return checkpoint_identity(path)
