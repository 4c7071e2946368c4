"""Benchmark (not a test): export and import of a large project in every format.

Builds a project of N images (default 10,000, 640x480) with K masks each (default 10,
so 100,000 masks): random ellipses and blobs, a fifth with holes, some in two parts,
some crowd regions. The masks are drawn from a pool of distinct random shapes at random
places (rasterising 100,000 full-size masks would dominate the run; the formats cache
nothing, so repeats cost the same as new shapes). Image files are written too (one
grey JPEG copied N times): the importers check every image, as the command line does.

Times, per format: export = Project.export_dataset + write; import = read + import into
a new project. Prints a markdown table and replaces the "## Formats" section of
docs/benchmarks.md (between its markers), leaving the rest of the file alone.

    .venv/bin/python bench/formats.py [--images 10000] [--per-image 10]
                                      [--formats coco,labelme,...] [--no-doc]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from annotator.core import geometry  # noqa: E402
from annotator.core.formats import FORMATS  # noqa: E402
from annotator.core.formats._parallel import workers  # noqa: E402
from annotator.core.store import Project  # noqa: E402

DOC = REPO / "docs" / "benchmarks.md"
W, H = 640, 480
CATEGORIES = ["person", "car", "dog", "cat", "tree", "sign", "bike", "bus"]


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def random_mask(rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """One random object (ellipse or blob; holes 20 %, two parts 10 %, crowd 2 %)."""
    m = np.zeros((H, W), np.uint8)
    cx, cy = int(rng.integers(40, W - 40)), int(rng.integers(40, H - 40))
    ax, ay = int(rng.integers(6, 40)), int(rng.integers(6, 40))
    if rng.random() < 0.5:
        cv2.ellipse(m, (cx, cy), (ax, ay), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    else:                                             # a blob: a few overlapping circles
        for _ in range(int(rng.integers(2, 5))):
            cv2.circle(m, (cx + int(rng.integers(-ax, ax + 1)), cy + int(rng.integers(-ay, ay + 1))),
                       int(rng.integers(4, 20)), 1, -1)
    kind = rng.random()
    if kind < 0.2:                                    # a hole
        cv2.circle(m, (cx, cy), max(2, min(ax, ay) // 3), 0, -1)
    elif kind < 0.3:                                  # a second part
        x2, y2 = int(rng.integers(10, W - 10)), int(rng.integers(10, H - 10))
        cv2.rectangle(m, (x2 - 5, y2 - 4), (x2 + 5, y2 + 4), 1, -1)
    crowd = rng.random() < 0.02
    if not m.any():
        m[cy, cx] = 1
    return m.astype(bool), crowd


def build_project(folder: Path, n_images: int, per_image: int, pool: int, seed: int) -> Path:
    from annotator.core.dataset import AnnotationRecord, CategoryRecord, Dataset, ImageRecord
    rng = np.random.default_rng(seed)
    root = folder / "images"
    ok, jpeg = cv2.imencode(".jpg", np.full((H, W, 3), 128, np.uint8))
    assert ok
    data = jpeg.tobytes()
    ds = Dataset(categories=[CategoryRecord(i + 1, n) for i, n in enumerate(CATEGORIES)])
    for i in range(n_images):
        name = f"d{i // 1000:02d}/img{i:05d}.jpg"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        ds.images.append(ImageRecord(i + 1, name, W, H, group=f"scene{i // 50}"))
    shapes = [random_mask(rng) for _ in range(pool)]
    rles = [(geometry.mask_to_rle(m), crowd) for m, crowd in shapes]
    k = 0
    for img in ds.images:
        for order in range(per_image):
            rle, crowd = rles[int(rng.integers(pool))]
            k += 1
            ds.annotations.append(AnnotationRecord(
                k, img.id, int(rng.integers(len(CATEGORIES))) + 1, rle, iscrowd=crowd,
                score=float(rng.random()), engine="bench", order=order))
    path = folder / "project.sqlite"
    with Project.create(path, root) as project:
        project.import_dataset(ds, source="bench")
    return path


class Clock:
    """Wall time, CPU time of this process and its workers, and the CPU time every
    other process on the machine used meanwhile (from /proc/stat), in cores."""

    def __init__(self) -> None:
        self.wall, self.cpu, self.busy = time.perf_counter(), _own_cpu(), _machine_busy()

    def lap(self) -> dict:
        wall = time.perf_counter() - self.wall
        cpu = _own_cpu() - self.cpu
        busy = _machine_busy() - self.busy
        self.__init__()
        other = max(busy - cpu, 0.0) / wall if busy == busy and wall > 0 else float("nan")
        return {"wall": wall, "cpu": cpu, "other": other}


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _machine_busy() -> float:
    """CPU seconds all processes have used since boot (nan where /proc/stat is absent)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def bench_format(name: str, project_path: Path, folder: Path) -> dict:
    spec = FORMATS[name]
    out = folder / f"out-{name}" / ("dataset.json" if spec.output == "file" else "")
    clock = Clock()
    with Project.open(project_path) as project:
        ds = project.export_dataset()
        root = project.image_root
    files = spec.write(ds, out, root)
    export = clock.lap()
    size = sum(f.stat().st_size for f in files)
    clock = Clock()
    back = spec.read(out, root)
    read = clock.lap()
    target = folder / f"import-{name}.sqlite"
    with Project.create(target, root) as project:
        report = project.import_dataset(back, source=str(out))
    store = clock.lap()
    target.unlink()
    return {"format": name, "export": export, "read": read, "store": store,
            "files": len(files), "mb": size / 1e6, "objects_in": len(ds.annotations),
            "objects_back": report.annotations_added}


def load_average() -> str:
    try:
        return " / ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def table(rows: list[dict], n_images: int, n_masks: int, build_s: float,
          loads: tuple[str, str]) -> str:
    lines = [
        f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}; load "
        f"average (1/5/15 min) {loads[0]} at start, {loads[1]} at end.",
        f"Project: {n_images:,} images ({W}x{H}), {n_masks:,} masks (built in "
        f"{build_s:.0f} s). Export = load from the project + write the files; import = "
        "read and check everything (image files included) + store (the project's "
        "one-transaction `import_dataset` into a new project). Goal: each under 60 s.",
        f"Wall seconds, with the CPU seconds of this process and its {workers()} worker "
        "process(es) in parentheses, and the cores that *other* processes kept busy "
        "meanwhile: on a shared 2-core machine, wall time grows with that load while "
        "CPU time barely moves.", "",
        "| format | export s (cpu) | import s (cpu) = read + store | other load, cores "
        "(export / import) | files | MB | objects back |",
        "|---|---|---|---|---|---|---|"]
    for r in rows:
        e, rd, st = r["export"], r["read"], r["store"]
        imp_wall, imp_cpu = rd["wall"] + st["wall"], rd["cpu"] + st["cpu"]
        imp_other = (rd["other"] * rd["wall"] + st["other"] * st["wall"]) / max(imp_wall, 1e-9)
        lines.append(
            f"| {r['format']} | {e['wall']:.1f} ({e['cpu']:.1f}) | {imp_wall:.1f} "
            f"({imp_cpu:.1f}) = {rd['wall']:.1f} + {st['wall']:.1f} | {e['other']:.2f} / "
            f"{imp_other:.2f} | {r['files']:,} | {r['mb']:.0f} | "
            f"{r['objects_back']:,} / {r['objects_in']:,} |")
    lines += ["", "Objects back below objects in: semantic PNGs merge the objects of a "
              "class in an image into one, and overlapping objects lose the pixels drawn "
              "over (by design; see annotator/core/formats/png_masks.py).",
              f"Command: `.venv/bin/python bench/formats.py --images {n_images} "
              f"--per-image {n_masks // max(n_images, 1)}`."]
    return "\n".join(lines)


def update_doc(section: str) -> None:
    from _docs import write_section
    write_section(DOC, "formats", f"## Formats\n\n{section}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--per-image", type=int, default=10)
    p.add_argument("--pool", type=int, default=3000, help="distinct random shapes")
    p.add_argument("--formats", default=",".join(FORMATS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.formats.split(",") if n.strip()]
    folder = Path(tempfile.mkdtemp(prefix="bench-formats-"))
    try:
        start_load = load_average()
        t = time.perf_counter()
        project = build_project(folder, args.images, args.per_image, args.pool, args.seed)
        build_s = time.perf_counter() - t
        print(f"built {args.images} images x {args.per_image} masks in {build_s:.1f} s",
              flush=True)
        rows = []
        for name in names:
            rows.append(bench_format(name, project, folder))
            r = rows[-1]
            print(f"  {name}: export {r['export']['wall']:.1f} s, import "
                  f"{r['read']['wall'] + r['store']['wall']:.1f} s", flush=True)
        section = table(rows, args.images, args.images * args.per_image, build_s,
                        (start_load, load_average()))
        print()
        print(section)
        if not args.no_doc:
            update_doc(section)
            print(f"\nupdated {DOC}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
