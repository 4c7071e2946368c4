"""`stable-sam`: Stable-SAM (specs/stable_sam.md) on our SAM or SAM 2 engine.

The engine hosts a plain `SamEngine` / `Sam2Engine` and runs the host's own predict with
the trained plugin attached to layer 2 of its mask decoder (engines/stable_sam/plugin.py), so
everything else (resize, prompt maths, multimask choice, upsampling, decoder reuse) is
the host's, step for step. The plugin leaves the encoder alone, so the backbone key, and
with it the embedding cache, is the host's. `Prediction.extras["alpha"]` holds the
routing weights (deformed, regular).

A plugin file (engines/files/plugins.py) is needed: Stable-SAM has no public weights, and an
untrained plugin is plain SAM. `from_checkpoint` takes it as `plugin=` or finds one
beside the backbone checkpoint (or in a `plugins/` folder there) whose metadata names
this very checkpoint.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engines.files.checkpoints import checkpoint_identity
from engines.files.plugin_index import scan_plugins, usable_plugin
from engines.files.plugins import load_plugin, read_plugin_metadata
from engines.hosts import build as hosts_build
from engines.hosts.sam2 import Sam2Engine
from engines.hosts.sam import SamEngine
from engines.stable_sam.plugin import StableSAMPlugin, attached
from engines.types import CheckpointError, EngineError, Embedding, Prediction, Prompt

ENGINE = "stable-sam"


def train_hint(backbone: str | Path) -> str:
    return (f"make one with `annotator train stable-sam --backbone {backbone} --data "
            "<COCO export>` and pass it as the plugin")


def find_plugin(backbone: str | Path, directories: list[str | Path] | None = None) -> Path | None:
    """The newest stable-sam plugin file trained on this very backbone checkpoint, looked
    for in `directories` (default: the checkpoint's folder and its `plugins/`)."""
    backbone = Path(backbone)
    folders = directories if directories is not None else [backbone.parent, backbone.parent / "plugins"]
    plugins = [p for folder in folders for p in scan_plugins(Path(folder), ENGINE, recursive=False)]
    pair = usable_plugin(sorted(plugins, key=lambda p: p.created, reverse=True), [backbone])
    return pair[0].path if pair else None


# --- the engine -----------------------------------------------------------------------
class StableSamEngine:
    name = ENGINE

    def __init__(self, host: SamEngine | Sam2Engine, plugin: StableSAMPlugin, *,
                 plugin_path: str | Path | None = None, plugin_meta: dict | None = None):
        model = host.model
        self.decoder = hosts_build.mask_decoder_of(model)
        width = int(self.decoder.transformer_dim)
        if plugin.conv_in.out_channels != width:
            raise CheckpointError(f"Stable-SAM plugin {plugin_path or ''} has width "
                                  f"{plugin.conv_in.out_channels}, the backbone's decoder {width}")
        self.host = host
        self.plugin = plugin.to(host.device).eval().requires_grad_(False)
        self.plugin_path = None if plugin_path is None else Path(plugin_path)
        self.plugin_meta = dict(plugin_meta or {})

    @property
    def backbone_key(self) -> str:
        return self.host.backbone_key      # same encoder, same cached embeddings

    @classmethod
    def from_checkpoint(cls, path: str | Path, arch: str | None = None, device=None,
                        exact: bool = False, plugin: str | Path | None = None):
        """`path`: the SAM / SAM 2.1 backbone; `plugin`: a stable-sam plugin file trained
        on it (default: one found beside the backbone, see find_plugin)."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist (expected the SAM or SAM 2.1 "
                                  "backbone of a Stable-SAM plugin)")
        plugin = plugin if plugin is not None else find_plugin(path)
        if plugin is None:
            raise CheckpointError(f"stable-sam needs a trained Stable-SAM plugin for {path.name} "
                                  f"and none was given or found beside it; {train_hint(path)}")
        identity = checkpoint_identity(path)
        meta = read_plugin_metadata(plugin)   # refuse a wrong plugin before loading GBs
        if meta.get("engine") != ENGINE or meta.get("backbone_checkpoint") != identity:
            load_plugin(plugin, engine=ENGINE, backbone_arch=str(meta.get("backbone_arch")),
                        backbone_checkpoint=identity)      # raises, naming the mismatch
        host, backbone_arch = hosts_build.build_host(path, arch, device=device, exact=exact,
                                                     needed_by="Stable-SAM")
        return cls.from_host(host, plugin, backbone_arch=backbone_arch, backbone_checkpoint=identity)

    @classmethod
    def from_host(cls, host: SamEngine | Sam2Engine, plugin: str | Path, *,
                  backbone_arch: str | None = None, backbone_checkpoint: str | None = None):
        """An engine from a built host and a plugin file; arch and checkpoint identity
        default to the host's backbone key ("sam:vit_b:<identity>")."""
        if backbone_arch is None:
            backbone_arch, _, ident = host.checkpoint_key.rpartition(":")
            backbone_checkpoint = backbone_checkpoint or ident
            if not backbone_arch:
                raise EngineError(f"backbone key {host.checkpoint_key!r} does not name an "
                                  "architecture; pass backbone_arch")
        state, meta = load_plugin(plugin, engine=ENGINE, backbone_arch=backbone_arch,
                                  backbone_checkpoint=backbone_checkpoint)
        try:
            module = StableSAMPlugin.from_state(state)
        except EngineError as exc:
            raise CheckpointError(f"plugin {plugin}: {exc}") from None
        return cls(host, module, plugin_path=plugin, plugin_meta=meta)

    # --- what the rest of the program reads from an engine ----------------------------
    @property
    def model(self):
        return self.host.model

    @property
    def device(self) -> torch.device:
        return self.host.device

    @property
    def input_side(self) -> int:
        return self.host.input_side

    def embed(self, image: np.ndarray) -> Embedding:
        return self.host.embed(image)

    @torch.no_grad()
    def predict(self, emb: Embedding, prompt: Prompt) -> Prediction:
        """The host's predict (its multimask default included) with layer 2 routed
        through the plugin; alpha = (deformed, regular) weights of this prompt."""
        with attached(self.decoder, self.plugin) as hook:
            pred = self.host.predict(emb, prompt)
        pred.engine = self.name
        pred.extras["alpha"] = hook.last_alpha[0].float().cpu().numpy()
        return pred
