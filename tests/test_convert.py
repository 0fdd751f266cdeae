"""python -m convert: torch <-> paddle checkpoints with their Adam state, official mmnas checkpoints, bad input.

Expected values come from the frameworks themselves (torch logits, paddle's own Adam accumulators, an uninterrupted
run) or are worked by hand (a transposed weight, 0.9 ** (step + 1), the mmnas key table of the reference).
"""
import json
import os
import pickle
import re
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest
import yaml

from convert.checkpoints import NO_PADDLE_NOTE, convert_file
from convert.cli import main
from core import registry
from formats import adam_state as adam
from formats import mmnas_keys as mmnas
from formats.layout import CheckpointMismatch
from formats.restricted_pickle import read_pdparams, read_torch_checkpoint
from tests.model_configs import (
    ANSWER_SIZE,
    TINY,
    TINY_CLEVR_GRID,
    TINY_REGIONS,
    TINY_VQA_GRID,
    TOKEN_SIZE,
    make_batch,
    tiny_cfg,
)
from tests.tolerances import FORWARD_ATOL, TRAIN_RTOL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = {
    "trar_soft_avg": ("trar", "vqa", {}),
    "trar_soft_attention": ("trar", "vqa", {"POOLING": "attention"}),
    "trar_soft_fc": ("trar", "vqa", {"POOLING": "fc"}),
    "trar_clevr": ("trar", "clevr", {}),
    "mcan_small": ("mcan_small", "vqa", {}),
    "mmnasnet_small": ("mmnasnet_small", "vqa", {"REL_HBASE": 8, "REL_SIZE": 8}),
    "rwsan": ("rwsan", "vqa", {"SRWSA_LAYER": 2, "SGRWSA_LAYER": 2, "AMP": False}),
    "lsat_rotary": ("lsat", "vqa", {"LSAT_WINDOW": 4, "LSAT_ROTARY": True}),
}


# ---- helpers ---------------------------------------------------------------------------------------------------

def config_file(tmp_path, model, dataset, **extra):
    """The tiny overrides of tests.model_configs.tiny_cfg as an extra yml for the CLI's --config."""
    grid = registry.model(model).features == "grid"
    base = (TINY_CLEVR_GRID if dataset == "clevr" else TINY_VQA_GRID) if grid else TINY_REGIONS
    path = tmp_path / f"tiny_{model}_{dataset}.yml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps({**TINY, **base, **extra}))))
    return str(path)


def train_batch(cfg, seed=0, batch_size=4):
    batch = make_batch(cfg, batch_size=batch_size, seed=seed)
    rng = np.random.default_rng(seed + 50)
    if cfg.FEAT_TYPE == "region" and cfg.DATA_FORMAT == "vqa" and not cfg.USE_BBOX_FEAT:   # pixel boxes
        rows = cfg.FEAT_SIZE["vqa"]["FRCN_FEAT_SIZE"][0]
        x1, y1 = rng.uniform(0, 300, (2, batch_size, rows))
        w, h = rng.uniform(5, 200, (2, batch_size, rows))
        batch["bbox_feat"] = np.stack([x1, y1, x1 + w, y1 + h], -1).astype(np.float32)
    if cfg.DATA_FORMAT == "clevr":
        batch["ans"] = rng.integers(0, ANSWER_SIZE, (batch_size, 1)).astype(np.int64)
    else:
        batch["ans"] = (np.round(rng.uniform(size=(batch_size, ANSWER_SIZE)) * 3) / 3).astype(np.float32)
    return batch


def trained(fw, cfg, steps, seed=0, lrs=None):
    """(backend, net, trainer, losses) after ``steps`` train steps from a seeded init."""
    from backends import get_backend
    be = get_backend(fw)
    be.set_device("")
    be.seed(seed)
    net = be.build_model(cfg, TOKEN_SIZE, ANSWER_SIZE)
    trainer = be.make_trainer(net, cfg)
    lrs = lrs or [1e-3] * steps
    losses = [trainer.train_step(train_batch(cfg, seed=i), lrs[i]) for i in range(steps)]
    return be, net, trainer, losses


def assert_same_tree(a, b, path="root"):
    """Same structure, and arrays equal bit for bit (dtype and shape too)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{path}: keys {list(b)[:5]} != {list(a)[:5]}"
        for key in a:
            assert_same_tree(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, f"{path}: {b!r:.80}"
        assert np.array_equal(a, b), f"{path}: values differ"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---- round trips and layouts (paddle files are written as numpy pickles; paddle only names the .pdopt's entries) --

@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_torch_paddle_torch_is_bit_exact(tmp_path, case):
    torch = pytest.importorskip("torch")
    model, dataset, extra = CASES[case]
    cfg = tiny_cfg(model, dataset, DROPOUT_R=0.0, **extra)
    config = config_file(tmp_path, model, dataset, **extra)
    _, net, trainer, _ = trained("torch", cfg, steps=1)
    src = str(tmp_path / "epoch2.pkl")
    trainer.save(src, 2, 5e-4)

    there = convert_file("torch2paddle", src, str(tmp_path / "p.pdparams"), model, dataset, config=config)
    back = convert_file("paddle2torch", str(tmp_path / "p.pdparams"), str(tmp_path / "back.pkl"), model, dataset,
                        config=config)
    a, b = read_torch_checkpoint(src), read_torch_checkpoint(str(tmp_path / "back.pkl"))
    assert_same_tree(a["state_dict"], b["state_dict"], "state_dict")
    assert_same_tree(a["optimizer"]["state"], b["optimizer"]["state"], "optimizer.state")
    assert (b["epoch"], b["lr_base"]) == (2, 5e-4)
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in net.modules())
    for summary in (there, back):
        assert summary["optimizer_converted"] and summary["optimizer_step"] == 1
        assert summary["tensors"] == len(a["state_dict"]) and summary["transposed"] == n_linear


def test_paddle_files_hold_paddle_layout_and_accumulators(tmp_path):
    pytest.importorskip("torch")
    cfg = tiny_cfg("trar", "vqa", DROPOUT_R=0.0)
    _, _, trainer, _ = trained("torch", cfg, steps=3)
    src = str(tmp_path / "epoch1.pkl")
    trainer.save(src, 1, 1e-4)
    convert_file("torch2paddle", src, str(tmp_path / "out"), "trar", "vqa", config=config_file(tmp_path, "trar", "vqa"))
    ckpt = read_torch_checkpoint(src)
    params = read_pdparams(str(tmp_path / "out.pdparams"))
    opt = read_pdparams(str(tmp_path / "out.pdopt"))
    opt = {**opt, "optimizer": adam.paddle_entry(opt)}   # the structured entry beside Paddle's own names
    assert (opt["epoch"], opt["lr_base"]) == (1, 1e-4) and opt["optimizer"]["framework"] == "paddle"
    torch_keys = list(ckpt["state_dict"])
    lstm_end = torch_keys.index("lstm.bias_hh_l0") + 1                # then paddle.nn.LSTM's per-cell names
    cells = [f"lstm.0.cell.{p}" for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    assert list(params) == torch_keys[:lstm_end] + cells + torch_keys[lstm_end:]
    np.testing.assert_array_equal(params["lstm.0.cell.weight_ih"], ckpt["state_dict"]["lstm.weight_ih_l0"])
    # proj is a Linear: [answers, FLAT_OUT] in torch, [FLAT_OUT, answers] in paddle; the embedding is not
    np.testing.assert_array_equal(params["proj.weight"], ckpt["state_dict"]["proj.weight"].T)
    np.testing.assert_array_equal(params["embedding.weight"], ckpt["state_dict"]["embedding.weight"])
    index = list(ckpt["state_dict"]).index("proj.weight")          # torch keys its Adam state by position
    torch_entry = ckpt["optimizer"]["state"][index]
    paddle_entry = opt["optimizer"]["state"]["proj.weight"]
    np.testing.assert_array_equal(paddle_entry["moment1"], torch_entry["exp_avg"].T)
    np.testing.assert_array_equal(paddle_entry["moment2"], torch_entry["exp_avg_sq"].T)
    # after 3 updates paddle holds beta ** 4 (the power its next update uses); the config's betas are (0.9, 0.98)
    assert paddle_entry["beta1_pow_acc"].dtype == np.float32 and paddle_entry["beta1_pow_acc"].shape == (1,)
    assert paddle_entry["beta1_pow_acc"][0] == np.float32(0.9 ** 4)
    assert paddle_entry["beta2_pow_acc"][0] == np.float32(0.98 ** 4)
    emb = opt["optimizer"]["state"]["embedding.weight"]
    np.testing.assert_array_equal(emb["moment1"], ckpt["optimizer"]["state"][0]["exp_avg"])


# A fresh process builds the net and trainer as run.py does (no name guard: its names are the first it makes) and
# hands the converted .pdopt straight to Paddle's set_state_dict; it saves what the optimizer then holds.
_FRESH_PADDLE_LOAD = """
import sys
import numpy as np
import paddle
import run  # noqa: F401  (what run.py imports before it builds the model)
from backends import get_backend
from tests.model_configs import ANSWER_SIZE, TOKEN_SIZE, tiny_cfg
opt, pdopt, out = sys.argv[1:]
extra = {"OPT": "SGD", "OPT_PARAMS": {}} if opt == "SGD" else {}
cfg = tiny_cfg("trar", "vqa", DROPOUT_R=0.0, **extra)
be = get_backend("paddle")
be.set_device("")
net = be.build_model(cfg, TOKEN_SIZE, ANSWER_SIZE)
optimizer = be.make_trainer(net, cfg).optimizer
optimizer.set_state_dict(paddle.load(pdopt))
params = [p for p in net.parameters() if not p.stop_gradient]
optimizer._create_accumulators(paddle.static.default_main_program().global_block(), params)
state = optimizer.state_dict()
names = {p.name: name for name, p in net.named_parameters()}
held = {}
for key, value in state.items():
    internal = max((n for n in names if key.startswith(n + "_")), key=len, default=None)
    if internal is not None:
        held[names[internal] + "|" + key[len(internal) + 1:].rsplit("_", 1)[0]] = value.numpy()
np.savez(out, **held)
"""


@pytest.mark.parity
@pytest.mark.parametrize("opt", ["Adam", "SGD"])
def test_converted_pdopt_goes_straight_into_paddles_set_state_dict(both_backends, tmp_path, opt):
    """torch2paddle's .pdopt, as a Paddle user loads any .pdopt, in a fresh process that builds the model and its
    optimizer as run.py does: set_state_dict finds every accumulator (no 'should in state dict' assertion) and holds
    the torch optimizer's moments, Linear ones transposed; Adam's beta powers are beta ** (step + 1)."""
    import torch
    extra = {"OPT": "SGD", "OPT_PARAMS": {}} if opt == "SGD" else {}
    cfg = tiny_cfg("trar", "vqa", DROPOUT_R=0.0, **extra)
    _, net, trainer, _ = trained("torch", cfg, steps=2)
    src = str(tmp_path / "e.pkl")
    trainer.save(src, 1, 1e-4)
    summary = convert_file("torch2paddle", src, str(tmp_path / "p.pdparams"), "trar", "vqa",
                           config=config_file(tmp_path, "trar", "vqa", **extra))
    assert summary["pdopt_layout"].startswith("paddle's")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    out = str(tmp_path / "held.npz")
    proc = subprocess.run([sys.executable, "-c", _FRESH_PADDLE_LOAD, opt, str(tmp_path / "p.pdopt"), out], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    held = dict(np.load(out))
    saved = read_torch_checkpoint(src)["optimizer"]["state"]
    linear = {f"{name}.weight" for name, m in net.named_modules() if isinstance(m, torch.nn.Linear)}
    params = [name for name, p in net.named_parameters() if p.requires_grad]
    pairs = [("momentum_buffer", "velocity")] if opt == "SGD" else [("exp_avg", "moment1"), ("exp_avg_sq", "moment2")]
    assert len(held) == len(params) * (1 if opt == "SGD" else 4)
    for index, name in enumerate(params):
        for torch_key, paddle_key in pairs:
            want = saved[index][torch_key]
            np.testing.assert_array_equal(held[f"{name}|{paddle_key}"], want.T if name in linear else want,
                                          err_msg=f"{name}.{paddle_key}")
        if opt == "Adam":
            assert held[f"{name}|beta1_pow_acc"][0] == np.float32(0.9 ** 3)
            assert held[f"{name}|beta2_pow_acc"][0] == np.float32(0.98 ** 3)
    assert any(np.abs(v).max() > 0 for k, v in held.items() if "moment1" in k or "velocity" in k)


# ---- Adam state arithmetic (numpy only) ------------------------------------------------------------------------

def _toy_torch_state(step):
    rng = np.random.default_rng(1)
    w, b = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    def entry(x):
        return {"step": np.array(float(step), np.float32), "exp_avg": x, "exp_avg_sq": x * x}
    return {"state": {0: entry(w), 1: entry(b)}, "param_groups": [{"betas": (0.9, 0.98), "params": [0, 1]}]}


def test_adam_state_by_hand():
    state = _toy_torch_state(step=5)
    out = adam.torch_to_paddle(state, ["fc.weight", "fc.bias"], {"fc.weight"}, (0.9, 0.98),
                               {"fc.weight": (2, 3), "fc.bias": (3,)})
    w = out["state"]["fc.weight"]
    np.testing.assert_array_equal(w["moment1"], state["state"][0]["exp_avg"].T)
    np.testing.assert_array_equal(out["state"]["fc.bias"]["moment2"], state["state"][1]["exp_avg_sq"])
    assert w["beta1_pow_acc"][0] == np.float32(0.531441)          # 0.9 ** 6
    assert w["beta2_pow_acc"][0] == np.float32(0.98 ** 6)
    back = adam.paddle_to_torch(out, ["fc.weight", "fc.bias"], {"fc.weight"}, (0.9, 0.98))
    assert float(back["state"][0]["step"]) == 5.0 and back["param_groups"][0]["params"] == [0, 1]
    np.testing.assert_array_equal(back["state"][0]["exp_avg"], state["state"][0]["exp_avg"])


def test_step_from_underflowed_beta_powers():
    # beta1 ** 1001 underflows float32; beta2 = 0.98 still resolves the step
    acc = {"beta1_pow_acc": np.array([0.0], np.float32), "beta2_pow_acc": np.array([0.98 ** 1001], np.float32)}
    assert adam.step_from_beta_pows(acc, (0.9, 0.98), "w") == 1000
    both = {"beta1_pow_acc": np.array([0.0], np.float32), "beta2_pow_acc": np.array([0.0], np.float32)}
    step = adam.step_from_beta_pows(both, (0.9, 0.98), "w")
    assert 0.98 ** step < 1e-30 and 0.9 ** step < 1e-30       # every bias correction is 1 from there on


def test_beta_powers_of_other_betas_are_refused():
    acc = {"beta1_pow_acc": np.array([0.9 ** 4], np.float32), "beta2_pow_acc": np.array([0.999 ** 4], np.float32)}
    with pytest.raises(CheckpointMismatch, match=r"OPT_PARAMS betas \(0\.9, 0\.98\)"):
        adam.step_from_beta_pows(acc, (0.9, 0.98), "w")


def test_optimizer_state_of_another_model_is_refused():
    with pytest.raises(CheckpointMismatch, match="covers 2 parameters, the model has 3"):
        adam.torch_to_paddle(_toy_torch_state(1), ["a", "b", "c"], set(), (0.9, 0.98))
    with pytest.raises(CheckpointMismatch, match="parameter order"):
        adam.torch_to_paddle(_toy_torch_state(1), ["a", "b"], set(), (0.9, 0.98), {"a": (3, 2), "b": (3,)})


def test_torch_state_matches_paddles_own_accumulators():
    """Three Adam updates in paddle itself: the converted torch state must hold the same beta powers."""
    paddle = pytest.importorskip("paddle")
    param = paddle.create_parameter([4], "float32")
    opt = paddle.optimizer.Adam(learning_rate=1e-3, beta1=0.9, beta2=0.98, parameters=[param])
    for _ in range(3):
        (param * param).sum().backward()
        opt.step()
        opt.clear_grad()
    own = {k: v.numpy() for k, v in opt.state_dict().items()}         # keys like create_parameter_0.w_0_beta1_pow_acc_0
    pows = {name: next(v for k, v in own.items() if name in k) for name in adam.BETA_POWS}
    converted = adam.torch_to_paddle(_toy_torch_state(3), ["w", "b"], set(), (0.9, 0.98))["state"]["b"]
    for name in adam.BETA_POWS:
        np.testing.assert_allclose(converted[name], pows[name], rtol=1e-6)


# ---- checkpoints from elsewhere --------------------------------------------------------------------------------

@pytest.mark.parity
def test_original_container_converts_and_paddle_reproduces_torch_logits(both_backends, tmp_path, capsys):
    """openvqa's container, saved from DataParallel ('module.' keys) in torch's legacy format."""
    import torch
    torch_be, paddle_be = both_backends
    cfg = tiny_cfg("trar", "vqa", DROPOUT_R=0.0)
    _, net, trainer, _ = trained("torch", cfg, steps=1)
    src = tmp_path / "epoch13.pkl"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()},
                "optimizer": trainer.optimizer.state_dict(), "lr_base": 4e-6, "epoch": 13}, str(src),
               _use_new_zipfile_serialization=False)
    code, out, err = run_cli(capsys, "torch2paddle", src, tmp_path / "epoch13.pdparams", "--MODEL", "trar",
                             "--DATASET", "vqa", "--config", config_file(tmp_path, "trar", "vqa"))
    assert code == 0, err
    assert f"renamed {len(net.state_dict())}" in out and "optimizer state: converted" in out
    paddle_net = paddle_be.build_model(cfg, TOKEN_SIZE, ANSWER_SIZE)
    meta = paddle_be.load_checkpoint(paddle_net, str(tmp_path / "epoch13.pdparams"))
    assert (meta["epoch"], meta["lr_base"]) == (13, 4e-6)
    batch = train_batch(cfg, seed=7)
    expected = torch_be.predict(net, batch)
    assert np.max(np.abs(paddle_be.predict(paddle_net, batch) - expected)) <= FORWARD_ATOL


@pytest.mark.parity
@pytest.mark.parametrize("lstm_names", ["both", "aliases_only"])
def test_paddle_port_pdparams_converts_to_torch(both_backends, tmp_path, capsys, lstm_names):
    """A Paddle port's file: LSTM under paddle's cell aliases (and torch's names), a StructuredToParameterName@@
    table, no .pdopt."""
    torch_be, paddle_be = both_backends
    cfg = tiny_cfg("mcan_small", "vqa")
    paddle_be.seed(3)
    paddle_net = paddle_be.build_model(cfg, TOKEN_SIZE, ANSWER_SIZE)
    state = {k: v.numpy() for k, v in paddle_net.state_dict().items()}
    for param in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        state[f"lstm.0.cell.{param}"] = state[f"lstm.{param}_l0"] if lstm_names == "both" \
            else state.pop(f"lstm.{param}_l0")
    state["StructuredToParameterName@@"] = {k: f"param_{i}" for i, k in enumerate(state)}
    (tmp_path / "port.pdparams").write_bytes(pickle.dumps(state, protocol=4))
    code, out, err = run_cli(capsys, "paddle2torch", tmp_path / "port.pdparams", tmp_path / "port.pkl", "--MODEL",
                             "mcan_small", "--DATASET", "vqa", "--config", config_file(tmp_path, "mcan_small", "vqa"))
    assert code == 0, err
    assert f"renamed {4 if lstm_names == 'aliases_only' else 0}" in out and "optimizer state: absent" in out
    torch_net = torch_be.build_model(cfg, TOKEN_SIZE, ANSWER_SIZE)
    torch_be.load_checkpoint(torch_net, str(tmp_path / "port.pkl"))
    batch = train_batch(cfg, seed=2)
    assert np.max(np.abs(torch_be.predict(torch_net, batch) - paddle_be.predict(paddle_net, batch))) <= FORWARD_ATOL


def to_mmnas_key(key):
    """openvqa name -> official mmnas name, written from the table of reference mmnasnet.md §1.11."""
    m = re.match(r"^backbone\.(enc|dec)_list\.(\d+)\.(.*)$", key)
    if m:
        part, index, rest = m.groups()
        rest = "ln." + rest[len("norm."):] if rest.startswith("norm.") else rest
        return f"backnone.cells_{part}.0.dag.{index}.0.{rest}"
    for openvqa, official in (("adapter.frcn_linear.", "imgfeat_linear."), ("attflat_lang.", "attflat_x."),
                              ("attflat_img.", "attflat_y."), ("linear_rel.", "linear_y_rel.")):
        if key.startswith(openvqa):
            return official + key[len(openvqa):]
    return key


def test_mmnas_names_by_hand():
    assert mmnas.openvqa_name("backnone.cells_dec.0.dag.6.0.mhatt.linear_r.weight") == \
        "backbone.dec_list.6.mhatt.linear_r.weight"
    assert mmnas.openvqa_name("backnone.cells_enc.0.dag.11.0.ln.b_2") == "backbone.enc_list.11.norm.b_2"
    assert mmnas.openvqa_name("attflat_x.mlp.fc.linear.bias") == "attflat_lang.mlp.fc.linear.bias"
    assert mmnas.openvqa_name("proj_norm.a_2") == "proj_norm.a_2"


def test_answer_rows_reindexed_by_string():
    state = {"proj.weight": np.arange(6, dtype=np.float32).reshape(3, 2), "proj.bias": np.array([0., 1., 2.])}
    out, missing = mmnas.reindex_answers(state, ["yes", "no", "2"], ["no", "two", "yes"])
    np.testing.assert_array_equal(out["proj.weight"], [[2, 3], [0, 0], [0, 1]])
    np.testing.assert_array_equal(out["proj.bias"], [1.0, mmnas.MISSING_ANSWER_BIAS, 0.0])
    assert missing == ["two"]


@pytest.mark.parity
def test_mmnas_checkpoint_reproduces_the_openvqa_model(both_backends, tmp_path, capsys):
    """A checkpoint built in the official layout (renamed keys, no attention biases, 'module.', answers in another
    order plus one the target list lacks) gives the openvqa model's logits after conversion."""
    import torch
    torch_be, paddle_be = both_backends
    extra = {"REL_HBASE": 8, "REL_SIZE": 8}
    cfg = tiny_cfg("mmnasnet_small", "vqa", **extra)
    torch_be.seed(4)
    net = torch_be.build_model(cfg, TOKEN_SIZE, ANSWER_SIZE)
    no_bias = re.compile(r"mhatt\.linear_(v|k|q|merge)\.bias$")
    with torch.no_grad():
        for name, p in net.named_parameters():
            if no_bias.search(name):
                p.zero_()
    answers = [f"answer {i}" for i in range(ANSWER_SIZE)]
    order = list(np.random.default_rng(0).permutation(ANSWER_SIZE)) + [None]   # None: an answer only mmnas has
    mmnas_answers = [answers[i] if i is not None else "mmnas only" for i in order]
    state = {k: v.clone() for k, v in net.state_dict().items() if not no_bias.search(k)}
    rows = [int(i) if i is not None else 0 for i in order]
    state["proj.weight"], state["proj.bias"] = state["proj.weight"][rows], state["proj.bias"][rows] + 0
    state["proj.bias"][-1] = 100.0                                            # would win if it were kept
    torch.save({"state_dict": {"module." + to_mmnas_key(k): v for k, v in state.items()}, "epoch": 13},
               str(tmp_path / "mmnas.pkl"))
    (tmp_path / "mmnas_answers.json").write_text(json.dumps(mmnas_answers))
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    code, out, err = run_cli(capsys, "torch2paddle", tmp_path / "mmnas.pkl", tmp_path / "ovqa.pdparams",
                             "--MODEL", "mmnasnet_small", "--DATASET", "vqa",
                             "--config", config_file(tmp_path, "mmnasnet_small", "vqa", **extra),
                             "--from-layout", "mmnas", "--mmnas-answers", tmp_path / "mmnas_answers.json",
                             "--answers", tmp_path / "answers.json")
    assert code == 0, err
    attention_ops = sum(op != "FFN" for op in cfg.ARCH["enc"] + cfg.ARCH["dec"])
    assert f"zero biases added {4 * attention_ops}" in out
    paddle_net = paddle_be.build_model(cfg, TOKEN_SIZE, ANSWER_SIZE)
    paddle_be.load_checkpoint(paddle_net, str(tmp_path / "ovqa.pdparams"))
    batch = train_batch(cfg, seed=1)
    assert np.max(np.abs(paddle_be.predict(paddle_net, batch) - torch_be.predict(net, batch))) <= FORWARD_ATOL

    code, _, err = run_cli(capsys, "torch2paddle", tmp_path / "mmnas.pkl", tmp_path / "x.pdparams", "--MODEL",
                           "mmnasnet_small", "--DATASET", "vqa", "--config",
                           config_file(tmp_path, "mmnasnet_small", "vqa", **extra))
    assert code == 2 and "--from-layout mmnas" in err


# ---- resume in the other framework -----------------------------------------------------------------------------

RESUME_CASES = {"trar": ("trar", {}), "lsat_rotary": CASES["lsat_rotary"][::2]}


@pytest.mark.parity
@pytest.mark.parametrize("case", sorted(RESUME_CASES))
@pytest.mark.parametrize("first, second", [("torch", "paddle"), ("paddle", "torch")])
def test_cross_framework_resume_matches_an_uninterrupted_run(both_backends, tmp_path, first, second, case):
    """2 steps in one framework, its checkpoint converted (or read directly by the other backend), 2 steps in the
    other framework == 4 steps in the first."""
    model, extra = RESUME_CASES[case]
    cfg = tiny_cfg(model, "vqa", DROPOUT_R=0.0, BATCH_SIZE=4, **extra)
    config = config_file(tmp_path, model, "vqa", **extra)
    lrs = [1e-3, 2e-3, 2e-3, 1e-3]
    batches = [train_batch(cfg, seed=i) for i in range(4)]
    be1, ref_net, _, ref_losses = trained(first, cfg, steps=4, lrs=lrs)
    ref_logits = be1.predict(ref_net, batches[0])
    _, _, trainer, losses = trained(first, cfg, steps=2, lrs=lrs)
    np.testing.assert_allclose(losses, ref_losses[:2], rtol=1e-6)
    src = str(tmp_path / f"epoch1{be1.checkpoint_ext}")
    trainer.save(src, 1, 1e-3)

    def resume(how):
        path = src
        if how != "direct":
            path = str(tmp_path / f"{how}{'.pkl' if second == 'torch' else '.pdparams'}")
            convert_file(f"{first}2{second}", src, path, model, "vqa", config=config,
                         weights_only=how == "weights_only")
        from backends import get_backend
        be2 = get_backend(second)
        net = be2.build_model(cfg, TOKEN_SIZE, ANSWER_SIZE)
        meta = be2.load_checkpoint(net, path)
        assert meta["epoch"] == 1
        trainer2 = be2.make_trainer(net, cfg)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)          # no "Adam's moments restart" warning
            trainer2.load_optimizer_state(meta)
        steps = [trainer2.train_step(batches[i], lrs[i]) for i in (2, 3)]
        return steps, be2.predict(net, batches[0])

    scale = max(1.0, float(np.max(np.abs(ref_logits))))
    for how in ("converted", "direct"):
        steps, logits = resume(how)
        for got, expected in zip(steps, ref_losses[2:]):
            assert abs(got - expected) <= TRAIN_RTOL * abs(expected), how
        assert np.max(np.abs(logits - ref_logits)) <= TRAIN_RTOL * scale, how
    _, fresh_logits = resume("weights_only")          # Adam restarted: the checks above can fail
    assert np.max(np.abs(fresh_logits - ref_logits)) > 10 * TRAIN_RTOL * scale


# ---- bad input -------------------------------------------------------------------------------------------------

class _RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize("direction", ["torch2paddle", "paddle2torch"])
def test_malicious_pickle_is_refused(tmp_path, capsys, direction):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"state_dict": {"w": _RunsCommand(f"touch {marker}")}}, protocol=2)
    src = tmp_path / "evil.pkl"
    if direction == "torch2paddle":
        with zipfile.ZipFile(src, "w") as zf:
            zf.writestr("evil/data.pkl", payload)
    else:
        src.write_bytes(payload)
    code, out, err = run_cli(capsys, direction, src, tmp_path / "out", "--MODEL", "trar", "--DATASET", "vqa")
    assert code != 0 and not marker.exists()
    assert "refused global" in err and "system" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pkl"]


def test_truncated_files_get_one_line_errors(tmp_path, capsys):
    pytest.importorskip("torch")
    cfg = tiny_cfg("trar", "vqa")
    _, _, trainer, _ = trained("torch", cfg, steps=1)
    trainer.save(str(tmp_path / "full.pkl"), 1, 1e-4)
    config = config_file(tmp_path, "trar", "vqa")
    convert_file("torch2paddle", str(tmp_path / "full.pkl"), str(tmp_path / "full.pdparams"), "trar", "vqa",
                 config=config)
    for direction, name in (("torch2paddle", "full.pkl"), ("paddle2torch", "full.pdparams")):
        data = (tmp_path / name).read_bytes()
        cut = tmp_path / f"cut_{name}"
        cut.write_bytes(data[:len(data) // 2])
        code, _, err = run_cli(capsys, direction, cut, tmp_path / "never", "--MODEL", "trar", "--DATASET", "vqa",
                               "--config", config)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert str(cut) in err and ("truncated" in err or "not a readable checkpoint" in err)
    assert not any(p.name.startswith("never") for p in tmp_path.iterdir())


def test_an_output_folder_that_is_a_file_is_one_line(tmp_path, capsys):
    pytest.importorskip("torch")
    cfg = tiny_cfg("trar", "vqa")
    _, _, trainer, _ = trained("torch", cfg, steps=1)
    trainer.save(str(tmp_path / "full.pkl"), 1, 1e-4)
    (tmp_path / "taken").write_text("a file, not a folder")
    code, _, err = run_cli(capsys, "torch2paddle", tmp_path / "full.pkl", tmp_path / "taken" / "out.pdparams",
                           "--MODEL", "trar", "--DATASET", "vqa", "--config", config_file(tmp_path, "trar", "vqa"))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: {tmp_path / 'taken'}: a file where a folder is needed")


def test_files_of_the_other_framework_are_named(tmp_path, capsys):
    pdparams = tmp_path / "model.pdparams"
    pdparams.write_bytes(pickle.dumps({"embedding.weight": np.zeros((2, 2), np.float32)}, protocol=4))
    code, _, err = run_cli(capsys, "torch2paddle", pdparams, tmp_path / "o", "--MODEL", "trar", "--DATASET", "vqa")
    assert code == 2 and "paddle2torch" in err and str(pdparams) in err
    torch_file = tmp_path / "model.pkl"
    with zipfile.ZipFile(torch_file, "w") as zf:
        zf.writestr("model/data.pkl", pickle.dumps({}, protocol=2))
    code, _, err = run_cli(capsys, "paddle2torch", torch_file, tmp_path / "o", "--MODEL", "trar", "--DATASET", "vqa")
    assert code == 2 and "torch2paddle" in err and str(torch_file) in err


def test_destinations_named_for_the_other_framework_and_folders_as_sources_are_refused(tmp_path, capsys):
    pdparams = tmp_path / "model.pdparams"
    pdparams.write_bytes(pickle.dumps({"embedding.weight": np.zeros((2, 2), np.float32)}, protocol=4))
    code, _, err = run_cli(capsys, "paddle2torch", pdparams, tmp_path / "back.pdparams", "--MODEL", "trar",
                           "--DATASET", "vqa")
    assert code == 2 and "back.pdparams: a torch checkpoint is written here" in err and "name it <name>.pkl" in err
    torch_file = tmp_path / "model.pkl"
    with zipfile.ZipFile(torch_file, "w") as zf:
        zf.writestr("model/data.pkl", pickle.dumps({}, protocol=2))
    for dst in ("out.pkl", "out.pdopt"):
        code, _, err = run_cli(capsys, "torch2paddle", torch_file, tmp_path / dst, "--MODEL", "trar", "--DATASET",
                               "vqa")
        assert code == 2 and f"{dst}: a paddle checkpoint is written here" in err and "<stem>.pdparams" in err
    code, _, err = run_cli(capsys, "torch2paddle", tmp_path, tmp_path / "o", "--MODEL", "trar", "--DATASET", "vqa")
    assert code == 2 and f"{tmp_path} is a folder; expected a checkpoint file in it, e.g. " in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pdparams", "model.pkl"]


def test_config_that_does_not_fit_names_the_keys(tmp_path, capsys):
    pytest.importorskip("torch")
    cfg = tiny_cfg("trar", "vqa")
    _, _, trainer, _ = trained("torch", cfg, steps=1)
    trainer.save(str(tmp_path / "e1.pkl"), 1, 1e-4)
    other = config_file(tmp_path, "trar", "vqa", HIDDEN_SIZE=64, FF_SIZE=128)
    code, _, err = run_cli(capsys, "torch2paddle", tmp_path / "e1.pkl", tmp_path / "e1.pdparams", "--MODEL", "trar",
                           "--DATASET", "vqa", "--config", other)
    assert code == 2 and "HIDDEN_SIZE" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "e1.pdparams").exists()


# ---- one framework installed -----------------------------------------------------------------------------------

def _run_hidden(hidden, argv):
    script = (f"import sys\nfor name in {hidden!r}: sys.modules[name] = None\nfrom convert.cli import main\n"
              f"code = main({[str(a) for a in argv]!r})\n"
              f"print('IMPORTED', sorted(m for m in ('torch', 'paddle') if sys.modules.get(m) is not None))\n"
              f"sys.exit(code)\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def _torch_checkpoint_and_reference(tmp_path):
    """A 2-step tiny TRAR torch checkpoint (tmp_path/e.pkl) and its in-process torch2paddle conversion
    (tmp_path/ref.pdparams + .pdopt), the reference the hidden-framework runs are compared with; (src, config)."""
    cfg = tiny_cfg("trar", "vqa", DROPOUT_R=0.0)
    config = config_file(tmp_path, "trar", "vqa")
    _, _, trainer, _ = trained("torch", cfg, steps=2)
    src = str(tmp_path / "e.pkl")
    trainer.save(src, 2, 1e-4)
    convert_file("torch2paddle", src, str(tmp_path / "ref.pdparams"), "trar", "vqa", config=config)
    return src, config


@pytest.mark.parity
def test_conversion_with_only_one_framework(both_backends, tmp_path):
    """torch2paddle with torch hidden (layer types from the paddle model), paddle2torch with paddle hidden: the same
    files as with both installed."""
    src, config = _torch_checkpoint_and_reference(tmp_path)
    common = ["--MODEL", "trar", "--DATASET", "vqa", "--config", config]

    proc = _run_hidden(["torch"], ["torch2paddle", src, tmp_path / "np.pdparams"] + common)
    assert proc.returncode == 0, proc.stderr
    assert "layer types from the paddle model" in proc.stdout and "IMPORTED ['paddle']" in proc.stdout
    for ext in (".pdparams", ".pdopt"):
        assert_same_tree(read_pdparams(str(tmp_path / f"ref{ext}")), read_pdparams(str(tmp_path / f"np{ext}")), ext)

    proc = _run_hidden(["paddle"], ["paddle2torch", tmp_path / "ref.pdparams", tmp_path / "np.pkl"] + common)
    assert proc.returncode == 0, proc.stderr
    assert "layer types from the torch model" in proc.stdout and "IMPORTED ['torch']" in proc.stdout
    a, b = read_torch_checkpoint(src), read_torch_checkpoint(str(tmp_path / "np.pkl"))
    assert_same_tree(a["state_dict"], b["state_dict"])
    assert_same_tree(a["optimizer"]["state"], b["optimizer"]["state"])

    proc = _run_hidden(["torch", "paddle"], ["torch2paddle", src, tmp_path / "none.pdparams"] + common)
    assert proc.returncode == 2 and "neither torch nor paddle" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parity
def test_torch2paddle_without_paddle_writes_the_previous_pdopt_layout(both_backends, tmp_path):
    """Without paddle no Paddle names can be learnt: the .pdopt keeps the structured 'optimizer' entry (what the
    Paddle-name layout rebuilds to, bit for bit), and the output says so in one note."""
    src, config = _torch_checkpoint_and_reference(tmp_path)
    proc = _run_hidden(["paddle"], ["torch2paddle", src, tmp_path / "np.pdparams", "--MODEL", "trar", "--DATASET",
                                    "vqa", "--config", config])
    assert proc.returncode == 0, proc.stderr
    assert "IMPORTED ['torch']" in proc.stdout
    assert [line for line in proc.stdout.splitlines() if "paddle is not installed" in line] == \
        ["  note: " + NO_PADDLE_NOTE]
    old, new = read_pdparams(str(tmp_path / "np.pdopt")), read_pdparams(str(tmp_path / "ref.pdopt"))
    assert adam.PADDLE_NAMES_KEY not in old and adam.PADDLE_NAMES_KEY in new and "optimizer" not in new
    assert_same_tree(old["optimizer"], adam.paddle_entry(new), "optimizer")
    assert (old["epoch"], old["lr_base"]) == (new["epoch"], new["lr_base"]) == (2, 1e-4)


def test_config_hints_name_each_key_once():
    from formats.layout import config_hints
    both = config_hints(set(), set(), {"proj_norm.weight": ((2,), (3,)), "attflat_img.mlp.fc.linear.weight": ()})
    assert both == ["FLAT_MLP_SIZE / FLAT_OUT_SIZE / FLAT_GLIMPSES"]               # FLAT_OUT_SIZE not twice
    assert config_hints(set(), set(), {"proj_norm.weight": ()}) == ["FLAT_OUT_SIZE"]


def test_an_optimizer_file_given_for_weights_points_to_the_pdparams():
    from formats.layout import CheckpointMismatch, split_container
    with pytest.raises(CheckpointMismatch, match=r"x\.pdopt is a Paddle optimizer file .* give the \.pdparams beside"):
        split_container({"epoch": 1, "lr_base": 1e-4, "optimizer": {}}, "ckpts/x.pdopt")
    with pytest.raises(CheckpointMismatch, match=r"neither a checkpoint container"):
        split_container({"epoch": 1}, "ckpts/x.pkl")
