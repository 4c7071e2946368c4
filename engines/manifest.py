"""Every engine's facts in one torch-free table, and the routing policy.

The router, the model picker, the Train dialog, the training CLI and the catalogue read
this table; nothing else names engines. Importing it loads no torch (a test proves it), so
the window can list engines without building one. Adding an engine is one row here, its
package under `engines/` and, if it trains, its adapter under `training/adapters/`
(docs/adding_an_engine.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

# What a request asks for; engines declare which of these they answer.
TASKS = ("points", "box", "text", "auto")
TRAIN_KINDS = ("plugin", "whole")   # a small plugin on a frozen host / the whole model
# What kind of objects an "auto" engine proposes: the window's Auto presets (label shown).
AUTO_PRESETS: dict[str, str] = {
    "salient": "Auto: salient objects",
    "camouflaged": "Auto: camouflaged / medical",
    "everything": "Auto: everything",
}
# How `annotator eval` scores an "auto" engine and its baselines (training/evaluate_auto.py):
# the probability map, one proposal (top-score, or the oracle's closest to the truth), a
# SAM 2 with a null prompt, or one click at the truth's centroid.
EVAL_PROTOCOLS = ("map", "top-score", "oracle", "null", "centroid-point")
EVAL_METRICS = ("dis", "cod", "cos")   # DIS's six, IP-SAM's COD/polyp six, COCO AP of instances
OPTION_KINDS = ("file", "choice")      # what a training option's value is (the Train dialog's widget)


@dataclass(frozen=True)
class EngineOption:
    """One `annotator train ENGINE --option NAME=VALUE` the Train dialog offers."""
    name: str                       # the option's key
    kind: str                       # one of OPTION_KINDS
    label: str                      # the dialog's row label
    help: str                       # its tooltip: what it does, what an empty value means
    default: str = ""               # "choice": the one first chosen; "file": "" (the adapter's default)
    choices: tuple[str, ...] = ()   # "choice": the values offered
    catalogue_arch: str | None = None   # "file": prefilled with the engine's catalogue file of this arch, if installed


@dataclass(frozen=True)
class EngineInfo:
    name: str                       # what users type and the router routes
    tasks: frozenset[str]           # subset of TASKS
    module: str                     # the module whose `factory` builds it (imported on demand)
    factory: str                    # a class with `from_checkpoint(path, ...)` (or a callable)
    description: str                # one line, shown in `annotator models` and the picker
    needs_checkpoint: bool = True   # False: runs with no file at all (classic)
    catalogued: bool = False        # official checkpoints of it are in resources/models.json
    plugin_hosts: tuple[str, ...] = ()   # engines whose checkpoints its trained plugin sits on
    plugin_required: bool = False   # True: without a trained plugin there is no engine
    train: str | None = None        # "plugin" | "whole" | None: what `annotator train` makes
    adapter: str | None = None      # the training adapter module, when `train` is set
    choosable: bool = False         # the model picker lists files to pin for it
    checkpoints_of: str | None = None   # loads the checkpoint this engine would (and its pin)
    # its own catalogued frozen files (catalogue archs), all needed beside its plugin; the
    # plugin pairs with the first (pmg-sam: the Hiera file, then u2net.pth beside it)
    backbone_files: tuple[str, ...] = ()
    preset: str | None = None       # "auto" engines: the AUTO_PRESETS entry it serves
    # `annotator eval` of an auto engine: its paper's baselines as "ENGINE:PROTOCOL" (the
    # engine on the --baseline checkpoint, one of EVAL_PROTOCOLS) and its metric sets
    eval_baselines: tuple[str, ...] = ()
    eval_metrics: tuple[str, ...] = ()
    # its adapter can train the heads alone (`--option heads_only=true`: no LoRA, the frozen
    # encoder's features cached); the Train dialog offers it as a checkbox
    heads_only: bool = False
    # the training options the Train dialog offers as widgets (`--option NAME=VALUE`)
    options: tuple[EngineOption, ...] = ()

    @property
    def trainable_plugin(self) -> bool:
        return self.train == "plugin"


ENGINES: tuple[EngineInfo, ...] = (
    EngineInfo("classic", frozenset({"points", "box"}), "engines.classic", "ClassicEngine",
               "OpenCV GrabCut / flood fill; no model needed", needs_checkpoint=False),
    EngineInfo("sam", frozenset({"points", "box"}), "engines.hosts.sam", "SamEngine",
               "Segment Anything (ViT-B/L/H), official checkpoints", catalogued=True,
               train="whole", adapter="training.adapters.sam_full", choosable=True),
    EngineInfo("sam2", frozenset({"points", "box"}), "engines.hosts.sam2", "Sam2Engine",
               "SAM 2.1 (Hiera T/S/B+/L), official checkpoints", catalogued=True,
               train="whole", adapter="training.adapters.sam2_full", choosable=True),
    EngineInfo("hq-sam", frozenset({"points", "box"}), "engines.hq_sam", "HqSamEngine",
               "HQ-SAM: SAM plus the HQ output token for fine boundaries and thin structures "
               "(official sam_hq_vit_* files, or SAM / SAM 2 + an HQ plugin)",
               catalogued=True, plugin_hosts=("sam", "sam2"), train="plugin",
               adapter="training.adapters.hq_sam", choosable=True),
    EngineInfo("stable-sam", frozenset({"points", "box"}), "engines.stable_sam",
               "StableSamEngine",
               "Stable-SAM: SAM / SAM 2 with a trained deformable-sampling plugin, robust to "
               "sloppy boxes and single clicks", plugin_hosts=("sam", "sam2"),
               plugin_required=True, train="plugin", adapter="training.adapters.stable_sam",
               choosable=True),
    EngineInfo("pmg-sam", frozenset({"auto"}), "engines.pmg_sam", "PmgSamEngine",
               "PMG-SAM: salient objects with no prompt, from a frozen Hiera-B+ / U²-Net encoder "
               "and a trained Pre-Mask-guided decoder (plugin)", catalogued=True,
               backbone_files=("hiera_b+", "u2net"), plugin_required=True, train="plugin",
               adapter="training.adapters.pmg_sam", choosable=True, preset="salient",
               eval_baselines=("sam2-amg:top-score", "sam2-amg:oracle"),
               eval_metrics=("dis", "cos")),
    EngineInfo("ip-sam", frozenset({"auto"}), "engines.ip_sam", "IpSamEngine",
               "IP-SAM: camouflaged and medical targets with no prompt, from SAM 2 with a trained "
               "self-prompt plugin (LoRA + heads) through its own prompt encoder",
               plugin_hosts=("sam2",), plugin_required=True, train="plugin",
               adapter="training.adapters.ip_sam", choosable=True, preset="camouflaged",
               heads_only=True,
               eval_baselines=("sam2:null", "sam2:centroid-point", "sam2-amg:top-score"),
               eval_metrics=("cod",)),
    EngineInfo("sam-amg", frozenset({"auto"}), "engines.sam_amg", "SamAmgEngine",
               "Segment everything on SAM: a grid of clicks, filtered and deduplicated "
               "(SamAutomaticMaskGenerator's algorithm)", checkpoints_of="sam",
               preset="everything"),
    EngineInfo("sam2-amg", frozenset({"auto"}), "engines.sam_amg", "Sam2AmgEngine",
               "Segment everything on SAM 2 (SAM2AutomaticMaskGenerator's algorithm)",
               checkpoints_of="sam2", preset="everything"),
    EngineInfo("sam-mi", frozenset({"text"}), "engines.sam_mi", "SamMiEngine",
               "SAM-MI: typed class names become instances, from a local CLIP file beside the SAM "
               "checkpoint; training-free (CLIP similarity -> sparse points -> SAM -> SMAgg) until a "
               "trained plugin (TSPP, DMI, CAT-Seg aggregator) is given", checkpoints_of="sam",
               # its plugin records the CLIP file and the SAM / SAM 2 host it was trained
               # with; the router pairs it with that host (else training-free on sam's)
               plugin_hosts=("sam", "sam2"), catalogued=True, train="plugin", adapter="training.adapters.sam_mi",
               options=(
                   EngineOption("clip", "file", "CLIP file:",
                                "The CLIP checkpoint SAM-MI's features come from; the plugin only "
                                "works with this very file. Empty: the one beside the SAM "
                                "checkpoint (ViT-B-16.pt).", catalogue_arch="clip_vit_b16"),
                   EngineOption("stage", "choice", "Stage:",
                                "1: the TSPP point prompter alone, on cached CLIP features (fast; "
                                "SAM is not run). 2: the whole model with SAM frozen and run on "
                                "the sampled points, CLIP's attention at a low learning rate.",
                                default="1", choices=("1", "2")))),
)

# The routing policy (engines/router.py): first installed engine of the chain wins.
_POINT_CHAIN = ("stable-sam", "sam2", "sam", "classic")
_AUTO_CHAIN = ("pmg-sam", "ip-sam", "sam2-amg", "sam-amg")
ROUTES: dict[tuple[str, bool], tuple[str, ...]] = {     # (task, fine edges) -> chain
    ("points", False): _POINT_CHAIN,
    ("box", False): _POINT_CHAIN,
    ("points", True): ("hq-sam",) + _POINT_CHAIN,
    ("box", True): ("hq-sam",) + _POINT_CHAIN,
    ("text", False): ("sam-mi",),
    ("text", True): ("sam-mi",),
    ("auto", False): _AUTO_CHAIN,
    ("auto", True): _AUTO_CHAIN,
}
NOT_INSTALLED_HINT = {
    "text": "no text engine installed: typed class names need the sam-mi engine",
    "auto": "no proposal engine installed: Auto needs a SAM or SAM 2 checkpoint "
            "(or the pmg-sam / ip-sam engine)",
}

_BY_NAME = {info.name: info for info in ENGINES}


def get(name: str) -> EngineInfo | None:
    return _BY_NAME.get(name)


def names() -> tuple[str, ...]:
    return tuple(_BY_NAME)


def list_engines(*, task: str | None = None, trainable: bool | None = None,
                 choosable: bool | None = None, catalogued: bool | None = None,
                 train: str | None = None) -> list[EngineInfo]:
    """The rows matching every filter given, in table order (timm's `list_models`)."""
    def keep(info: EngineInfo) -> bool:
        return ((task is None or task in info.tasks)
                and (trainable is None or info.trainable_plugin == trainable)
                and (choosable is None or info.choosable == choosable)
                and (catalogued is None or info.catalogued == catalogued)
                and (train is None or info.train == train))
    return [info for info in ENGINES if keep(info)]


def preset_engines(preset: str) -> tuple[str, ...]:
    """The "auto" engines serving an Auto preset, in the auto chain's order (the router
    tries them first, then the rest of the chain). ValueError for an unknown preset."""
    if preset not in AUTO_PRESETS:
        raise ValueError(f"unknown Auto preset {preset!r}; presets: {', '.join(AUTO_PRESETS)}")
    return tuple(name for name in _AUTO_CHAIN if _BY_NAME[name].preset == preset)


def plugin_host_engines() -> tuple[str, ...]:
    """Engines some plugin sits on (what the Train dialog offers as a backbone)."""
    hosts: list[str] = []
    for info in ENGINES:
        hosts += [h for h in info.plugin_hosts if h not in hosts]
    return tuple(hosts)


def eval_baselines(name: str, family: str | None = None) -> list[tuple[str, str]]:
    """(engine, protocol) of `name`'s eval baselines. `family` ("sam" or "sam2": what the
    --baseline checkpoint is) swaps each baseline for its counterpart on that family (the
    engine of the same tasks and preset that loads that family's checkpoints: sam2-amg
    -> sam-amg); ValueError when there is none."""
    out = []
    for entry in _BY_NAME[name].eval_baselines:
        engine, protocol = entry.split(":")
        if family is not None and _family(engine) != family:
            info = _BY_NAME[engine]
            twins = [i.name for i in ENGINES if _family(i.name) == family
                     and i.tasks == info.tasks and i.preset == info.preset]
            if not twins:
                raise ValueError(f"{name}'s baseline {engine} has no counterpart on a {family} "
                                 "checkpoint")
            engine = twins[0]
        out.append((engine, protocol))
    return out


def _family(name: str) -> str:
    """The engine whose checkpoints `name` loads (itself for a host)."""
    return _BY_NAME[name].checkpoints_of or name


def _check(rows: Iterable[EngineInfo]) -> None:
    for info in rows:
        if not info.tasks <= set(TASKS):
            raise ValueError(f"engine {info.name!r}: unknown tasks {sorted(info.tasks - set(TASKS))}")
        if info.checkpoints_of is not None and info.checkpoints_of not in _BY_NAME:
            raise ValueError(f"engine {info.name!r}: checkpoints_of names no engine")
        if (info.train is None) != (info.adapter is None) or \
                (info.train is not None and info.train not in TRAIN_KINDS):
            raise ValueError(f"engine {info.name!r}: `train` and `adapter` go together")
        if info.preset is not None and (info.preset not in AUTO_PRESETS or "auto" not in info.tasks):
            raise ValueError(f"engine {info.name!r}: `preset` is one of {', '.join(AUTO_PRESETS)}, "
                             "on an auto engine")
        if info.heads_only and info.train != "plugin":
            raise ValueError(f"engine {info.name!r}: `heads_only` is a plugin-training mode")
        if info.backbone_files and not (info.catalogued and info.plugin_required
                                        and not info.plugin_hosts):
            raise ValueError(f"engine {info.name!r}: `backbone_files` are its own catalogued "
                             "files under a required plugin (no plugin_hosts)")
        for entry in info.eval_baselines:
            engine, _, protocol = entry.partition(":")
            if engine not in _BY_NAME or protocol not in EVAL_PROTOCOLS or "auto" not in info.tasks:
                raise ValueError(f"engine {info.name!r}: eval baseline {entry!r} is not "
                                 f"ENGINE:PROTOCOL (protocols: {', '.join(EVAL_PROTOCOLS)}) of an auto engine")
        names_seen = [o.name for o in info.options]
        for option in info.options:
            if (option.kind not in OPTION_KINDS or names_seen.count(option.name) > 1
                    or info.train is None or (option.kind == "choice") != bool(option.choices)
                    or (option.kind == "choice" and option.default not in option.choices)
                    or (option.kind != "file" and option.catalogue_arch is not None)):
                raise ValueError(f"engine {info.name!r}: option {option.name!r} is not a unique "
                                 f"{' or '.join(OPTION_KINDS)} option of a trainable engine "
                                 "(a choice lists its values and defaults to one of them)")
        if not set(info.eval_metrics) <= set(EVAL_METRICS):
            raise ValueError(f"engine {info.name!r}: eval metrics are some of {', '.join(EVAL_METRICS)}")


_check(ENGINES)
