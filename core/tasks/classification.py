"""The classification task's evaluation: the top-5 classes per image, written as json (image id -> class names,
best first); val runs scored by top-1, top-5 and per-class accuracy (core/evaluation/classification.py)."""
import numpy as np

from core import checkpoints, registry
from core.data import images
from core.evaluation import classification as classification_eval
from core.evaluation import results as result_writers

TOP_K = 5
CLASSES_FILE = "classes.json"


def batch_outputs(cfg, logits):
    return {"ranked": classification_eval.top_k(logits, TOP_K)}


def evaluate(cfg, dataset, mode, version, outputs, say):
    """Write the top classes of every image of ``dataset``; score them when its labels are known (val)."""
    ranked = outputs.get("ranked", np.zeros((0, TOP_K), np.int64))
    names = [[dataset.class_names[int(c)] for c in row] for row in ranked]
    if mode == "test":
        path = checkpoints.test_result_path(cfg)
        result_writers.write_classification_results(path, dataset.image_ids, names)
        say(f"Wrote the top {ranked.shape[1]} classes of {len(names)} test images to {path}")
        return {"result_file": path, "images": len(names)}
    path = checkpoints.val_result_path(cfg, version)
    result_writers.write_classification_results(path, dataset.image_ids, names)
    acc = classification_eval.classification_accuracy(ranked, dataset.labels, dataset.class_names)
    say(f"{mode}: {len(names)} images")
    say(classification_eval.format_report(acc))
    per_type = {"top-5": acc["top5"], "mean per class": acc["mean_per_class"]}
    per_type.update((f"class {name}", entry["accuracy"]) for name, entry in acc["per_class"].items())   # in the log
    return {"overall": acc["top1"], "per_type": per_type,
            "top5": acc["top5"], "per_class": acc["per_class"], "result_file": path}


def bundle_contents(cfg, dataset):
    """The task's part of an inference folder (deploy/classifier.py): {'files': {role: (file name, json value)},
    'manifest': fields}: the class names in logit order, the input spec and the preprocessing of an image file."""
    task = registry.task_of(cfg)
    size = int(cfg.IMG_SIZE)
    inputs = [{"name": key, "shape": [-1, 3, size, size], "dtype": task.input_dtypes[key]} for key in task.input_keys]
    return {"files": {"classes": (CLASSES_FILE, list(dataset.class_names))},
            "manifest": {"task": task.name, "num_classes": len(dataset.class_names), "inputs": inputs,
                         "image": images.preprocessing(size), "score": "softmax"}}
