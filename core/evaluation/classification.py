"""Image classification scores: top-1 and top-5 accuracy, and top-1 accuracy per class (percentages)."""
import numpy as np


def top_k(logits, k=5):
    """Class indices (N, min(k, classes)) by falling logit; ties go to the lower index, as argmax picks."""
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"top_k: logits must be 2-D (images, classes), got shape {logits.shape}")
    return np.argsort(-logits, axis=1, kind="stable")[:, :k]


def classification_accuracy(ranked, labels, class_names=None):
    """ranked: (N, k) class indices, best first (top_k); labels: (N,) true class indices.

    Returns {'top1', 'top5', 'correct', 'total', 'per_class': {name: {'correct', 'total', 'accuracy'}},
    'mean_per_class'}; per_class holds the classes that occur in ``labels``, named by ``class_names`` (index ->
    name) when given, in class order. top5 counts a hit in the first five columns of ``ranked``."""
    ranked = np.asarray(ranked)
    labels = np.asarray(labels).reshape(-1)
    if ranked.ndim != 2 or ranked.shape[0] != labels.shape[0]:
        raise ValueError(f"classification_accuracy: {labels.shape[0]} labels but ranked classes of shape "
                         f"{ranked.shape}")
    if labels.shape[0] == 0:
        raise ValueError("classification_accuracy: no images to score")
    hit1 = ranked[:, 0] == labels
    hit5 = (ranked[:, :5] == labels[:, None]).any(axis=1)
    per_class = {}
    for c in np.unique(labels):
        rows = labels == c
        name = class_names[int(c)] if class_names is not None else int(c)
        correct, total = int(hit1[rows].sum()), int(rows.sum())
        per_class[name] = {"correct": correct, "total": total, "accuracy": 100.0 * correct / total}
    return {
        "top1": 100.0 * int(hit1.sum()) / len(labels),
        "top5": 100.0 * int(hit5.sum()) / len(labels),
        "correct": int(hit1.sum()),
        "total": int(len(labels)),
        "per_class": per_class,
        "mean_per_class": float(np.mean([e["accuracy"] for e in per_class.values()])),
    }


def format_report(acc):
    """'Top-1 : correct / total = pct', Top-5 and the mean per-class accuracy, then one line per class."""
    lines = ["Top-1 : %d / %d = %.2f\n" % (acc["correct"], acc["total"], acc["top1"]),
             "Top-5 : %.2f\n" % acc["top5"], "Mean per class : %.2f\n" % acc["mean_per_class"]]
    for name, entry in acc["per_class"].items():
        lines.append("%s : %d / %d = %.2f\n" % (name, entry["correct"], entry["total"], entry["accuracy"]))
    return "".join(lines) + "\n"
