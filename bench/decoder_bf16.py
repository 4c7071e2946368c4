"""Does bf16 help the click path on this CPU? One click's decode (prompt encoder, mask
decoder, upsampling to a 1024x768 mask) in fp32 against the same call under torch CPU
autocast to bfloat16, for SAM ViT-B and SAM 2.1 Hiera-T hosts and the HQ-SAM and
Stable-SAM decoders on ViT-B, full-size architectures with RANDOM weights (timing only),
30 seeded clicks after a warm-up, in this one process (encoder run once, fp32).

    python bench/decoder_bf16.py [--clicks 30] [--no-write]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
from _proc import cpu_header  # noqa: E402
from engine_latency import load_image, make_clicks, pick_image  # noqa: E402


def engines():
    """(name, engine) pairs on shared random-weight hosts."""
    import torch
    from engines.hosts import Sam2Engine, SamEngine, build_sam2_architecture, build_sam_architecture
    from engines.hq_sam import HqSamEngine, build_hq_architecture
    from engines.stable_sam import StableSamEngine, StableSAMPlugin
    torch.manual_seed(0)
    sam = SamEngine(build_sam_architecture("vit_b"), backbone_key="sam:vit_b:random", device="cpu",
                    runtime="torch-fp32")
    torch.manual_seed(0)
    sam2 = Sam2Engine(build_sam2_architecture("hiera_t"), backbone_key="sam2:hiera_t:random",
                      device="cpu", runtime="torch-fp32")
    torch.manual_seed(0)
    hq = HqSamEngine(build_hq_architecture("vit_b"), backbone_key="hq-sam:vit_b:random", device="cpu")
    torch.manual_seed(0)
    stable = StableSamEngine(sam, StableSAMPlugin(int(sam.model.mask_decoder.transformer_dim)))
    return [("sam vit_b", sam), ("sam2 hiera_t", sam2), ("hq-sam vit_b", hq), ("stable-sam vit_b", stable)]


def bf16_decoder(engine):
    """Run the engine's mask decoder under bf16 autocast, its outputs back in fp32 (what
    a bf16 click path would do; the upsampling to full size stays fp32)."""
    import torch
    from engines.hosts import mask_decoder_of
    model = engine.host.model if hasattr(engine, "host") else engine.model
    decoder = mask_decoder_of(model)
    plain = decoder.forward

    def forward(*args, **kwargs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = plain(*args, **kwargs)
        return tuple(o.float() if torch.is_tensor(o) and o.is_floating_point() else o for o in out)
    return decoder, plain, forward


def time_clicks(engine, emb, clicks, bf16: bool) -> list[float]:
    from engines.types import Prompt
    decoder, plain, forward = bf16_decoder(engine)
    decoder.forward = forward if bf16 else plain
    out = []
    try:
        for i, xy in enumerate([clicks[0], *clicks]):
            prompt = Prompt(points=np.array([xy], np.float32), labels=np.array([1]))
            t0 = time.perf_counter()
            engine.predict(emb, prompt)
            if i:                                   # the first is the warm-up
                out.append(time.perf_counter() - t0)
    finally:
        decoder.forward = plain
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clicks", type=int, default=30)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    path, desc = pick_image(None)
    image, clicks = load_image(path), make_clicks(args.clicks)["points"]
    rows = []
    for name, engine in engines():
        emb = engine.embed(image)
        fp32 = time_clicks(engine, emb, clicks, False)
        try:
            bf16 = time_clicks(engine, emb, clicks, True)
        except RuntimeError as exc:   # an op with no bf16 kernel (NotImplementedError is one)
            bf16 = f"fails: {str(exc).splitlines()[0][:90]}"
        rows.append((name, fp32, bf16))
        print(name, np.median(fp32), bf16 if isinstance(bf16, str) else np.median(bf16),
              file=sys.stderr, flush=True)
    lines = ["## Click path in bf16 (`bench/decoder_bf16.py`)", "",
             f"{cpu_header()}. Full-size architectures with **random weights**; image: {desc}; "
             f"{args.clicks} seeded single clicks after a warm-up, each decoded to its full-size "
             "masks; fp32 against the mask decoder under `torch.autocast('cpu', bfloat16)` (outputs cast back to fp32), in one "
             "process. ms, median (p95).", "",
             "| engine | fp32 | bf16 autocast | bf16 / fp32 |", "|---|---|---|---|"]
    for name, a, b in rows:
        a_ms = 1000 * np.asarray(a)
        if isinstance(b, str):
            lines.append(f"| {name} | {np.median(a_ms):.1f} ({np.percentile(a_ms, 95):.1f}) | {b} | - |")
            continue
        b_ms = 1000 * np.asarray(b)
        lines.append(f"| {name} | {np.median(a_ms):.1f} ({np.percentile(a_ms, 95):.1f}) | "
                     f"{np.median(b_ms):.1f} ({np.percentile(b_ms, 95):.1f}) | "
                     f"{np.median(b_ms) / np.median(a_ms):.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        from _docs import write_section
        write_section(ROOT / "docs" / "benchmarks.md", "decoder-bf16", text)


if __name__ == "__main__":
    main()
