"""A generated image-classification set in the real ImageFolder layout, deterministic from a seed.

    python -m core.data.demo_images --out data/demo_images --seed 0

Ten classes, each a (shape, colour) pair: five shapes, five colours, each shape in two colours and each colour on two
shapes, so neither the colour nor the shape alone tells the class (either gives at most 50%; chance is 10%). A shape
of random size, position and rotation, its colour jittered, lies on a textured background (random stripes or checks
in two dull colours plus pixel noise). 32x32 PNG files: train/<class>/*.png, val/<class>/*.png and unlabelled
test/*.png; demo_summary.json, written last, says the data is complete.
"""
import argparse
import json
import logging
import math
import os
import shutil

import numpy as np

from core.data import GeneratedDataError
from core.data.demo import SUMMARY_FILE, read_summary
from core.logs import configure as configure_logging

log = logging.getLogger(__name__)

SHAPES = ("circle", "square", "triangle", "cross", "ring")
COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 80, 230), "yellow": (235, 215, 40),
           "magenta": (210, 50, 210)}
# class k: shape k // 2 in colour (k // 2 + 2 * (k % 2)) % 5
CLASSES = tuple((SHAPES[k // 2], tuple(COLOURS)[(k // 2 + 2 * (k % 2)) % 5]) for k in range(10))
CLASS_NAMES = tuple(f"{colour}_{shape}" for shape, colour in CLASSES)
SIZE = 32
FORMAT_VERSION = 1
AUTOMATIC = "run.py (automatic)"


def _background(rng):
    """(SIZE, SIZE, 3) float: stripes or checks of two dull colours, plus noise."""
    a, b = rng.uniform(40, 160, 3), rng.uniform(40, 160, 3)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    period = int(rng.integers(3, 9))
    if rng.random() < 0.5:
        angle = rng.uniform(0, math.pi)
        phase = (xx * math.cos(angle) + yy * math.sin(angle)) // period
    else:
        phase = xx // period + yy // period
    pick = (phase.astype(np.int64) % 2)[..., None]
    return np.where(pick == 1, a, b) + rng.normal(0, 12, (SIZE, SIZE, 3))


def _polygon(shape, cx, cy, r, angle):
    if shape == "square":
        corners = 4
    elif shape == "triangle":
        corners = 3
    else:
        raise ValueError(shape)
    return [(cx + r * math.cos(angle + 2 * math.pi * i / corners), cy + r * math.sin(angle + 2 * math.pi * i / corners))
            for i in range(corners)]


def draw_image(class_index, rng):
    """One (SIZE, SIZE, 3) uint8 image of class ``class_index``."""
    from PIL import Image, ImageDraw
    shape, colour = CLASSES[class_index]
    base = np.clip(_background(rng), 0, 255).astype(np.uint8)
    img = Image.fromarray(base)
    draw = ImageDraw.Draw(img)
    fill = tuple(int(np.clip(c + rng.normal(0, 15), 0, 255)) for c in COLOURS[colour])
    r = rng.uniform(7, 12)
    cx, cy = rng.uniform(r, SIZE - r, 2)
    angle = rng.uniform(0, 2 * math.pi)
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=max(2, int(r / 3)))
    elif shape == "cross":
        w = max(2, r / 3)
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    else:
        draw.polygon(_polygon(shape, cx, cy, r, angle), fill=fill)
    return np.asarray(img, dtype=np.uint8)


def _save_png(path, array):
    from PIL import Image
    Image.fromarray(array).save(path, format="PNG", optimize=False)


def generate(out_root, seed=0, train_per_class=100, val_per_class=20, test_images=50, origin="python -m "
             "core.data.demo_images"):
    """Write the demo images under ``out_root`` (through a temporary folder beside it); returns the summary."""
    counts = {"train": int(train_per_class), "val": int(val_per_class), "test": int(test_images)}
    if min(counts.values()) < 1:
        raise ValueError(f"demo image counts must be >= 1: {counts}")
    parent = os.path.dirname(os.path.abspath(out_root))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(os.path.abspath(out_root))}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for split_no, split in enumerate(("train", "val")):
            for k, name in enumerate(CLASS_NAMES):
                folder = os.path.join(tmp, split, name)
                os.makedirs(folder)
                for i in range(counts[split]):
                    rng = np.random.default_rng([int(seed), split_no, k, i])
                    _save_png(os.path.join(folder, f"{i:05d}.png"), draw_image(k, rng))
        os.makedirs(os.path.join(tmp, "test"))
        truth = {}
        for i in range(counts["test"]):
            rng = np.random.default_rng([int(seed), 2, i])
            k = int(rng.integers(len(CLASSES)))
            _save_png(os.path.join(tmp, "test", f"{i:05d}.png"), draw_image(k, rng))
            truth[f"test/{i:05d}.png"] = CLASS_NAMES[k]
        summary = {"format_version": FORMAT_VERSION, "generated_by": origin, "seed": int(seed), "size": SIZE,
                   "classes": list(CLASS_NAMES), "per_class": {s: counts[s] for s in ("train", "val")},
                   "test_images": counts["test"], "test_truth": truth}
        with open(os.path.join(tmp, SUMMARY_FILE), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1)
        if os.path.isdir(out_root):
            os.rmdir(out_root)   # empty (ensure_data checked), or the caller's to replace
        os.replace(tmp, out_root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def ensure_data(root):
    """The demo images under ``root``, generated when the folder is missing or empty; complete data of this version
    is used as it is. Anything else raises GeneratedDataError: a folder given as DATA_ROOT is never overwritten."""
    summary = read_summary(root)
    if summary is not None and summary.get("format_version") == FORMAT_VERSION:
        return summary
    if not os.path.isdir(root) or not os.listdir(root):
        log.info(f"generating demo images in {root} (seed 0)")
        return generate(root, origin=AUTOMATIC)
    what = f"holds no demo images (no {SUMMARY_FILE})" if summary is None else \
        f"holds demo images of format {summary.get('format_version')!r}; this version reads {FORMAT_VERSION!r}"
    raise GeneratedDataError(f"DATA_ROOT {root} {what}. It is left as it is: write the demo images there with "
                             f"`python -m core.data.demo_images --out {root}`, or give a missing or empty folder")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m core.data.demo_images", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("data", "demo_images"), help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-per-class", type=int, default=100)
    parser.add_argument("--val-per-class", type=int, default=20)
    parser.add_argument("--test-images", type=int, default=50)
    args = parser.parse_args(argv)
    configure_logging()
    if os.path.isdir(args.out) and os.listdir(args.out):
        parser.error(f"--out: {args.out} is not empty")
    summary = generate(args.out, args.seed, args.train_per_class, args.val_per_class, args.test_images)
    print(f"{len(summary['classes'])} classes, {summary['per_class']} per class, {summary['test_images']} test "
          f"images written to {args.out}")


if __name__ == "__main__":
    main()
