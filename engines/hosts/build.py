"""Any SAM / SAM 2.1 checkpoint -> its host engine, for plugins (Stable-SAM, ...) and
their training adapters, which sit on whichever host the file is; and the host model's
parts under their two spellings (SAM's `mask_decoder`, SAM 2's `sam_mask_decoder`)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from engines.files.checkpoints import describe_checkpoint, peek_state_dict
from engines.hosts.detect import guess_sam2_arch, guess_sam_arch
from engines.hosts.sam import SAM_ARCHS, SamEngine
from engines.hosts.sam2 import SAM2_CONFIGS, Sam2Engine
from engines.types import CheckpointError

HOST_ARCHS = SAM_ARCHS + ("tiny",) + tuple(SAM2_CONFIGS)


def build_host(path: str | Path, arch: str | None = None, device=None, exact: bool = False,
               *, needed_by: str = "a plugin") -> tuple[SamEngine | Sam2Engine, str]:
    """(host engine, backbone arch such as "sam:vit_b" / "sam2:hiera_t") for a SAM,
    SAM 2.1 or tiny SAM (engines.hosts.tiny) checkpoint; the kind is read from the file
    (memory-mapped: shapes only) unless `arch` names it. `needed_by` names the caller in
    errors ("Stable-SAM")."""
    path = Path(path)
    if arch is None:
        state = peek_state_dict(path, expected="SAM or SAM 2.1")
        arch = guess_sam2_arch(state) or guess_sam_arch(state)   # "tiny": engines.hosts.tiny
        if arch is None:
            raise CheckpointError(f"checkpoint {path} is not a SAM or SAM 2.1 checkpoint, which "
                                  f"{needed_by} needs: it looks like {describe_checkpoint(state)}")
        del state
    with torch.random.fork_rng(devices=[]):   # a tiny SAM's builder seeds torch
        if arch in SAM2_CONFIGS:
            host = Sam2Engine.from_checkpoint(path, arch=arch, device=device, exact=exact)
            return host, f"sam2:{arch}"
        if arch in SAM_ARCHS + ("tiny",):
            host = SamEngine.from_checkpoint(path, arch=arch, device=device, exact=exact)
            return host, f"sam:{arch}"
    raise CheckpointError(f"{needed_by} cannot sit on architecture {arch!r}; choose one of "
                          f"{', '.join(HOST_ARCHS)}")


def mask_decoder_of(model: nn.Module) -> nn.Module:
    """The mask decoder of a SAM (`mask_decoder`) or SAM 2 (`sam_mask_decoder`) model."""
    return model.sam_mask_decoder if hasattr(model, "sam_mask_decoder") else model.mask_decoder


def prompt_encoder_of(model: nn.Module) -> nn.Module:
    """The prompt encoder of a SAM (`prompt_encoder`) or SAM 2 (`sam_prompt_encoder`) model."""
    return model.sam_prompt_encoder if hasattr(model, "sam_prompt_encoder") else model.prompt_encoder
