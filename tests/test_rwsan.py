"""RWSAN in both backends: the original's state-dict keys and shapes (written out from reference rwsan.md §5, not read
from the code), the parameter count, the forward against a numpy re-computation of reference §2-§4, batch size one,
the config (FF_SIZE derived, MAX_TOKEN 16, cross-key checks), and an original checkpoint ({'state_dict', 'optimizer',
'lr_base'}, no 'epoch', CUDA storages, torch 1.7-1.9 Adam state) loading into both backends and converting both ways.
Torch <-> paddle forward and gradient parity: tests/test_parity_models.py (EVAL_CASES, GRAD_CASES 'rwsan')."""
import json
import math
import warnings
import zipfile

import numpy as np
import pytest
import yaml

from core.config import ConfigError, load_config
from formats.layout import to_torch_layout
from formats.restricted_pickle import read_pdparams, read_torch_checkpoint
from tests.model_configs import TINY, TINY_REGIONS, layers_module, models_module, numpy_state, tiny_cfg
from tests.tolerances import FORWARD_ATOL

ANSWERS = 3129
TOKENS, ANSWERS_TINY = 20, 7
# Small but with every size distinct, and q/k widths (heads x midsize) both below and above HIDDEN_SIZE.
TINY_RWSAN = dict(SRWSA_LAYER=2, SGRWSA_LAYER=2, SRWSA_MIDSIZE=3, SGRWSA_SA_MIDSIZE=5, SGRWSA_GA_MIDSIZE=12,
                  DROPOUT_R=0.0, AMP=False)


def rwsan_tiny(**extra):
    return tiny_cfg("rwsan", "vqa", **{**TINY_RWSAN, **extra})


# ---- the original's state dict, reference §5 (symbolic shapes of its table) ----

def expected_state(T, A, H=512, heads=4, r_s=4, r_a=16, r_g=64, ff=2048, flat_mlp=256, flat_out=1024, feat=2048, E=300):
    """[(key, torch shape)] in the original's state_dict order."""
    def lin(name, out, inp):
        return [(f"{name}.weight", (out, inp)), (f"{name}.bias", (out,))]

    def norm(name, size):
        return [(f"{name}.a_2", (size,)), (f"{name}.b_2", (size,))]

    def att(name, r):
        return (lin(f"{name}.linear_v", H, H) + lin(f"{name}.linear_k", heads * r, H)
                + lin(f"{name}.linear_q", heads * r, H) + lin(f"{name}.linear_merge", H, H))

    def ffn(name):
        return lin(f"{name}.mlp.fc.linear", ff, H) + lin(f"{name}.mlp.linear", H, ff)

    enc, dec = "RWSA_layer.srwsa.denceenc1", "RWSA_layer.sgrwsa.dec1"
    keys = [("embedding.weight", (T, E)), ("lstm.weight_ih_l0", (4 * H, E)), ("lstm.weight_hh_l0", (4 * H, H)),
            ("lstm.bias_ih_l0", (4 * H,)), ("lstm.bias_hh_l0", (4 * H,))]
    keys += lin("img_feat_linear", H, feat)
    keys += att(f"{enc}.mhatt", r_s) + ffn(f"{enc}.ffn") + norm(f"{enc}.norm1", H) + norm(f"{enc}.norm2", H)
    keys += norm("RWSA_layer.srwsa.norm1", H) + norm("RWSA_layer.srwsa.norm2", H)
    keys += att(f"{dec}.mhatt1", r_a) + att(f"{dec}.mhatt2", r_g) + ffn(f"{dec}.ffn")
    keys += norm(f"{dec}.norm1", H) + norm(f"{dec}.norm2", H) + norm(f"{dec}.norm3", H)
    keys += norm("RWSA_layer.sgrwsa.norm1", H) + norm("RWSA_layer.sgrwsa.norm3", H)
    for flat in ("attflat_img", "attflat_lang"):
        keys += lin(f"{flat}.mlp.fc.linear", flat_mlp, H) + lin(f"{flat}.mlp.linear", 1, flat_mlp)
        keys += lin(f"{flat}.linear_merge", flat_out, H)
    keys += norm("proj_norm", flat_out) + lin("proj", A, flat_out)
    return keys


def in_backend_layout(fw, keys):
    """Paddle holds every Linear weight as [in, out]: every 2-D '.weight' but the embedding's and the LSTM's."""
    if fw == "torch":
        return keys
    return [(k, s[::-1] if k.endswith(".weight") and k != "embedding.weight" and not k.startswith("lstm.") else s)
            for k, s in keys]


def test_default_keys_shapes_order_and_count(backend):
    token_size = 7
    got = list(models_module(backend.name).state_dict_shapes(load_config("rwsan", "vqa"), token_size, ANSWERS).items())
    want = in_backend_layout(backend.name, expected_state(token_size, ANSWERS))
    assert len(want) == 73
    assert got == want
    # reference §5: 13,368,539 + 300 * token_size (19,540,439 with the VQA-v2 + VG vocabulary of 20,573 words)
    assert sum(math.prod(s) for _, s in got) == 13_368_539 + 300 * token_size
    assert 13_368_539 + 300 * 20_573 == 19_540_439


def test_depths_add_no_parameters_and_midsizes_shape_q_k_only():
    pytest.importorskip("torch")
    shapes = models_module("torch").state_dict_shapes
    base = shapes(load_config("rwsan", "vqa"), 5, ANSWERS)
    deeper = shapes(load_config("rwsan", "vqa", overrides={"SRWSA_LAYER": 5, "SGRWSA_LAYER": 1}), 5, ANSWERS)
    assert deeper == base
    cfg = load_config("rwsan", "vqa", overrides={"HIDDEN_SIZE": 64, "MULTI_HEAD": 2, "SRWSA_MIDSIZE": 7,
                                                "SGRWSA_SA_MIDSIZE": 9, "SGRWSA_GA_MIDSIZE": 40})
    assert list(shapes(cfg, 5, 11).items()) == expected_state(5, 11, H=64, heads=2, r_s=7, r_a=9, r_g=40, ff=256)


# ---- the forward against numpy, written from reference §2-§4 ----

def _linear(state, name, x):
    return x @ state[f"{name}.weight"].T + state[f"{name}.bias"]


def _norm(state, name, x):
    mean = x.mean(-1, keepdims=True)
    std = x.std(-1, ddof=1, keepdims=True)            # unbiased; eps added to the std
    return state[f"{name}.a_2"] * (x - mean) / (std + 1e-6) + state[f"{name}.b_2"]


def _softmax(x, axis):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def _rwsa(state, name, v, k, q, mask, heads):
    """mask (B, Lk) True at padding; filled with the original's -5e4."""
    B, H = v.shape[0], v.shape[-1]

    def split(x):
        return x.reshape(B, x.shape[1], heads, -1).transpose(0, 2, 1, 3)
    V, K, Q = split(_linear(state, f"{name}.linear_v", v)), split(_linear(state, f"{name}.linear_k", k)), \
        split(_linear(state, f"{name}.linear_q", q))
    scores = Q @ K.transpose(0, 1, 3, 2) / np.sqrt(Q.shape[-1])
    scores = np.where(mask[:, None, None, :], -5e4, scores)
    out = (_softmax(scores, -1) @ V).transpose(0, 2, 1, 3).reshape(B, -1, H)
    return _linear(state, f"{name}.linear_merge", out)


def _ffn(state, name, x):
    return _linear(state, f"{name}.mlp.linear", np.maximum(_linear(state, f"{name}.mlp.fc.linear", x), 0))


def _sa(s, n, x, xm, heads):
    x = _norm(s, f"{n}.norm1", x + _rwsa(s, f"{n}.mhatt", x, x, x, xm, heads))
    return _norm(s, f"{n}.norm2", x + _ffn(s, f"{n}.ffn", x))


def _sga(s, n, x, y, xm, ym, heads):
    y = _norm(s, f"{n}.norm1", y + _rwsa(s, f"{n}.mhatt1", y, y, y, ym, heads))
    y = _norm(s, f"{n}.norm2", y + _rwsa(s, f"{n}.mhatt2", x, x, y, xm, heads))
    return _norm(s, f"{n}.norm3", y + _ffn(s, f"{n}.ffn", y))


def _lstm(s, x):
    B, L, _ = x.shape
    H = s["lstm.weight_hh_l0"].shape[1]
    h, c, out = np.zeros((B, H)), np.zeros((B, H)), []
    sig = lambda z: 1 / (1 + np.exp(-z))   # noqa: E731
    for t in range(L):
        g = (x[:, t] @ s["lstm.weight_ih_l0"].T + s["lstm.bias_ih_l0"]
             + h @ s["lstm.weight_hh_l0"].T + s["lstm.bias_hh_l0"])
        i, f, gg, o = np.split(g, 4, axis=1)
        c = sig(f) * c + sig(i) * np.tanh(gg)
        h = sig(o) * np.tanh(c)
        out.append(h)
    return np.stack(out, 1)


def _attflat(s, n, x, mask):
    a = _ffn(s, n, x)[..., 0]      # AttFlat's MLP has FFN's layout: fc.linear, ReLU, linear (to one glimpse)
    a = _softmax(np.where(mask, -5e4, a), 1)
    return _linear(s, f"{n}.linear_merge", (a[..., None] * x).sum(1))


def reference_logits(s, cfg, frcn, ques):
    """RWSAN's forward as reference rwsan.md describes it, in float64 numpy; ``s`` in torch layout."""
    s = {k: v.astype(np.float64) for k, v in s.items()}
    heads = cfg.MULTI_HEAD
    lang_mask, img_mask = ques == 0, np.abs(frcn).sum(-1) == 0
    x = _lstm(s, s["embedding.weight"][ques])
    y = _linear(s, "img_feat_linear", frcn.astype(np.float64))
    enc, dec = "RWSA_layer.srwsa", "RWSA_layer.sgrwsa"
    for _ in range(cfg.SRWSA_LAYER):      # SRWSA: re-injection before the 2nd and 3rd pass, no outer residual
        x1 = _sa(s, f"{enc}.denceenc1", x, lang_mask, heads)
        x2 = _sa(s, f"{enc}.denceenc1", _norm(s, f"{enc}.norm1", x1 + x), lang_mask, heads)
        x = _sa(s, f"{enc}.denceenc1", _norm(s, f"{enc}.norm2", x2 + x), lang_mask, heads)
    for _ in range(cfg.SGRWSA_LAYER):     # SGRWSA: re-injection before the 2nd pass only, outer residual through norm3
        y1 = _sga(s, f"{dec}.dec1", x, y, lang_mask, img_mask, heads)
        y2 = _sga(s, f"{dec}.dec1", x, _norm(s, f"{dec}.norm1", y1 + y), lang_mask, img_mask, heads)
        y3 = _sga(s, f"{dec}.dec1", x, y2, lang_mask, img_mask, heads)
        y = _norm(s, f"{dec}.norm3", y3 + y)
    z = _attflat(s, "attflat_lang", x, lang_mask) + _attflat(s, "attflat_img", y, img_mask)
    return _linear(s, "proj", _norm(s, "proj_norm", z))


def tiny_batch(cfg, seed=0):
    """Four samples: full, padded rows and tokens, one row and one word, and nothing valid at all (every key masked:
    uniform attention with the original's -5e4 fill as with -1e9, never NaN)."""
    rng = np.random.default_rng(seed)
    rows, width = cfg.FEAT_SIZE["vqa"]["FRCN_FEAT_SIZE"]
    frcn = rng.standard_normal((4, rows, width)).astype(np.float32)
    ques = rng.integers(1, TOKENS, (4, cfg.MAX_TOKEN)).astype(np.int64)
    frcn[1, 6:], ques[1, 5:] = 0, 0
    frcn[2, 1:], ques[2, 1:] = 0, 0
    frcn[3], ques[3] = 0, 0
    zeros = np.zeros((4, 1), np.float32)
    return {"frcn_feat": frcn, "grid_feat": zeros, "bbox_feat": zeros, "ques_ix": ques}


def torch_layout_state(fw, net):
    state = numpy_state(fw, net)
    return state if fw == "torch" else to_torch_layout(state, layers_module(fw).linear_weight_names(net))


def test_forward_equals_the_reference_computation(backend):
    cfg = rwsan_tiny()
    backend.seed(0)
    net = backend.build_model(cfg, TOKENS, ANSWERS_TINY)
    batch = tiny_batch(cfg)
    got = backend.predict(net, batch)
    want = reference_logits(torch_layout_state(backend.name, net), cfg, batch["frcn_feat"], batch["ques_ix"])
    assert got.shape == (4, ANSWERS_TINY) and got.dtype == np.float32 and np.isfinite(got).all()
    assert np.max(np.abs(got - want)) <= FORWARD_ATOL


def test_each_residual_pattern_matters(backend):
    """The numpy reference tells the original's patterns from MCAN-like stacking: with the shared blocks run once
    (plain SA, plain SGA), the logits differ."""
    cfg = rwsan_tiny()
    backend.seed(0)
    net = backend.build_model(cfg, TOKENS, ANSWERS_TINY)
    batch = tiny_batch(cfg)
    state = torch_layout_state(backend.name, net)
    once = load_config("rwsan", "vqa", overrides={**TINY, **TINY_REGIONS, **TINY_RWSAN, "SRWSA_LAYER": 1,
                                                  "SGRWSA_LAYER": 1})
    assert np.max(np.abs(backend.predict(net, batch) - reference_logits(state, once, batch["frcn_feat"],
                                                                        batch["ques_ix"]))) > 1e-3


def test_batch_size_one_equals_its_row(backend):
    cfg = rwsan_tiny()
    backend.seed(1)
    net = backend.build_model(cfg, TOKENS, ANSWERS_TINY)
    batch = tiny_batch(cfg)
    full = backend.predict(net, batch)
    for i in range(4):
        one = backend.predict(net, {k: v[i:i + 1] for k, v in batch.items()})
        assert one.shape == (1, ANSWERS_TINY)
        assert np.max(np.abs(one[0] - full[i])) <= FORWARD_ATOL


def test_train_step_learns(backend):
    cfg = rwsan_tiny(DROPOUT_R=0.1)
    backend.set_device("")
    backend.seed(0)
    net = backend.build_model(cfg, TOKENS, ANSWERS_TINY)
    trainer = backend.make_trainer(net, cfg)
    batch = tiny_batch(cfg)
    batch["ans"] = (np.arange(4 * ANSWERS_TINY).reshape(4, ANSWERS_TINY) % 3 == 0).astype(np.float32)
    losses = [trainer.train_step(batch, 1e-3) for _ in range(6)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


# ---- config ----

def test_ff_size_is_four_hidden_unless_given():
    assert load_config("rwsan", "vqa").FF_SIZE == 2048
    assert load_config("rwsan", "vqa", overrides={"HIDDEN_SIZE": 64}).FF_SIZE == 256
    assert load_config("rwsan", "vqa", overrides={"HIDDEN_SIZE": 64, "FF_SIZE": 100}).FF_SIZE == 100
    cfg = load_config("rwsan", "vqa", overrides={"HIDDEN_SIZE": 64})
    assert cfg.copy(HIDDEN_SIZE=128).FF_SIZE == 512                    # re-derived on copy
    assert load_config("mcan_small", "vqa", overrides={"HIDDEN_SIZE": 64}).FF_SIZE == 2048   # MCAN keeps its key


def test_max_token_reaches_the_question_reader(tmp_path):
    from core.data.demo import ensure_demo_data
    from core.data.vqa import VQADataset
    root = str(tmp_path / "demo")
    ensure_demo_data(root)
    for model, n in (("rwsan", 16), ("mcan_small", 14)):
        cfg = load_config(model, "demo", overrides={"DATA_ROOT": root})
        assert cfg.MAX_TOKEN == n
        assert VQADataset(cfg, "val")[0]["ques_ix"].shape == (n,)


@pytest.mark.parametrize("overrides, key", [
    ({"FEAT_TYPE": "grid", "FEAT_SIZE": {"vqa": {"FRCN_FEAT_SIZE": [64, 2048]}}}, "FEAT_TYPE"),
    ({"USE_BBOX_FEAT": True}, "USE_BBOX_FEAT"),
    ({"FLAT_GLIMPSES": 2}, "FLAT_GLIMPSES"),
    ({"SRWSA_MIDSIZE": 0}, "SRWSA_MIDSIZE"),
    ({"SGRWSA_LAYER": 0}, "SGRWSA_LAYER"),
    ({"MAX_TOKEN": 0}, "MAX_TOKEN"),
])
def test_config_errors_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as info:
        load_config("rwsan", "vqa", overrides)
    message = str(info.value)
    assert message.startswith(key) and "\n" not in message, message


# ---- an original checkpoint: {'state_dict', 'optimizer', 'lr_base'}, CUDA storages, torch 1.7-1.9 Adam ----

def torch1_adam_state(optimizer):
    """torch 1.7-1.9's Adam state_dict from a current one: 'step' a Python int; param_groups with lr, betas, eps,
    weight_decay, amsgrad and params only."""
    sd = optimizer.state_dict()
    state = {i: {"step": int(s["step"]), "exp_avg": s["exp_avg"], "exp_avg_sq": s["exp_avg_sq"]}
             for i, s in sd["state"].items()}
    groups = [{k: g[k] for k in ("lr", "betas", "eps", "weight_decay", "amsgrad", "params")} for g in
              sd["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_as_on_a_gpu(obj, path):
    """torch.save (zip format), then every storage's location tag rewritten 'cpu' -> 'cuda:0' as a CUDA machine
    writes it (no GPU needed: only the pickled storage ids change)."""
    import torch
    plain = path + ".cpu"
    torch.save(obj, plain)
    cpu, cuda = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                assert cpu in data
                data = data.replace(cpu, cuda)
            dst.writestr(info, data)


def save_original(net, trainer, path, lr_base, prefix=""):
    """The original's epoch<k>.pkl from a torch-backend net and trainer (prefix 'module.': saved from DataParallel)."""
    save_as_on_a_gpu({"state_dict": {prefix + k: v.clone() for k, v in net.state_dict().items()},
                      "optimizer": torch1_adam_state(trainer.optimizer), "lr_base": lr_base}, path)


@pytest.fixture
def original_checkpoint(tmp_path):
    """(path, torch net, batch): an RWSAN trained two steps in torch, saved as the original's epoch<k>.pkl."""
    pytest.importorskip("torch")
    from backends import get_backend
    be = get_backend("torch")
    be.set_device("")
    be.seed(0)
    cfg = rwsan_tiny()
    net = be.build_model(cfg, TOKENS, ANSWERS_TINY)
    trainer = be.make_trainer(net, cfg)
    batch = tiny_batch(cfg)
    batch["ans"] = (np.arange(4 * ANSWERS_TINY).reshape(4, ANSWERS_TINY) % 2).astype(np.float32)
    for _ in range(2):
        trainer.train_step(batch, 1e-4)
    path = str(tmp_path / "epoch16.pkl")
    save_original(net, trainer, path, lr_base=4e-6)
    save_original(net, trainer, str(tmp_path / "data_parallel.pkl"), lr_base=4e-6, prefix="module.")
    with open(path, "rb") as f:
        assert b"cuda:0" in f.read()
    raw = read_torch_checkpoint(path)
    assert list(raw) == ["state_dict", "optimizer", "lr_base"] and isinstance(raw["optimizer"]["state"][0]["step"], int)
    return path, be.predict(net, batch), batch


def test_original_checkpoint_loads_into_both_backends(both_backends, original_checkpoint):
    path, expected, batch = original_checkpoint
    cfg = rwsan_tiny()
    for be in both_backends:
        net = be.build_model(cfg, TOKENS, ANSWERS_TINY)
        meta = be.load_checkpoint(net, path)
        assert meta["epoch"] is None and meta["lr_base"] == 4e-6
        assert np.max(np.abs(be.predict(net, batch) - expected)) <= FORWARD_ATOL
        net = be.build_model(cfg, TOKENS, ANSWERS_TINY)
        be.load_checkpoint(net, path.replace("epoch16.pkl", "data_parallel.pkl"))
        assert np.max(np.abs(be.predict(net, batch) - expected)) <= FORWARD_ATOL
        trainer = be.make_trainer(net, cfg)
        with warnings.catch_warnings():
            warnings.simplefilter("error")      # the Adam state is understood, not dropped
            trainer.load_optimizer_state(meta)


def test_original_checkpoint_converts_both_ways(both_backends, original_checkpoint, tmp_path, capsys):
    from convert.cli import main
    path, expected, batch = original_checkpoint
    cfg = rwsan_tiny()
    config = tmp_path / "tiny.yml"
    config.write_text(yaml.safe_dump(json.loads(json.dumps({**TINY, **TINY_REGIONS, **TINY_RWSAN}))))
    pdparams, back = tmp_path / "epoch16.pdparams", tmp_path / "back.pkl"
    assert main(["torch2paddle", path, str(pdparams), "--MODEL", "rwsan", "--DATASET", "vqa",
                 "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "optimizer state: converted" in out, out
    assert main(["paddle2torch", str(pdparams), str(back), "--MODEL", "rwsan", "--DATASET", "vqa",
                 "--config", str(config)]) == 0
    a, b = read_torch_checkpoint(path), read_torch_checkpoint(str(back))
    assert list(b["state_dict"]) == list(a["state_dict"])
    for key, value in a["state_dict"].items():
        assert np.array_equal(b["state_dict"][key], value), key
    for i, s in a["optimizer"]["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            assert np.array_equal(np.asarray(b["optimizer"]["state"][i][name]), s[name]), (i, name)
    assert set(read_pdparams(str(pdparams))) >= set(a["state_dict"])
    for be in both_backends:
        for file in (pdparams, back):
            net = be.build_model(cfg, TOKENS, ANSWERS_TINY)
            meta = be.load_checkpoint(net, str(file))
            assert meta["lr_base"] == 4e-6
            assert np.max(np.abs(be.predict(net, batch) - expected)) <= FORWARD_ATOL


@pytest.mark.parity
def test_training_continues_from_the_original_checkpoint_in_either_framework(both_backends, tmp_path):
    """2 torch steps saved as the original's file, then 2 steps in torch or paddle (the file read directly, or
    converted to .pdparams) == 4 uninterrupted torch steps; with Adam restarted they differ."""
    from convert.checkpoints import convert_file
    from tests.tolerances import TRAIN_RTOL
    cfg = rwsan_tiny(BATCH_SIZE=4)
    config = tmp_path / "tiny.yml"
    config.write_text(yaml.safe_dump(json.loads(json.dumps({**TINY, **TINY_REGIONS, **TINY_RWSAN, "BATCH_SIZE": 4}))))
    lrs = [1e-3, 2e-3, 2e-3, 1e-3]
    batches = []
    for i in range(4):
        batch = tiny_batch(cfg, seed=i)
        batch["ans"] = (np.random.default_rng(i).uniform(size=(4, ANSWERS_TINY)) > 0.6).astype(np.float32)
        batches.append(batch)

    def start(be, steps):
        be.set_device("")
        be.seed(0)
        net = be.build_model(cfg, TOKENS, ANSWERS_TINY)
        trainer = be.make_trainer(net, cfg)
        return net, trainer, [trainer.train_step(batches[i], lrs[i]) for i in range(steps)]

    torch_be, paddle_be = both_backends
    ref_net, _, ref_losses = start(torch_be, 4)
    ref_logits = torch_be.predict(ref_net, batches[0])
    net, trainer, _ = start(torch_be, 2)
    path = str(tmp_path / "epoch1.pkl")
    save_original(net, trainer, path, lr_base=1e-3)
    converted = str(tmp_path / "epoch1.pdparams")
    convert_file("torch2paddle", path, converted, "rwsan", "vqa", config=str(config))

    def resume(be, file, adam=True):
        net = be.build_model(cfg, TOKENS, ANSWERS_TINY)
        meta = be.load_checkpoint(net, file)
        trainer = be.make_trainer(net, cfg)
        if adam:
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)      # no "Adam's moments restart" warning
                trainer.load_optimizer_state(meta)
        return [trainer.train_step(batches[i], lrs[i]) for i in (2, 3)], be.predict(net, batches[0])

    scale = max(1.0, float(np.max(np.abs(ref_logits))))
    for be, file in ((torch_be, path), (paddle_be, path), (paddle_be, converted)):
        losses, logits = resume(be, file)
        for got, want in zip(losses, ref_losses[2:]):
            assert abs(got - want) <= TRAIN_RTOL * abs(want), (be.name, file)
        assert np.max(np.abs(logits - ref_logits)) <= TRAIN_RTOL * scale, (be.name, file)
    _, fresh = resume(paddle_be, path, adam=False)
    assert np.max(np.abs(fresh - ref_logits)) > 10 * TRAIN_RTOL * scale
