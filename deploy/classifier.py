"""Inference folders of image classifiers: their contents and checks (the exporters in deploy/export.py and
deploy/onnx.py use them), and a predictor that reads image files.

    python -m deploy export --MODEL M --DATASET D --CKPT_PATH FILE [--out DIR]     (deploy/export.py)
    python -m deploy onnx   --MODEL M --DATASET D --CKPT_PATH FILE [--out DIR]     (deploy/onnx.py)
    python -m deploy predict --model DIR --image x.jpg [--image y.png] [--topk 5]

Which tasks come here: those whose core/tasks module defines ``bundle_contents`` (the classification task). It gives
the folder's task files (classes.json: class names in logit order) and manifest fields (the input spec, the image
preprocessing: size, bilinear resize without crop, mean and std), so nothing here names a model or dataset. The folder
is otherwise deploy/bundle.py's: the runtime files, config.yml and manifest.json written last with every file's sha256.
An image is read by core.data.images, the training pipeline's own decoder and transforms.
"""
import datetime
import json
import os

import numpy as np

from backends import BackendUnavailable, get_backend
from core import registry, tasks
from core.data import build_dataset, images
from deploy import bundle
from formats.layout import CheckpointMismatch

VERIFY_BATCH = 3
VERIFY_ATOL = 1e-4


def handles(cfg):
    """Whether the task of ``cfg`` builds its inference folders here (its core/tasks module has bundle_contents)."""
    return hasattr(tasks.module_of(cfg), "bundle_contents")


def load(cfg, backend_name, ckpt_path, error):
    """(net with the checkpoint's weights, task contents, checkpoint fields) on one backend."""
    try:
        be = get_backend(backend_name)
    except BackendUnavailable as exc:
        raise error(f"this export needs {backend_name}: {exc}") from None
    dataset = build_dataset(cfg, "val")          # the class names, in the training order
    contents = tasks.module_of(cfg).bundle_contents(cfg, dataset)
    net = be.build_model(cfg, **dataset.facts())
    try:
        meta = be.load_checkpoint(net, ckpt_path)
    except CheckpointMismatch as exc:
        raise error(f"the checkpoint does not match the config ({cfg.MODEL} on {cfg.DATASET}, "
                    f"{len(dataset.class_names)} classes from {cfg.DATA_ROOT}): {exc}") from None
    extra = {"checkpoint": os.path.abspath(ckpt_path), "checkpoint_epoch": (meta or {}).get("epoch")}
    return be, net, contents, extra


def manifest_of(cfg, runtime, contents):
    return dict({"format": bundle.FORMAT, "format_version": bundle.FORMAT_VERSION, "runtime": runtime,
                 "model": cfg.MODEL, "model_use": cfg.MODEL_USE, "dataset": cfg.DATASET,
                 "data_format": cfg.DATA_FORMAT, "created": datetime.datetime.now().isoformat(timespec="seconds")},
                **contents["manifest"])


def sample_inputs(specs, batch_size, seed=0):
    rng = np.random.default_rng(seed)
    return {s["name"]: rng.uniform(-1, 1, [batch_size] + list(s["shape"][1:])).astype(s["dtype"]) for s in specs}


def check_diff(diff, expected, out_dir, what, error):
    if not diff <= VERIFY_ATOL * max(1.0, float(np.abs(expected).max())):
        raise error(f"{out_dir}: {what} disagrees with the dynamic model (max abs difference {diff:.3g}); nothing "
                    "was written")


# ---------------------------------------------------------------------------------------------------- reading
def folder_task(model_dir):
    """The task of an inference folder (its manifest's 'task'; folders without one are VQA's), or None when the
    folder has no readable manifest (the readers then say what is wrong)."""
    try:
        with open(os.path.join(model_dir, bundle.MANIFEST_FILE), encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    return manifest.get("task", "vqa") if isinstance(manifest, dict) else None


def is_classifier_folder(model_dir):
    """Whether an inference folder is of a task whose core/tasks module defines bundle_contents (read here)."""
    import importlib
    task = folder_task(model_dir)
    return task in registry.TASKS and hasattr(importlib.import_module(registry.task(task).module), "bundle_contents")


class ClassifierBundle:
    """A checked classifier folder: manifest, class names, preprocessing; reads image files into a batch."""

    def __init__(self, model_dir, runtime=None, verify_hashes=True):
        self.dir = model_dir
        if not os.path.isdir(model_dir):
            raise bundle.BundleError(f"{model_dir}: no such folder; make one with `python -m deploy export ... "
                                     f"--out {model_dir}`")
        path = self.path(bundle.MANIFEST_FILE)
        if not os.path.isfile(path):
            raise bundle.BundleError(f"{path}: missing; this is not a complete export folder, export it again")
        self.manifest = m = bundle._read_json(path, "the export manifest")
        if not isinstance(m, dict) or m.get("format") != bundle.FORMAT or \
                m.get("format_version") != bundle.FORMAT_VERSION:
            raise bundle.BundleError(f"{path}: not a {bundle.FORMAT} manifest of version {bundle.FORMAT_VERSION}")
        missing = [k for k in ("runtime", "task", "num_classes", "inputs", "image", "files", "sha256") if k not in m]
        if missing:
            raise bundle.BundleError(f"{path}: lacks {', '.join(missing)}")
        if m["runtime"] not in bundle.RUNTIME_FILES or (runtime is not None and m["runtime"] != runtime):
            raise bundle.BundleError(f"{path}: runtime {m['runtime']!r}; expected "
                                     f"{runtime or ' or '.join(bundle.RUNTIME_FILES)}")
        self.runtime = m["runtime"]
        expected = {**m["files"], **bundle.runtime_files(m), "config": bundle.CONFIG_FILE}
        for role, name in expected.items():
            file_path = self.path(name)
            if m["files"].get(role) != name or not os.path.isfile(file_path):
                raise bundle.BundleError(f"{file_path}: missing; the folder is incomplete, export it again")
            if verify_hashes and bundle.file_sha256(file_path) != m["sha256"].get(name):
                raise bundle.BundleError(f"{file_path}: its content does not match {path} (sha256 differs); export "
                                         "the folder again")
        classes = bundle._read_json(self.file("classes"), "a list of class names")
        if not isinstance(classes, list) or len(classes) != m["num_classes"] or \
                not all(isinstance(c, str) for c in classes):
            raise bundle.BundleError(f"{self.file('classes')}: expected {m['num_classes']} class names (num_classes "
                                     "in manifest.json)")
        self.class_names = classes
        self.image = m["image"]
        self.inputs = m["inputs"]
        self.input_names = [spec["name"] for spec in self.inputs]

    def path(self, name):
        return os.path.join(self.dir, name)

    def file(self, role):
        if role not in self.manifest["files"]:
            raise bundle.BundleError(f"{self.path(bundle.MANIFEST_FILE)}: no files.{role}")
        return self.path(self.manifest["files"][role])

    def json_files(self):
        """The task's files as bundle.finish_files takes them (a converted folder writes them again)."""
        return {"classes": (self.manifest["files"]["classes"], list(self.class_names))}

    def load_image(self, path):
        if not os.path.isfile(path):
            raise bundle.BundleError(f"{path}: no such image file")
        img = self.image
        return images.load_input(path, int(img["size"]), mean=img["mean"], std=img["std"])

    def make_batch(self, paths):
        return {self.input_names[0]: np.stack([self.load_image(p) for p in paths])}

    def check_batch(self, batch):
        bundle.Bundle.check_batch(self, batch)

    def top_classes(self, logits, k=5):
        """Per row: [(class name, softmax probability)] of the k largest logits, best first."""
        logits = np.asarray(logits, np.float64)
        k = max(1, min(int(k), logits.shape[1]))
        order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = exp / exp.sum(axis=1, keepdims=True)
        return [[(self.class_names[j], float(probs[i, j])) for j in row] for i, row in enumerate(order)]


class ImagePredictor:
    """A classifier folder with its runtime (Paddle Inference, or onnxruntime for an ONNX folder)."""

    def __init__(self, model_dir, device="cpu", gpu_id=0, threads=None, verify_hashes=True, **cpu_knobs):
        from deploy.predict import make_runner
        self.bundle = ClassifierBundle(model_dir, verify_hashes=verify_hashes)
        self.runner = make_runner(self.bundle, device=device, gpu_id=gpu_id, threads=threads, **cpu_knobs)

    def logits(self, batch):
        self.bundle.check_batch(batch)
        return self.runner.run(batch)

    def classify(self, paths, k=5):
        """[{'image': path, 'classes': [(name, probability)]}] for image files."""
        top = self.bundle.top_classes(self.logits(self.bundle.make_batch(paths)), k)
        return [{"image": p, "classes": t} for p, t in zip(paths, top)]


def format_classes(result, k):
    lines = [result["image"]]
    lines += [f"  {name:<24} {prob:.4f}" for name, prob in result["classes"][:k]]
    return "\n".join(lines)
