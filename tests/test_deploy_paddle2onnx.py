"""deploy/onnx.py, the paddle2onnx route: a static Paddle export -> model.onnx, checked with onnxruntime.

Expected logits come from Paddle Inference on the source folder (the program paddle2onnx converts), on inputs drawn
here, not the ones the converter checks itself with. The conversion tests need the optional paddle2onnx (installed
with `pip install --no-deps paddle2onnx==2.1.0`: its declared onnx<=1.17.0 conflicts with the pinned onnx) and skip
without it; the missing-package message is tested without it.
"""
import importlib.util
import json
import os

import numpy as np
import pytest

pytest.importorskip("paddle", reason="the paddle2onnx route starts from a static Paddle export")

from deploy import bundle
from tests.model_configs import TOKEN_SIZE, build
from tests.test_deploy import KINDS, _inputs, _tiny
from tests.tolerances import FORWARD_ATOL

_MISSING = [m for m in ("paddle2onnx", "onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
needs_paddle2onnx = pytest.mark.skipif(
    bool(_MISSING), reason=f"optional packages not installed: {', '.join(_MISSING)} "
                           "(pip install onnx onnxruntime; pip install --no-deps paddle2onnx==2.1.0)")

ANSWERS = [f"answer {i}" for i in range(7)]


def _paddle_export(kind, out_dir):
    from deploy.export import export_net
    cfg = _tiny(kind)
    vocab = {"PAD": 0, "UNK": 1, "CLS": 2, **{f"w{i}": i for i in range(3, TOKEN_SIZE)}}
    export_net(build("paddle", cfg, seed=1), cfg, out_dir, vocab, ANSWERS, 14)
    return cfg


CLI_KIND = "trar_hard_binarize"   # converted through `python -m deploy onnx --from-paddle`, the others by function


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """kind -> (cfg, paddle folder, onnx folder, manifest, CLI output or None); each kind is converted once, when
    first asked for."""
    import contextlib
    import io

    from deploy.__main__ import main
    from deploy.onnx import onnx_from_paddle_folder
    done = {}

    def get(kind):
        if kind not in done:
            root = tmp_path_factory.mktemp(kind)
            source, target, printed = str(root / "export"), str(root / "export_onnx"), None
            cfg = _paddle_export(kind, source)
            if kind == CLI_KIND:
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    main(["onnx", "--from-paddle", source])
                printed = out.getvalue()
                with open(os.path.join(target, "manifest.json")) as f:
                    manifest = json.load(f)
            else:
                manifest = onnx_from_paddle_folder(source, target)
            done[kind] = (cfg, source, target, manifest, printed)
        return done[kind]
    return get


@needs_paddle2onnx
@pytest.mark.parametrize("kind", list(KINDS))
def test_paddle2onnx_model_matches_paddle_inference(kind, converted):
    from deploy.predict import Predictor
    cfg, source, target, manifest, _ = converted(kind)
    assert manifest["runtime"] == "onnx" and manifest["exporter"] == "paddle2onnx"
    assert manifest["exporter_version"] == "2.1.0" and manifest["opset"] == 17
    assert sorted(os.listdir(target)) == ["answers.json", "config.yml", "manifest.json", "model.onnx", "vocab.json"]
    assert [o["name"] for o in manifest["outputs"]] == ["logits"]   # paddle2onnx keeps the program's output name
    paddle_side, onnx_side = Predictor(source, threads=1), Predictor(target, threads=1)
    assert onnx_side.bundle.runtime == "onnx" and paddle_side.bundle.runtime == "paddle"
    assert onnx_side.bundle.input_names == paddle_side.bundle.input_names
    for batch_size, seed in ((1, 21), (4, 22), (2, 23)):   # one session: the batch axis stays dynamic
        batch = _inputs(cfg, batch_size, seed)
        batch = {name: batch[name] for name in paddle_side.bundle.input_names}
        expected = paddle_side.logits(batch)
        got = onnx_side.logits(batch)
        assert got.shape == (batch_size, len(ANSWERS))
        assert np.abs(got - expected).max() <= FORWARD_ATOL, kind


@needs_paddle2onnx
def test_paddle2onnx_cli_reports_the_check(converted):
    _, source, target, manifest, printed = converted(CLI_KIND)
    assert target == source + "_onnx"   # the default output folder
    assert f"Converted {source} to {target}/model.onnx (paddle2onnx, opset 17)" in printed
    diff = float(printed.rsplit("max abs difference", 1)[1].split()[0])
    assert diff <= FORWARD_ATOL and diff == pytest.approx(manifest["verified_max_abs_diff"], rel=0.01)


@needs_paddle2onnx
def test_paddle2onnx_folder_keeps_the_source_vocabulary_and_answers(converted, tmp_path):
    """The ONNX folder answers a raw question like the Paddle folder it came from (same tokens, same answer list)."""
    from deploy.predict import Predictor
    _, source, target, manifest, _ = converted("mcan")
    for name in ("vocab.json", "answers.json"):
        with open(os.path.join(source, name)) as a, open(os.path.join(target, name)) as b:
            assert json.load(a) == json.load(b), name
    assert manifest["source"] == os.path.abspath(source)
    rng = np.random.default_rng(3)
    feats = []
    for i in range(2):
        path = str(tmp_path / f"{i}.npz")
        x = rng.standard_normal((24, 6)).astype(np.float32)   # (dim, boxes), as the region files store it
        box = np.array([[0, 0, 10, 10], [5, 5, 40, 30], [20, 0, 60, 60], [1, 2, 3, 4], [50, 50, 90, 99],
                        [7, 7, 8, 9]], np.float32)
        np.savez(path, x=x, bbox=box, image_h=np.array(100), image_w=np.array(100))
        feats.append(path)
    questions = ["w3 w4 w5 ?", "w7 zebra w9"]
    got = Predictor(target, threads=1).answer(questions, feats, k=3)
    expected = Predictor(source, threads=1).answer(questions, feats, k=3)
    for g, e in zip(got, expected):
        assert g["unknown_words"] == e["unknown_words"]
        assert [a for a, _ in g["answers"]] == [a for a, _ in e["answers"]]
        assert np.allclose([s for _, s in g["answers"]], [s for _, s in e["answers"]], atol=1e-5)
    assert got[1]["unknown_words"] == ["zebra"]


@needs_paddle2onnx
@pytest.mark.parametrize("kind", ["trar_soft", "mmnasnet"])
def test_paddle2onnx_leaves_no_dead_nodes(kind, converted):
    """Every node's output is read by another node or is the graph output (onnxruntime warns about dead
    constants when it loads a model; paddle2onnx 2.1.0 leaves 64 in the tiny TRAR, 36 in the tiny MMNasNet)."""
    import onnx
    _, _, target, _, _ = converted(kind)
    graph = onnx.load(os.path.join(target, "model.onnx")).graph
    read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    dead = [node.name for node in graph.node if not any(name in read for name in node.output)]
    assert dead == [] and len(graph.node) > 100


def test_paddle2onnx_cli_without_the_package_says_how_to_install(tmp_path, monkeypatch, capsys):
    """Runs with or without paddle2onnx installed: the lookup is made to fail."""
    import deploy.onnx as onnx_route
    real = importlib.util.find_spec
    monkeypatch.setattr(onnx_route.importlib.util, "find_spec",
                        lambda name, *a: None if name == "paddle2onnx" else real(name, *a))
    from deploy.__main__ import main
    with pytest.raises(SystemExit) as stop:                    # the library raises, the command line says one line
        main(["onnx", "--from-paddle", str(tmp_path / "export")])
    message = str(stop.value.code)
    assert message.startswith("error: the paddle2onnx route needs") and "\n" not in message
    assert "paddle2onnx missing" in message and "pip install --no-deps paddle2onnx==2.1.0" in message
    assert not os.path.exists(str(tmp_path / "export_onnx"))


def test_program_that_paddle2onnx_cannot_convert_is_refused_before_it_runs(tmp_path, monkeypatch):
    """A real export whose program json is given a masked_fill op: refused with the reason, paddle2onnx never
    started (the child process would fail the test)."""
    import backends.paddle.export as paddle_export
    import deploy.onnx as onnx_route
    source = str(tmp_path / "export")
    _paddle_export("mcan", source)
    program = os.path.join(source, "inference.json")
    with open(program) as f:
        text = f.read()
    assert '"#":"1.where"' in text and "masked_fill" not in text   # the paddle backend masks with paddle.where
    with open(program, "w") as f:
        f.write(text.replace('"#":"1.where"', '"#":"1.masked_fill"', 1))
    manifest_path = os.path.join(source, "manifest.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    manifest["sha256"]["inference.json"] = bundle.file_sha256(program)   # a consistent folder, only the op differs
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)

    def started(*args, **kwargs):
        raise AssertionError("paddle2onnx was started")
    monkeypatch.setattr(paddle_export, "run_paddle2onnx", started)
    with pytest.raises(onnx_route.OnnxExportError, match=r"inference\.json: paddle2onnx cannot convert this program: "
                                                         r"1 pd_op\.masked_fill"):
        onnx_route.onnx_from_paddle_folder(source, str(tmp_path / "out"), 17)
    assert not os.path.exists(str(tmp_path / "out"))
