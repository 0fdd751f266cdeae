"""deploy/: Paddle static export, the Paddle Inference predictor, the inference folder's checks, ONNX, timing.

Expected values come from the dynamic graphs (paddle for the export parity, the torch backend for the trained
model exported through paddle), from hand-worked numbers, or from the demo data's annotations.
"""
import importlib.util
import json
import os
import shutil
import warnings

import numpy as np
import pytest

pytest.importorskip("paddle", reason="static export and Paddle Inference need paddlepaddle")

from core.config import load_config
from core.data import build_dataset
from core.data.demo import COLOURS, SHAPES, generate
from deploy import bundle
from deploy.bundle import Bundle, BundleError
from tests.model_configs import TOKEN_SIZE, build, make_batch, tiny_cfg
from tests.tolerances import FORWARD_ATOL

N_TRAIN_IMAGES, N_VAL_IMAGES = 100, 30
TINY_MMNAS = dict(REL_HBASE=8, REL_SIZE=8, ARCH={"enc": ["SA", "FFN"], "dec": ["GA", "RSA", "FFN", "SA"]})
KINDS = {
    "trar_soft": ("trar", dict(ROUTING="soft", POOLING="attention")),
    "trar_hard_binarize": ("trar", dict(ROUTING="hard", BINARIZE=True, POOLING="fc")),
    "mcan": ("mcan_small", {}),
    "mmnasnet": ("mmnasnet_small", TINY_MMNAS),
    "lsat": ("lsat", dict(LSAT_WINDOW=4, LSAT_ROTARY=True)),
}


# ------------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("demo"))
    generate(root, seed=0, n_train_images=N_TRAIN_IMAGES, n_val_images=N_VAL_IMAGES, n_test_images=3)
    return root


def _demo_cfg(root, work, model="trar", **overrides):
    return load_config(model, "demo", overrides=dict(DATA_ROOT=root, RESULTS_ROOT=os.path.join(work, "results"),
                                                     CKPTS_ROOT=os.path.join(work, "ckpts"), VERBOSE=False,
                                                     NUM_WORKERS=0, **overrides))


@pytest.fixture(scope="module")
def trained(demo_root, tmp_path_factory):
    """TRAR trained briefly on the demo data by the engine on the torch backend, exported by
    `run.py --RUN=export --backend=torch` (the .pkl is converted by the paddle backend on the way)."""
    pytest.importorskip("torch", reason="the trained model is trained on the torch backend")
    import run
    from backends import get_backend
    from core.engine import run as engine_run
    work = str(tmp_path_factory.mktemp("work"))
    # KL loss: with BCE over 3129 answers a few dozen steps only push every logit down (measured: the answer
    # does not depend on the question yet); with KL the answer kind is learned within the first epoch.
    train = dict(LOSS_FUNC="kld", LR_BASE=2e-3, WARMUP_EPOCH=0, MAX_EPOCH=3, EVAL_EVERY_EPOCH=False, SEED=0,
                 VERSION="deploytest")
    cfg = _demo_cfg(demo_root, work, **train)
    engine_run(cfg, get_backend("torch"))
    flags = ["--RUN=export", "--backend=torch", "--MODEL=trar", "--DATASET=demo", f"--DATA_ROOT={demo_root}",
             "--CKPT_V=deploytest", "--CKPT_E=3", f"--SET=RESULTS_ROOT={work}/results",
             f"--SET=CKPTS_ROOT={work}/ckpts", "--SET=LOSS_FUNC=kld"]
    out = run.main(flags)["out_dir"]
    assert out == os.path.join(work, "results", "export", "deploytest_epoch3")   # .../<CKPT_VERSION>_epoch<CKPT_EPOCH>
    return {"cfg": cfg, "dir": out, "work": work, "ckpt": os.path.join(work, "ckpts", "ckpt_deploytest", "epoch3.pkl")}


def _feature_path(ds, index):
    return ds.feat_index[ds.iids[index]]


# ----------------------------------------------------------------------------------------- export = dynamic graph
def _tiny(kind):
    model, extra = KINDS[kind]
    return tiny_cfg(model, "vqa", **extra)


def _inputs(cfg, batch_size, seed):
    batch = make_batch(cfg, batch_size=batch_size, seed=seed)
    if bundle.uses_boxes(cfg):
        rng = np.random.default_rng(seed)
        rows = batch["frcn_feat"].shape[1]
        corner = rng.uniform(0, 200, (batch_size, rows, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(4, 80, (batch_size, rows, 2))], axis=-1)
        boxes[np.abs(batch["frcn_feat"]).sum(-1) == 0] = 0
        batch["bbox_feat"] = boxes.astype(np.float32)
    return batch


@pytest.mark.parametrize("kind", list(KINDS))
def test_exported_logits_equal_the_dynamic_graph_at_any_batch_size(kind, tmp_path):
    from backends import get_backend
    from deploy.export import export_net
    from deploy.predict import Predictor
    cfg = _tiny(kind)
    be = get_backend("paddle")
    net = build("paddle", cfg, seed=1)
    vocab = {"PAD": 0, "UNK": 1, "CLS": 2, **{f"w{i}": i for i in range(3, TOKEN_SIZE)}}
    answers = [f"answer {i}" for i in range(7)]
    manifest = export_net(net, cfg, str(tmp_path), vocab, answers, 14)
    assert all(spec["shape"][0] == -1 for spec in manifest["inputs"])
    expected_names = ["frcn_feat"] + (["bbox_feat"] if kind == "mmnasnet" else []) + ["ques_ix"]
    assert [s["name"] for s in manifest["inputs"]] == expected_names
    assert sorted(os.listdir(tmp_path)) == ["answers.json", "config.yml", "inference.json", "inference.pdiparams",
                                            "manifest.json", "vocab.json"]
    assert [o["name"] for o in manifest["outputs"]] == ["logits"]
    (tmp_path / "plain").write_text("")                  # a bundle is to be shared: files get open()'s mode
    modes = {os.stat(tmp_path / name).st_mode & 0o777 for name in os.listdir(tmp_path)}
    assert modes == {os.stat(tmp_path / "plain").st_mode & 0o777}
    os.remove(tmp_path / "plain")
    predictor = Predictor(str(tmp_path), threads=1)
    for batch_size, seed in ((1, 5), (3, 6), (1, 7)):   # one predictor: the batch axis is dynamic
        batch = _inputs(cfg, batch_size, seed)
        expected = be.predict(net, batch)
        got = predictor.logits({k: batch[k] for k in expected_names})
        assert got.shape == (batch_size, 7)
        assert np.abs(got - expected).max() <= FORWARD_ATOL, kind


# --------------------------------------------------------------------------------------- vocabulary and config
def test_export_vocabulary_is_the_training_vocabulary(demo_root, tmp_path):
    cfg = _demo_cfg(demo_root, str(tmp_path))
    token_to_ix, answers, max_token = bundle.question_vocabulary(cfg)
    train = build_dataset(cfg, "train")
    assert token_to_ix == train.token_to_ix
    assert answers == [train.ix_to_ans[i] for i in range(train.ans_size)] and max_token == 14


def test_exported_config_loads_back_as_the_same_network(trained):
    path = os.path.join(trained["dir"], bundle.CONFIG_FILE)
    again = load_config("trar", "demo", overrides={"CONFIG": path})
    for key in ("HIDDEN_SIZE", "LAYER", "ORDERS", "IMG_SCALE", "FEAT_SIZE", "ROUTING", "LOSS_FUNC", "DATA_ROOT"):
        assert getattr(again, key) == getattr(trained["cfg"], key), key


# ------------------------------------------------------------------------------------- the trained demo model
def test_predictor_reproduces_the_training_backend_from_raw_questions(trained, demo_root):
    """Tokens from the question text and features from the files, through the predictor, give the logits the
    torch backend computes on the training dataset's samples: same pipeline, converted and exported weights."""
    from backends import get_backend
    from deploy.predict import Predictor
    cfg = trained["cfg"]
    torch_be = get_backend("torch")
    net = torch_be.build_model(cfg, *_sizes(cfg))
    torch_be.load_checkpoint(net, trained["ckpt"])
    val = build_dataset(cfg.copy(RUN_MODE="val"), "val")
    idx = list(range(0, len(val), 7))[:12]
    expected = torch_be.predict(net, {k: np.stack([val[i][k] for i in idx]) for k in val[0]})
    predictor = Predictor(trained["dir"], threads=1)
    questions = [val.questions[val.qids[i]]["question"] for i in idx]
    got = predictor.logits(predictor.bundle.make_batch(questions, [_feature_path(val, i) for i in idx]))
    assert np.abs(got - expected).max() <= FORWARD_ATOL


def _sizes(cfg):
    ds = build_dataset(cfg, "train")
    return ds.token_size, ds.ans_size


def _answer_kind_ok(question, answer):
    words = question.lower().split()
    if words[0] == "is":
        return answer in ("yes", "no")
    if words[0] == "how":
        return answer.isdigit()
    return answer in (COLOURS if words[1] == "color" else SHAPES)


def test_trained_predictor_answers_every_demo_question_with_the_right_kind(trained, demo_root, tmp_path):
    """Batch mode over the val questions. After three short epochs the answer kind (a colour for 'what color',
    yes/no for 'is there', a number for 'how many', a shape for 'what shape') is right for >= 90% of questions;
    answering the most common answer to everything gets only the yes/no share (checked below), and an untrained
    model picks among 3129 answers. (Accuracy against the annotations: tests/test_deploy_accuracy.py.)"""
    from deploy.predict import Predictor
    raw = os.path.join(demo_root, "vqa", "raw")
    qfile = os.path.join(raw, "v2_OpenEnded_mscoco_val2014_questions.json")
    out = str(tmp_path / "result.json")
    Predictor(trained["dir"], threads=1).answer_file(qfile, os.path.join(demo_root, "vqa", "feats", "val2014"), out)
    with open(qfile) as f:
        questions = {q["question_id"]: q["question"] for q in json.load(f)["questions"]}
    with open(out) as f:
        results = json.load(f)
    assert sorted(r["question_id"] for r in results) == sorted(questions)
    right_kind = np.mean([_answer_kind_ok(questions[r["question_id"]], r["answer"]) for r in results])
    yes_no_share = np.mean([q.lower().startswith("is") for q in questions.values()])
    assert yes_no_share < 0.6
    assert right_kind >= 0.9


def test_predict_command_prints_top_k_answers_with_their_scores(trained, demo_root, capsys):
    """The trained model used the KL loss, so its scores are a softmax over the answers."""
    from deploy.__main__ import main
    from deploy.predict import Predictor
    val = build_dataset(trained["cfg"].copy(RUN_MODE="val"), "val")
    question, path = "What color is the circle?", _feature_path(val, 0)
    main(["predict", "--model", trained["dir"], "--question", question, "--features", path, "--topk", "3",
          "--threads", "1"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"question: {question}" and len(lines) == 4
    predictor = Predictor(trained["dir"], threads=1)
    logits = predictor.logits(predictor.bundle.make_batch([question], [path]))[0].astype(np.float64)
    best = np.argsort(-logits)[:3]
    for rank, (line, j) in enumerate(zip(lines[1:], best), start=1):
        shown_rank, answer, score = line.split()[0], " ".join(line.split()[1:-1]), float(line.split()[-1])
        assert shown_rank.rstrip(".") == str(rank)
        assert answer == predictor.bundle.answers[j]
        assert score == pytest.approx(np.exp(logits[j]) / np.exp(logits).sum(), abs=1e-4)


def test_predict_says_which_words_of_a_long_question_are_not_read(trained, demo_root, capsys):
    from deploy.__main__ import main
    val = build_dataset(trained["cfg"].copy(RUN_MODE="val"), "val")
    words = [f"w{i}" for i in range(20)]
    main(["predict", "--model", trained["dir"], "--question", " ".join(words), "--features", _feature_path(val, 0),
          "--topk", "1", "--threads", "1"])
    out = capsys.readouterr().out
    assert f"(the model reads the first 14 words; not read: {' '.join(words[14:])})" in out   # demo max_token 14
    with pytest.raises(SystemExit):
        main(["predict", "--model", trained["dir"], "--question", "x", "--features", "y", "--topk", "0"])
    assert "--topk must be >= 1, got 0" in capsys.readouterr().err


def test_top_answers_hand_worked():
    b = Bundle.__new__(Bundle)
    b.answers, b.score = ["yes", "no", "red"], "sigmoid"
    top = b.top_answers(np.array([[0.0, 2.0, -1.0]]), k=2)
    assert [a for a, _ in top[0]] == ["no", "yes"]
    assert top[0][0][1] == pytest.approx(0.880797, abs=1e-6) and top[0][1][1] == pytest.approx(0.5)
    b.score = "softmax"   # e^2 / (1 + e^2 + e^-1) = 7.389056 / 8.756935
    top = b.top_answers(np.array([[0.0, 2.0, -1.0]]), k=1)
    assert top[0][0][0] == "no" and top[0][0][1] == pytest.approx(0.843795, abs=1e-6)


# ------------------------------------------------------------------------------------------------- bad input
def test_export_refuses_a_checkpoint_of_another_config(demo_root, tmp_path):
    from backends import get_backend
    from deploy.export import ExportError, export_checkpoint
    work = str(tmp_path)
    other = _demo_cfg(demo_root, work, HIDDEN_SIZE=32, MULTI_HEAD=4)
    be = get_backend("paddle")
    net = be.build_model(other, *_sizes(other))
    ckpt = os.path.join(work, "other.pdparams")
    be.make_trainer(net, other).save(ckpt, 1, 1e-3)
    with pytest.raises(ExportError, match="does not match the config") as err:
        export_checkpoint(_demo_cfg(demo_root, work), ckpt, os.path.join(work, "out"))
    assert "other.pdparams" in str(err.value)
    assert not os.path.exists(os.path.join(work, "out"))


def test_export_over_another_checkpoints_export_warns(trained, tmp_path):
    """Each checkpoint gets its own default folder; writing over the export of another one says so."""
    from deploy.export import default_out_dir, export_checkpoint
    cfg = trained["cfg"]
    assert default_out_dir(cfg.copy(CKPT_VERSION="run", CKPT_EPOCH=2, RUN_MODE="export")).endswith(
        os.path.join("export", "run_epoch2"))
    epoch2 = trained["ckpt"].replace("epoch3.pkl", "epoch2.pkl")
    out = str(tmp_path / "out")
    export_checkpoint(cfg, epoch2, out)
    with pytest.warns(UserWarning, match=r"replacing the export of .*epoch2\.pkl with the export of .*epoch3\.pkl"):
        export_checkpoint(cfg, trained["ckpt"], out)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)                    # the same checkpoint again: quiet
        export_checkpoint(cfg, trained["ckpt"], out)
    assert Bundle(out).manifest["checkpoint"] == os.path.abspath(trained["ckpt"])


def test_export_without_a_checkpoint_says_which_flags(demo_root):
    from deploy.export import ExportError, find_checkpoint
    cfg = load_config("trar", "demo", run_mode="export", overrides=dict(DATA_ROOT=demo_root))
    with pytest.raises(ExportError, match="--CKPT_PATH"):
        find_checkpoint(cfg)


@pytest.fixture
def folder(trained, tmp_path):
    path = str(tmp_path / "model")
    shutil.copytree(trained["dir"], path)
    return path


def _edit_json(path, change):
    with open(path) as f:
        data = json.load(f)
    change(data)
    with open(path, "w") as f:
        json.dump(data, f)


def test_missing_folder_and_files_are_named(folder, tmp_path):
    from deploy.predict import Predictor
    with pytest.raises(BundleError, match="no such folder"):
        Bundle(str(tmp_path / "nowhere"))
    os.remove(os.path.join(folder, "inference.pdiparams"))
    with pytest.raises(BundleError, match=r"inference\.pdiparams: missing"):
        Predictor(folder)
    os.remove(os.path.join(folder, "manifest.json"))
    with pytest.raises(BundleError, match=r"manifest\.json: missing"):
        Bundle(folder)


def _as_previous_version(folder):
    """Turn an export into what the previous version wrote: model.json + model.pdiparams in files and sha256."""
    renames = {"inference.json": "model.json", "inference.pdiparams": "model.pdiparams"}
    for new, old in renames.items():
        os.rename(os.path.join(folder, new), os.path.join(folder, old))

    def rename(m):
        m["files"] = {role: renames.get(name, name) for role, name in m["files"].items()}
        m["sha256"] = {renames.get(name, name): digest for name, digest in m["sha256"].items()}
    _edit_json(os.path.join(folder, "manifest.json"), rename)


def test_folder_of_the_previous_version_still_predicts_and_a_new_export_replaces_its_files(folder, trained):
    from deploy.export import export_checkpoint
    from deploy.predict import Predictor
    b = Bundle(folder)
    batch = bundle.sample_inputs(b.inputs, 2, len(b.token_to_ix), seed=3)
    expected = Predictor(folder, threads=1).logits(batch)
    _as_previous_version(folder)
    assert Bundle(folder).file("model").endswith("model.json")
    assert np.array_equal(Predictor(folder, threads=1).logits(batch), expected)
    os.remove(os.path.join(folder, "model.pdiparams"))
    with pytest.raises(BundleError, match=r"model\.pdiparams: missing"):
        Predictor(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # the folder's manifest names another path for the checkpoint
        export_checkpoint(trained["cfg"].copy(RUN_MODE="export"), trained["ckpt"], folder)
    assert "model.json" not in os.listdir(folder) and "inference.json" in os.listdir(folder)
    assert np.abs(Predictor(folder, threads=1).logits(batch) - expected).max() <= FORWARD_ATOL


def test_files_that_do_not_match_the_manifest_are_named(folder):
    _edit_json(os.path.join(folder, "vocab.json"), lambda v: v.update(zebra=len(v)))
    with pytest.raises(BundleError, match=r"vocab\.json: its content does not match"):
        Bundle(folder)


def test_manifest_inputs_that_the_program_lacks_are_refused(folder):
    from deploy.predict import Predictor

    def rename(m):
        m["inputs"][0]["name"] = "image"
    _edit_json(os.path.join(folder, "manifest.json"), rename)
    with pytest.raises(BundleError, match=r"inference\.json: the model takes inputs"):
        Predictor(folder)


def test_manifest_of_another_format_is_refused(folder):
    _edit_json(os.path.join(folder, "manifest.json"), lambda m: m.update(format_version=99))
    with pytest.raises(BundleError, match="format_version 99"):
        Bundle(folder)


def test_features_of_the_wrong_shape_or_kind_are_named(folder, tmp_path):
    b = Bundle(folder)
    wrong_dim = str(tmp_path / "9.npy")
    np.save(wrong_dim, np.zeros((36, 47), np.float16))
    with pytest.raises(ValueError, match=r"9\.npy: expected a grid feature array of shape \(cells, 48\)"):
        b.make_batch(["what color is the star?"], [wrong_dim])
    region = str(tmp_path / "9.npz")
    np.savez(region, x=np.zeros((48, 3), np.float32))
    with pytest.raises(BundleError, match=r"9\.npz: this model reads grid features \(\.npy files\)"):
        b.load_features(region)
    with pytest.raises(BundleError, match="expected shape"):
        b.check_batch({"frcn_feat": np.zeros((1, 35, 48), np.float32), "ques_ix": np.zeros((1, 14), np.int64)})


def test_batch_mode_names_a_missing_image(folder, demo_root, tmp_path):
    from deploy.predict import Predictor
    qfile = str(tmp_path / "q.json")
    with open(qfile, "w") as f:
        json.dump({"questions": [{"question_id": 5, "image_id": 424242, "question": "is there a star?"}]}, f)
    feats = os.path.join(demo_root, "vqa", "feats", "val2014")
    with pytest.raises(BundleError, match="image 424242"):
        Predictor(folder, threads=1).answer_file(qfile, feats, str(tmp_path / "r.json"))


# --------------------------------------------------------------------------------------------------- timing
def test_time_call_counts_calls_and_orders_its_statistics():
    from deploy.timing import time_call
    calls = []
    stats = time_call(lambda: calls.append(1), warmup=3, repeats=5, items=64)
    assert len(calls) == 8 and stats["repeats"] == 5
    assert stats["min_s"] <= stats["median_s"] <= stats["max_s"]
    assert stats["items_per_s"] == pytest.approx(64 / stats["median_s"])


# ----------------------------------------------------------------------------------------------------- ONNX
_ONNX_MISSING = [m for m in ("onnxruntime", "onnx", "torch") if importlib.util.find_spec(m) is None]


@pytest.mark.skipif(bool(_ONNX_MISSING), reason=f"optional ONNX extra not installed: {', '.join(_ONNX_MISSING)} "
                                                "(pip install onnx onnxscript onnxruntime)")
@pytest.mark.parametrize("kind, exporter", [("trar_hard_binarize", "legacy"), ("mmnasnet", "dynamo"),
                                            ("lsat", "legacy")])
def test_onnx_export_matches_the_torch_graph(kind, exporter, tmp_path):
    from backends import get_backend
    from deploy.onnx import export_torch_net
    from deploy.predict import Predictor
    cfg = _tiny(kind)
    torch_be = get_backend("torch")
    net = build("torch", cfg, seed=1)
    vocab = {"PAD": 0, "UNK": 1, "CLS": 2, **{f"w{i}": i for i in range(3, TOKEN_SIZE)}}
    export_torch_net(net, cfg, str(tmp_path), vocab, [f"a{i}" for i in range(7)], 14, exporter=exporter)
    predictor = Predictor(str(tmp_path), threads=1)
    assert predictor.bundle.runtime == "onnx"
    for batch_size, seed in ((1, 3), (3, 4)):
        batch = _inputs(cfg, batch_size, seed)
        expected = torch_be.predict(net, batch)
        got = predictor.logits({k: batch[k] for k in predictor.bundle.input_names})
        assert np.abs(got - expected).max() <= FORWARD_ATOL


def test_paddle2onnx_blockers_are_found_in_a_program(tmp_path):
    """A hand-made PIR json: one masked_fill op, one bool parameter, one float parameter."""
    from backends.paddle.export import paddle2onnx_blockers
    op = {"#": "1.masked_fill", "I": [{"%": 1}]}
    bool_param = {"#": "p", "A": [0, 1, 1, "generated_tensor_0"], "O": {"%": 1, "TT": {"D": [{"#": "0.t_bool"}]}}}
    float_param = {"#": "p", "A": [0, 1, 1, "linear_0.w_0"], "O": {"%": 2, "TT": {"D": [{"#": "0.t_f32"}]}}}
    program = {"program": {"regions": [{"blocks": [{"ops": [bool_param, float_param, op, {"#": "1.matmul"}]}]}]}}
    path = tmp_path / "model.json"
    path.write_text(json.dumps(program))
    blockers = paddle2onnx_blockers(str(path))
    assert len(blockers) == 2
    assert blockers[0].startswith("1 pd_op.masked_fill") and "generated_tensor_0" in blockers[1]
    assert "linear_0.w_0" not in blockers[1]
    program["program"]["regions"][0]["blocks"][0]["ops"] = [float_param, {"#": "1.where"}]
    path.write_text(json.dumps(program))
    assert paddle2onnx_blockers(str(path)) == []


def test_paddles_stdout_noise_is_dropped_and_other_c_output_goes_to_stderr(capfd):
    from deploy import c_output
    print("before", flush=True)
    with c_output.filtered(1, c_output.STDOUT_NOISE):
        os.write(1, b"ReduceMeanCheckIfOneDNNSupport\nsomething else\nReduceMeanCheckIfOneDNNSupport\n")
    print("after", flush=True)
    out, err = capfd.readouterr()
    assert out == "before\nafter\n" and err == "something else\n"


def test_paddles_stderr_noise_is_dropped_and_the_rest_kept_in_order(capfd):
    from deploy import c_output
    with c_output.filtered(2, c_output.STDERR_NOISE):
        os.write(2, b"W1206 02:12:47.370894  8832 eager_utils.cc:3584] Paddle static graph(PIR) not support input "
                    b"out tensor for now!!!!!\nfirst\n")
        os.write(2, b"second\n")
    out, err = capfd.readouterr()
    assert out == "" and err == "first\nsecond\n"


@pytest.mark.parametrize("command,own", [("export", ["--out"]), ("onnx", ["--exporter", "--from-paddle", "--opset"]),
                                         ("bench", ["--batch-sizes", "--repeats", "--json-out"])])
def test_each_command_helps_with_its_own_flags(command, own, capsys):
    from deploy.__main__ import main
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: python -m deploy {command} [own flags] run.py flags")
    assert all(flag in text for flag in own) and "--MODEL, --DATASET" in text
    assert "--RUN {" not in text                                      # not run.py's own help
