"""The classification task: its scores on hand-worked numbers, its result file, its batch keys, and the engine's
train / val / test loop on a tiny in-test dataset with a numpy backend (no classification model ships yet)."""
import json
import os

import numpy as np
import pytest

from backends.base import Backend, Trainer, input_keys, model_facts, net_call, target_key
from core import checkpoints, config, engine, registry
from core.evaluation import classification as cls_eval
from core.evaluation.results import write_classification_results

# ---- scores ------------------------------------------------------------------------------------------------------

def test_top_k_orders_by_logit_and_breaks_ties_like_argmax():
    logits = np.array([[0.1, 0.9, 0.9, -1.0], [2.0, 1.0, 3.0, 0.0]], np.float32)
    np.testing.assert_array_equal(cls_eval.top_k(logits, 3), [[1, 2, 0], [2, 0, 1]])
    np.testing.assert_array_equal(cls_eval.top_k(logits, 9)[:, 0], logits.argmax(1))   # k above the classes: all


def test_classification_accuracy_hand_worked():
    # 6 images, 7 classes; ranked rows are the classes best first (top 5 shown).
    ranked = np.array([[0, 1, 2, 3, 4],    # label 0: top-1 hit
                       [1, 0, 2, 3, 4],    # label 0: top-5 hit only (2nd)
                       [2, 3, 4, 5, 6],    # label 0: miss
                       [3, 2, 1, 0, 6],    # label 1: top-5 hit only (3rd)
                       [1, 2, 3, 4, 5],    # label 1: top-1 hit
                       [6, 5, 4, 3, 2]])   # label 6: top-1 hit
    labels = np.array([0, 0, 0, 1, 1, 6])
    acc = cls_eval.classification_accuracy(ranked, labels, class_names=[f"c{i}" for i in range(7)])
    assert (acc["correct"], acc["total"]) == (3, 6)
    assert acc["top1"] == pytest.approx(50.0)
    assert acc["top5"] == pytest.approx(100.0 * 5 / 6)
    assert list(acc["per_class"]) == ["c0", "c1", "c6"]           # classes that occur, in class order
    assert acc["per_class"]["c0"] == {"correct": 1, "total": 3, "accuracy": pytest.approx(100.0 / 3)}
    assert acc["per_class"]["c1"] == {"correct": 1, "total": 2, "accuracy": 50.0}
    assert acc["per_class"]["c6"] == {"correct": 1, "total": 1, "accuracy": 100.0}
    assert acc["mean_per_class"] == pytest.approx((100.0 / 3 + 50.0 + 100.0) / 3)
    report = cls_eval.format_report(acc)
    assert report.startswith("Top-1 : 3 / 6 = 50.00\nTop-5 : 83.33\n") and "c1 : 1 / 2 = 50.00" in report


def test_classification_accuracy_refuses_mismatched_rows():
    with pytest.raises(ValueError, match="3 labels"):
        cls_eval.classification_accuracy(np.zeros((2, 5), np.int64), np.zeros(3, np.int64))


def test_classification_result_file(tmp_path):
    path = tmp_path / "out" / "result.json"
    write_classification_results(path, ["a/1.png", "a/2.png"], [["cat", "dog"], ["dog", "cat"]])
    assert json.loads(path.read_text()) == {"a/1.png": ["cat", "dog"], "a/2.png": ["dog", "cat"]}
    with pytest.raises(ValueError, match="duplicated image ids"):
        write_classification_results(path, ["x", "x"], [["cat"], ["dog"]])
    assert json.loads(path.read_text())["a/1.png"] == ["cat", "dog"]     # the refused write left the file alone


# ---- batch keys and facts ----------------------------------------------------------------------------------------

def test_batch_keys_follow_the_task():
    image = np.zeros((2, 3, 4, 4), np.float32)
    batch = {"image": image, "label": np.zeros(2, np.int64)}
    assert input_keys(batch) == ("image",) and target_key(batch) == "label"
    assert net_call(lambda x: x.shape, batch, slice(0, 1)) == (1, 3, 4, 4)
    with pytest.raises(ValueError, match=r"batch\['image'\] is float64"):
        input_keys({"image": image.astype(np.float64)})
    vqa = {k: np.zeros((2, 1), np.float32) for k in ("frcn_feat", "grid_feat", "bbox_feat")}
    vqa.update(ques_ix=np.zeros((2, 14), np.int64), ans=np.zeros((2, 5), np.float32))
    assert input_keys(vqa) == ("frcn_feat", "grid_feat", "bbox_feat", "ques_ix") and target_key(vqa) == "ans"
    with pytest.raises(ValueError, match="holds the inputs of no task"):
        input_keys({"ques_ix": vqa["ques_ix"]})


def test_model_facts_positional_and_keyword_forms_agree():
    cfg = config.load_config("trar", "vqa")
    expected = {"token_size": 20, "answer_size": 7, "pretrained_emb": None}
    assert model_facts(cfg, (20, 7)) == expected
    assert model_facts(cfg, (), {"token_size": 20, "answer_size": 7}) == expected
    assert model_facts(cfg, (20,), {"answer_size": 7, "pretrained_emb": None}) == expected
    with pytest.raises(TypeError, match="unknown num_classes"):
        model_facts(cfg, (), {"num_classes": 3})
    with pytest.raises(TypeError, match="missing answer_size"):
        model_facts(cfg, (20,))
    with pytest.raises(TypeError, match="two values for token_size"):
        model_facts(cfg, (20,), {"token_size": 20, "answer_size": 7})


# ---- the engine on a classification dataset ----------------------------------------------------------------------

CLASSES = ["red", "green", "blue"]


class TinyImages:
    """Images (3, 4, 4) whose class is the brightest channel, plus noise; labels known for train and val."""

    def __init__(self, cfg, mode):
        n = {"train": 24, "val": 9, "test": 6}[mode]
        rng = np.random.default_rng({"train": 0, "val": 1, "test": 2}[mode])
        self.class_names = list(CLASSES)
        labels = np.arange(n, dtype=np.int64) % len(CLASSES)
        self.images = (0.1 * rng.standard_normal((n, 3, 4, 4))).astype(np.float32)
        self.images[np.arange(n), labels] += 1.0
        self.labels = None if mode == "test" else labels
        self._labels = labels if mode == "train" else np.full(n, -1, np.int64)
        self.image_ids = [f"{mode}/{i:03d}.png" for i in range(n)]

    def facts(self):
        return {"num_classes": len(self.class_names)}

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "label": self._labels[i]}


class MeanColourNet:
    """A linear classifier of the per-channel means."""

    def __init__(self, cfg, num_classes):
        self.w = np.zeros((3, num_classes), np.float64)
        self.b = np.zeros(num_classes, np.float64)

    def __call__(self, image):
        return image.mean(axis=(2, 3)) @ self.w + self.b


class NumpyTrainer(Trainer):
    def __init__(self, net):
        self.net = net

    def train_step(self, batch, lr):
        x, y = batch[input_keys(batch)[0]].mean(axis=(2, 3)), batch[target_key(batch)]
        logits = net_call(self.net, batch)
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        loss = -np.log(p[np.arange(len(y)), y]).sum()      # 'ce', summed as LOSS_REDUCTION 'sum'
        p[np.arange(len(y)), y] -= 1
        self.net.w -= lr * x.T @ p
        self.net.b -= lr * p.sum(0)
        return float(loss)

    def save(self, path, epoch, lr_base, data_hashes=None):
        with checkpoints.atomic_write(path, "wb") as f:
            np.savez(f, w=self.net.w, b=self.net.b, epoch=epoch, lr_base=lr_base)


class NumpyBackend(Backend):
    name = "numpy"
    checkpoint_ext = ".npz"
    device = "cpu"

    def seed(self, seed):
        pass

    def set_device(self, gpu=None):
        return "cpu"

    def build_model(self, cfg, *args, **facts):
        return MeanColourNet(cfg, **model_facts(cfg, args, facts))

    def load_checkpoint(self, net, path):
        data = np.load(path)
        net.w, net.b = data["w"], data["b"]
        return {"epoch": int(data["epoch"]), "lr_base": float(data["lr_base"]), "optimizer": None}

    def predict(self, net, batch):
        return np.asarray(net_call(net, {k: batch[k] for k in input_keys(batch)}), np.float32)

    def make_loader(self, dataset, batch_sampler, num_workers=0, pin_memory=False):
        return [{k: np.stack([dataset[int(i)][k] for i in idx]) for k in ("image", "label")} for idx in batch_sampler]

    def make_trainer(self, net, cfg):
        return NumpyTrainer(net)


@pytest.fixture
def tiny_classification(tmp_path, monkeypatch):
    """A classification format, dataset and model in the registry, with their yml, for this test only."""
    monkeypatch.setitem(registry.FORMATS, "tiny_images", registry.FormatSpec(
        "tiny_images", task="classification", loader=f"{__name__}:TinyImages", loss_funcs=("ce",)))
    monkeypatch.setitem(registry.DATASETS, "tiny_images", registry.DatasetSpec(
        "tiny_images", "tiny_images", train_splits=("train", "val")))
    monkeypatch.setitem(registry.MODELS, "tiny_classifier", registry.ModelSpec(
        "tiny_classifier", "mean_colour", task="classification", features="image", datasets=("tiny_images",),
        exportable=False))
    configs = tmp_path / "configs"
    (configs / "tiny_images").mkdir(parents=True)
    (configs / "tiny_images" / "tiny_classifier.yml").write_text(
        "MODEL_USE: mean_colour\nLOSS_FUNC: ce\nBATCH_SIZE: 8\nMAX_EPOCH: 4\nWARMUP_EPOCH: 0\nLR_BASE: 0.5\n"
        "LR_DECAY_LIST: []\n")
    monkeypatch.setattr(config, "CONFIGS_DIR", str(configs))
    return {"RESULTS_ROOT": str(tmp_path / "results"), "CKPTS_ROOT": str(tmp_path / "ckpts"), "NUM_WORKERS": 0,
            "VERBOSE": False, "VERSION": "cls"}


def test_engine_trains_validates_and_tests_a_classifier(tiny_classification):
    settings = tiny_classification
    cfg = config.load_config("tiny_classifier", "tiny_images", overrides=settings)
    assert registry.task_of(cfg).name == "classification" and not registry.model_of(cfg).routes
    be = NumpyBackend()
    last = engine.run(cfg, be)
    assert last["epoch"] == 4 and last["val"] == pytest.approx(100.0)     # the brightest channel is learnt
    log = open(checkpoints.log_path(cfg, "cls"), encoding="utf-8").read()
    assert log.count("Overall Accuracy is: ") == 4 and "top-5 : 100.00" in log
    assert "Overall Accuracy is: 100.00" in log

    val_cfg = config.load_config("tiny_classifier", "tiny_images", run_mode="val",
                                 overrides=dict(settings, CKPT_VERSION="cls", CKPT_EPOCH=4))
    val = engine.run(val_cfg, be)
    assert val["overall"] == pytest.approx(100.0) and val["top5"] == pytest.approx(100.0)
    assert {name: e["total"] for name, e in val["per_class"].items()} == {"red": 3, "green": 3, "blue": 3}
    written = json.load(open(val["result_file"], encoding="utf-8"))
    assert list(written) == [f"val/{i:03d}.png" for i in range(9)]
    assert [names[0] for names in written.values()] == [CLASSES[i % 3] for i in range(9)]
    assert all(len(names) == 3 for names in written.values())       # top 5 of 3 classes: all of them

    test_cfg = config.load_config("tiny_classifier", "tiny_images", run_mode="test",
                                  overrides=dict(settings, CKPT_VERSION="cls", CKPT_EPOCH=4))
    test = engine.run(test_cfg, be)
    assert test["images"] == 6 and os.path.basename(test["result_file"]) == "result_run_cls_epoch4.json"
    assert [v[0] for v in json.load(open(test["result_file"], encoding="utf-8")).values()] == \
        [CLASSES[i % 3] for i in range(6)]


def test_a_classification_model_needs_a_classification_dataset(tiny_classification, tmp_path):
    (tmp_path / "configs" / "vqa").mkdir()
    (tmp_path / "configs" / "vqa" / "tiny_classifier.yml").write_text("LOSS_FUNC: bce\n")
    with pytest.raises(config.ConfigError, match="MODEL: tiny_classifier is a classification model; dataset vqa is "
                                                 "a vqa dataset"):
        config.load_config("tiny_classifier", "vqa", overrides=tiny_classification)


def test_real_backends_train_and_predict_a_classification_batch(backend, tiny_classification):
    """The torch and paddle trainers and predictors take a classification batch (image in, label as the 'ce'
    target) by its task's keys; a linear layer defined here learns the brightest channel."""
    cfg = config.load_config("tiny_classifier", "tiny_images", overrides=tiny_classification)
    data = TinyImages(cfg, "train")
    if backend.name == "torch":
        import torch
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
    else:
        import paddle
        paddle.seed(0)
        net = paddle.nn.Sequential(paddle.nn.Flatten(), paddle.nn.Linear(48, 3))
    trainer = backend.make_trainer(net, cfg)
    batch = {"image": data.images[:12], "label": data.labels[:12]}
    losses = [trainer.train_step(batch, 0.05) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]
    logits = backend.predict(net, {"image": data.images})
    assert logits.shape == (24, 3) and logits.dtype == np.float32
    np.testing.assert_array_equal(logits.argmax(1), data.labels)
