"""Inference folders of an image classifier (a tiny in-test Net until the ViT models land): Paddle static export and
Paddle Inference, ONNX through torch.onnx and onnxruntime, `python -m deploy predict --image`, and the folder's task
contents (class names, input size, preprocessing) from the classification task's bundle_contents."""
import json
import os

import numpy as np
import pytest

from core import config
from core.data import build_dataset
from deploy import bundle, classifier
from tests import tiny_classifier


@pytest.fixture
def trained(tmp_path, monkeypatch):
    """(settings, image root) with the model registered and the small generated image set."""
    settings = tiny_classifier.register(tmp_path, monkeypatch)
    tiny_classifier.small_demo_images(settings["DATA_ROOT"])
    return settings


def _checkpoint(settings, backend_name, path):
    from backends import get_backend
    be = get_backend(backend_name)
    cfg = config.load_config(tiny_classifier.MODEL, tiny_classifier.DATASET, overrides=settings)
    be.seed(3)
    net = be.build_model(cfg, num_classes=10)
    be.make_trainer(net, cfg).save(str(path), 1, 0.1)
    return be, net


def _cfg(settings, ckpt):
    return config.load_config(tiny_classifier.MODEL, tiny_classifier.DATASET, run_mode="export",
                              overrides=dict(settings, CKPT_PATH=str(ckpt)))


def _reference(be, net, cfg, paths):
    """The backend's logits of the images as the val dataset reads them (no flip)."""
    val = build_dataset(cfg, "val")
    rows = [val.image_ids.index(os.path.relpath(p, cfg.DATA_ROOT).replace(os.sep, "/")) for p in paths]
    return be.predict(net, {"image": np.stack([val[i]["image"] for i in rows])})


def test_paddle_export_and_predict_an_image(trained, tmp_path, capsys):
    from deploy.__main__ import main
    from deploy.export import export_checkpoint
    ckpt = tmp_path / "epoch1.pdparams"
    be, net = _checkpoint(trained, "paddle", ckpt)
    cfg = _cfg(trained, ckpt)
    out = tmp_path / "export"
    manifest = export_checkpoint(cfg, str(ckpt), str(out))
    assert manifest["task"] == "classification" and manifest["num_classes"] == 10
    assert manifest["inputs"] == [{"name": "image", "shape": [-1, 3, 16, 16], "dtype": "float32"}]
    assert manifest["image"]["size"] == 16 and manifest["image"]["mean"] == 0.5 and manifest["image"]["std"] == 0.5
    assert manifest["verified_max_abs_diff"] < 1e-4
    assert sorted(os.listdir(out)) == ["classes.json", "config.yml", "inference.json", "inference.pdiparams",
                                       "manifest.json"]
    assert [o["name"] for o in manifest["outputs"]] == ["logits"]
    classes = json.loads((out / "classes.json").read_text())
    assert classes == build_dataset(cfg, "val").class_names

    images = [os.path.join(cfg.DATA_ROOT, "val", classes[k], "00001.png") for k in (0, 4, 9)]
    predictor = classifier.ImagePredictor(str(out), threads=1)
    logits = predictor.logits(predictor.bundle.make_batch(images))
    np.testing.assert_allclose(logits, _reference(be, net, cfg, images), rtol=1e-4, atol=1e-4)
    results = predictor.classify(images, k=3)
    assert [r["classes"][0][0] for r in results] == [classes[int(j)] for j in logits.argmax(1)]
    assert all(len(r["classes"]) == 3 and r["classes"][0][1] >= r["classes"][1][1] for r in results)
    assert sum(p for _, p in predictor.classify(images[:1], k=10)[0]["classes"]) == pytest.approx(1.0)

    main(["predict", "--model", str(out), "--image", images[0], "--topk", "2", "--threads", "1"])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == images[0] and len(printed) == 3 and printed[1].split()[0] == results[0]["classes"][0][0]


def test_a_changed_file_or_a_vqa_flag_is_refused(trained, tmp_path):
    from deploy.__main__ import main
    from deploy.export import export_checkpoint
    ckpt = tmp_path / "epoch1.pdparams"
    _checkpoint(trained, "paddle", ckpt)
    out = tmp_path / "export"
    export_checkpoint(_cfg(trained, ckpt), str(ckpt), str(out))
    with pytest.raises(SystemExit, match="--image classifies images"):
        main(["predict", "--model", str(out), "--image", "x.png", "--question", "what?"])
    with pytest.raises(bundle.BundleError, match="no such image file"):
        classifier.ImagePredictor(str(out), threads=1).classify([str(tmp_path / "none.png")])
    (out / "classes.json").write_text(json.dumps(["a"] * 10))
    with pytest.raises(bundle.BundleError, match=r"classes.json: its content does not match"):
        classifier.ClassifierBundle(str(out))
    assert classifier.folder_task(str(out)) == "classification"


def test_onnx_export_of_a_classifier(trained, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from deploy.onnx import export_onnx_checkpoint
    ckpt = tmp_path / "epoch1.pkl"
    be, net = _checkpoint(trained, "torch", ckpt)
    cfg = _cfg(trained, ckpt)
    out = tmp_path / "onnx"
    manifest = export_onnx_checkpoint(cfg, str(ckpt), str(out), exporter="legacy")
    assert manifest["runtime"] == "onnx" and manifest["task"] == "classification"
    assert manifest["verified_max_abs_diff"] is not None and manifest["verified_max_abs_diff"] < 1e-4
    classes = json.loads((out / "classes.json").read_text())
    images = [os.path.join(cfg.DATA_ROOT, "val", classes[k], "00000.png") for k in (1, 2)]
    predictor = classifier.ImagePredictor(str(out))
    np.testing.assert_allclose(predictor.logits(predictor.bundle.make_batch(images)),
                               _reference(be, net, cfg, images), rtol=1e-4, atol=1e-4)


def test_run_py_generates_the_demo_images_trains_exports_and_predicts(tmp_path, monkeypatch, capsys):
    """The command lines of a fresh clone: run.py generates the image set into a missing DATA_ROOT, trains with the
    torch backend, exports the .pkl as a Paddle folder (converted on the way), and deploy predicts an image."""
    import run
    from deploy.__main__ import main as deploy_main
    settings = tiny_classifier.register(tmp_path, monkeypatch)
    root = settings["DATA_ROOT"]
    common = [f"--MODEL={tiny_classifier.MODEL}", f"--DATASET={tiny_classifier.DATASET}", f"--DATA_ROOT={root}",
              "--SET", f"RESULTS_ROOT={settings['RESULTS_ROOT']}", "--SET", f"CKPTS_ROOT={settings['CKPTS_ROOT']}",
              "--VERB=False"]
    last = run.main(["--RUN=train", "--backend=torch", "--VERSION=cli", "--MAX_EPOCH=1", "--NW=0"] + common)
    assert sorted(os.listdir(os.path.join(root, "train")))[0] == "blue_circle" and last["epoch"] == 1
    assert len(build_dataset(config.load_config(tiny_classifier.MODEL, tiny_classifier.DATASET,
                                                overrides=settings), "train")) == 1000
    out = run.main(["--RUN=export", "--backend=torch", "--CKPT_V=cli", "--CKPT_E=1"] + common)["out_dir"]
    image = os.path.join(root, "test", "00003.png")
    capsys.readouterr()
    deploy_main(["predict", "--model", out, "--image", image, "--topk", "3", "--json", "--threads", "1"])
    printed = json.loads(capsys.readouterr().out)
    assert printed[0]["image"] == image and len(printed[0]["classes"]) == 3


def test_paddle2onnx_converts_a_classifier_folder(trained, tmp_path):
    pytest.importorskip("paddle2onnx")
    pytest.importorskip("onnxruntime")
    from deploy.export import export_checkpoint
    from deploy.onnx import onnx_from_paddle_folder
    ckpt = tmp_path / "epoch1.pdparams"
    _checkpoint(trained, "paddle", ckpt)
    cfg = _cfg(trained, ckpt)
    paddle_dir, onnx_dir = tmp_path / "export", tmp_path / "export_onnx"
    export_checkpoint(cfg, str(ckpt), str(paddle_dir))
    manifest = onnx_from_paddle_folder(str(paddle_dir), str(onnx_dir))
    assert manifest["runtime"] == "onnx" and manifest["task"] == "classification"
    assert manifest["outputs"][0]["shape"] == [-1, 10] and manifest["verified_max_abs_diff"] < 1e-4
    assert json.loads((onnx_dir / "classes.json").read_text()) == json.loads((paddle_dir / "classes.json").read_text())
    classes = json.loads((onnx_dir / "classes.json").read_text())
    images = [os.path.join(cfg.DATA_ROOT, "val", classes[k], "00000.png") for k in (3, 7)]
    from_onnx, from_paddle = classifier.ImagePredictor(str(onnx_dir)), classifier.ImagePredictor(str(paddle_dir),
                                                                                               threads=1)
    batch = from_paddle.bundle.make_batch(images)
    np.testing.assert_allclose(from_onnx.logits(batch), from_paddle.logits(batch), rtol=1e-4, atol=1e-4)
