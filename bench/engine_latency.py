"""Benchmark (not a test): our SAM / SAM 2 engines against Meta's reference predictors.

For each full-size architecture, with random weights (timing only): encoder time and one
click's decode-to-full-resolution-mask time, median and p95 over repeated runs, for the
reference predictor and for our engine on the same image and clicks in the same run;
plus our embedding-cache hit time, peak memory and whether our masks equal the reference's.
Each side of each architecture runs in its own fresh process (bench/_latency_worker.py):
the reference plain, as its users run it; ours as the product runs.

    .venv/bin/python bench/engine_latency.py --quick          # vit_b + hiera_t, a few minutes
    .venv/bin/python bench/engine_latency.py                  # all 7, ~15-20 min on 2 cores

Writes its table between the engine-latency markers of docs/benchmarks.md (--no-write: don't).
"""
from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _latency_report import format_report, machine, summarise, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "_latency_worker.py"
ALL_ARCHS = ("vit_b", "vit_l", "vit_h", "hiera_t", "hiera_s", "hiera_b+", "hiera_l")
QUICK_ARCHS = ("vit_b", "hiera_t")
BIG_ARCHS = {"vit_l", "vit_h", "hiera_l"}   # slow encoders: fewer runs by default
PHOTOS = ROOT.parent / "shared" / "data" / "photos"   # beside the repository, as in the workplace
PREFERRED_PHOTO = "truck.jpg"
FALLBACK_IMAGE = ROOT / "resources" / "samples" / "coffee.png"
SIZE = (1024, 768)   # W, H
ENV_TWEAKS = ("MALLOC_", "LD_PRELOAD")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", help=f"comma-separated subset of {','.join(ALL_ARCHS)} (default: all)")
    p.add_argument("--encoder-runs", type=int,
                   help="encoder runs per side (default 3; 2 for vit_l, vit_h, hiera_l; 2 with --quick)")
    p.add_argument("--clicks", type=int, help="timed clicks per side (default 30; 15 with --quick)")
    p.add_argument("--compare", type=int, default=5, help="clicks whose masks are compared (default 5)")
    p.add_argument("--image", type=Path, help="image to use, resized and centre-cropped to 1024x768 "
                   f"(default: ../shared/data/photos/{PREFERRED_PHOTO} if present, else {FALLBACK_IMAGE.name})")
    p.add_argument("--quick", action="store_true", help="vit_b and hiera_t only, fewer runs")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    p.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md", help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, help="also save the raw per-run results here")
    p.add_argument("--note", default="", help="a sentence added to the header (e.g. machine was busy)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per worker process (default 1800)")
    p.add_argument("--plugins", choices=("yes", "no", "only"), default="yes",
                   help="also time Stable-SAM / HQ-SAM clicks over their host on vit_b and "
                        "hiera_t (default yes; 'only' skips the reference comparison)")
    p.add_argument("--runtimes", default="torch-fp32,auto",
                   help="our encoder runtimes to time, comma-separated (default torch-fp32,auto: "
                        "today's fp32 path and what the calibration picks on this machine)")
    args = p.parse_args(argv)
    args.runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    sys.path.insert(0, str(ROOT))
    from engines.runtime import RUNTIMES
    bad = [r for r in args.runtimes if r != "auto" and r not in RUNTIMES]
    if bad or not args.runtimes:
        p.error(f"--runtimes: unknown {', '.join(bad) or '(none)'}; choose from auto, {', '.join(RUNTIMES)}")
    if args.archs:
        archs = [a.strip() for a in args.archs.split(",") if a.strip()]
        unknown = [a for a in archs if a not in ALL_ARCHS]
        if unknown:
            p.error(f"unknown architecture(s) {', '.join(unknown)}; choose from {', '.join(ALL_ARCHS)}")
    else:
        archs = list(QUICK_ARCHS if args.quick else ALL_ARCHS)
    args.arch_list = archs
    if args.clicks is None:
        args.clicks = 15 if args.quick else 30
    for name in ("encoder_runs", "clicks", "compare"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "compare" else 1):
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.image is not None and not args.image.is_file():
        p.error(f"--image {args.image}: no such file")
    return args


def runs_for(arch: str, args) -> int:
    if args.encoder_runs is not None:
        return args.encoder_runs
    return 2 if args.quick or arch in BIG_ARCHS else 3


# ---------------------------------------------------------------------------- inputs


def pick_image(path: Path | None) -> tuple[Path, str]:
    if path is not None:
        return path, f"`{path}` (given with --image)"
    if PHOTOS.is_dir():
        preferred = PHOTOS / PREFERRED_PHOTO
        photos = [preferred] if preferred.is_file() else \
            sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if photos:
            return photos[0], f"real photo `../{photos[0].relative_to(ROOT.parent)}`, resized and centre-cropped"
    return FALLBACK_IMAGE, f"`{FALLBACK_IMAGE.relative_to(ROOT)}` upscaled and centre-cropped " \
                           "(no ../shared/data/photos beside the repository)"


def load_image(path: Path) -> np.ndarray:
    """RGB uint8, scaled to cover 1024x768 and centre-cropped to exactly that."""
    from PIL import Image
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from annotator.core.images import load_image as decode   # the product's one decoder
    im = Image.fromarray(decode(path))
    w, h = im.size
    scale = max(SIZE[0] / w, SIZE[1] / h)
    nw, nh = max(SIZE[0], round(w * scale)), max(SIZE[1], round(h * scale))
    im = im.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - SIZE[0]) // 2, (nh - SIZE[1]) // 2
    im = im.crop((left, top, left + SIZE[0], top + SIZE[1]))
    return np.asarray(im, dtype=np.uint8).copy()


def make_clicks(n: int, seed: int = 0) -> dict:
    """n + 1 points inside the image (the first is the warm-up), seeded."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform([0, 0], [SIZE[0] - 1, SIZE[1] - 1], size=(n + 1, 2)).round(1)
    return {"warmup": pts[0].tolist(), "points": pts[1:].tolist()}


# ---------------------------------------------------------------------------- workers


def plain_env() -> tuple[dict, list[str]]:
    """The reference's environment: ours minus allocator tweaks (named so the docs say so)."""
    env = dict(os.environ)
    stripped = sorted(k for k in env if k.startswith(ENV_TWEAKS))
    for k in stripped:
        del env[k]
    return env, stripped


def busy_cpu_s() -> float | None:
    """CPU seconds all processes have spent busy since boot (/proc/stat), or None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process and its reaped children (the workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_worker(side: str, arch: str, extra: list[str], env: dict | None, timeout: float) -> dict:
    """Run one worker; its stderr is echoed with a prefix, its stdout is the JSON result,
    plus how many cores other processes kept busy meanwhile (the noise in its timings)."""
    busy0, own0 = busy_cpu_s(), own_cpu_s()
    cmd = [sys.executable, str(WORKER), "--side", side, "--arch", arch, *extra]
    tag = f"[{'ref ' if side == 'reference' else 'ours'} {arch}]"
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    except OSError as exc:
        return {"error": f"cannot start {sys.executable}: {exc}"}
    tail: collections.deque[str] = collections.deque(maxlen=20)
    out: list[bytes] = []

    def echo():
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            tail.append(line)
            print(f"  {tag} {line}", file=sys.stderr, flush=True)

    readers = [threading.Thread(target=echo, daemon=True),
               threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)]
    for r in readers:
        r.start()
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return {"error": f"timed out after {timeout:.0f} s"}
    finally:
        for r in readers:
            r.join(timeout=10)
    wall = time.perf_counter() - t0
    busy1 = busy_cpu_s()
    other = None if busy0 is None or busy1 is None else \
        max(0.0, (busy1 - busy0) - (own_cpu_s() - own0)) / wall
    print(f"  {tag} done in {wall:.0f} s (exit {rc}); other processes kept "
          f"{'?' if other is None else f'{other:.2f}'} cores busy meanwhile", file=sys.stderr, flush=True)
    if rc != 0:
        if rc == -9:
            return {"error": "killed (SIGKILL; out of memory?)"}
        last = next((ln for ln in reversed(tail) if ln.strip()), "no message")
        return {"error": f"exit {rc}: {last[:160]}"}
    try:
        result = json.loads(b"".join(out).decode().strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        return {"error": f"unreadable result ({exc})"}
    result["other_load_cores"] = other
    return result


def bench_arch(arch: str, args, files: dict, ref_env: dict) -> tuple[dict, dict]:
    common = ["--image", str(files["image"]), "--clicks", str(files["clicks"]),
              "--encoder-runs", str(runs_for(arch, args)), "--compare", str(args.compare),
              "--tmp", str(files["tmp"])]
    masks = files["tmp"] / f"ref-masks-{arch}.npz"
    print(f"== {arch}: reference, then ours ({runs_for(arch, args)} encoder runs, {args.clicks} clicks)",
          file=sys.stderr, flush=True)
    ref = run_worker("reference", arch, common + ["--save-masks", str(masks)], ref_env, args.timeout)
    ours = {runtime: run_worker("ours", arch, common + ["--ref-masks", str(masks), "--runtime", runtime],
                                None, args.timeout)
            for runtime in args.runtimes}
    return ref, ours


# ---------------------------------------------------------------------------- main


def command_line(argv: list[str] | None) -> str:
    exe = Path(sys.executable)
    try:
        exe = exe.relative_to(ROOT)   # keep a venv's symlinked path as typed
    except ValueError:
        pass
    script = Path(__file__).resolve().relative_to(ROOT)
    return shlex.join([str(exe), str(script), *(sys.argv[1:] if argv is None else argv)])


def main(argv=None) -> int:
    args = parse_args(argv)
    image_path, image_desc = pick_image(args.image)
    try:
        image = load_image(image_path)
    except OSError as exc:
        print(f"error: cannot read image {image_path}: {exc}", file=sys.stderr)
        return 2
    ref_env, stripped = plain_env()
    load_start = os.getloadavg()
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    results = {}
    with tempfile.TemporaryDirectory(prefix="engine-latency-") as tmp:
        files = {"tmp": Path(tmp), "image": Path(tmp) / "image.npy", "clicks": Path(tmp) / "clicks.json"}
        np.save(files["image"], image)
        files["clicks"].write_text(json.dumps(make_clicks(args.clicks)))
        if args.plugins != "no":
            from _plugin_report import run_plugin_stage
            plugin_archs = [a for a in QUICK_ARCHS if args.plugins == "only" or a in args.arch_list]
            run_plugin_stage(files["image"], plugin_archs, args.clicks,
                             None if args.no_write else args.docs, args.timeout)
            if args.plugins == "only":
                return 0
        for arch in args.arch_list:
            results[arch] = bench_arch(arch, args, files, ref_env)
    rows = [summarise(arch, ref, ours, asked) for arch in args.arch_list
            for ref, by_runtime in [results[arch]] for asked, ours in by_runtime.items()]
    sides = [s for ref, ours in results.values() for s in (ref, *ours.values()) if "error" not in s]
    ours_sides = [s for _, ours in results.values() for s in ours.values() if "error" not in s]
    threads = {}
    for side in sides:
        threads.setdefault(side["side"], side["threads"])
    runs = sorted({runs_for(a, args) for a in args.arch_list})
    ctx = {
        "date": date, "machine": machine(), "image_desc": image_desc, "clicks": args.clicks,
        "runs_desc": " or ".join(map(str, runs)) + (" run" if runs == [1] else " runs") + " per side"
                     + ("" if len(runs) == 1 or args.encoder_runs else " (2 for the large vit_l, vit_h, hiera_l)"),
        "torch": next((s["torch"] for s in sides), "?"),
        "threads": {("reference" if k == "reference" else "ours"): v for k, v in threads.items()},
        "tuned": ours_sides[0].get("allocator_tuned") if ours_sides else None,
        "stripped_env": f"; removed from it here: {', '.join(stripped)}" if stripped else "",
        "load_start": load_start, "load_end": os.getloadavg(), "note": args.note.strip(),
        "command": command_line(argv),
    }
    report = format_report(rows, ctx)
    print(report)
    if args.json:
        args.json.write_text(json.dumps({"context": ctx, "results": results}, indent=1, default=str))
    if not args.no_write:
        write_section(args.docs, report)
        print(f"\nwritten to {args.docs}", file=sys.stderr)
    return 0 if all("error" not in s for ref, ours in results.values() for s in (ref, *ours.values())) else 1


if __name__ == "__main__":
    sys.exit(main())
