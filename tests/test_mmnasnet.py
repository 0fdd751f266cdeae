"""MMNasNet in both backends: openvqa's keys and shapes, parameter counts, the relation geometry inside the net,
the configs, and torch <-> paddle parity of the forward pass and the gradients."""
import importlib
import math
import os
import re

import numpy as np
import pytest
import yaml

from core.geometry import relation_geometry_batch
from formats.layout import to_paddle_layout, to_torch_layout
from tests.model_configs import (
    INPUT_KEYS,
    build,
    capture,
    layers_module,
    load_state,
    models_module,
    named_grads,
    numpy_state,
    to_numpy,
    to_tensor,
)
from tests.tolerances import FORWARD_ATOL, GRAD_RTOL, gradient_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# §1.6 of the reference: the searched architecture, written out here (not read from the configs under test).
ENC = ["SA", "SA", "SA", "SA", "FFN", "FFN", "FFN", "FFN", "SA", "FFN", "FFN", "FFN"]
DEC = ["GA", "GA", "FFN", "FFN", "GA", "FFN", "RSA", "GA", "FFN", "GA", "RSA", "FFN", "RSA", "SA", "FFN", "RSA",
       "GA", "FFN"]
ANSWERS = 3129


class Cfg:
    """The config keys the net reads; a stand-in for core.config.Config so these tests need no config files."""

    def __init__(self, **values):
        self.__dict__.update(values)


def model_cfg(hidden, heads, rel_hbase, rel_size, flat_mlp, flat_out, embed=300, frcn=(100, 2048), dropout=0.1,
              arch=None):
    return Cfg(MODEL_USE="mmnasnet", DATA_FORMAT="vqa", USE_BBOX_FEAT=False, BBOXFEAT_EMB_SIZE=2048,
               FEAT_SIZE={"vqa": {"FRCN_FEAT_SIZE": frcn, "BBOX_FEAT_SIZE": (frcn[0], 5)}},
               HIDDEN_SIZE=hidden, MULTI_HEAD=heads, REL_HBASE=rel_hbase, REL_SIZE=rel_size, DROPOUT_R=dropout,
               FLAT_MLP_SIZE=flat_mlp, FLAT_GLIMPSES=1, FLAT_OUT_SIZE=flat_out, WORD_EMBED_SIZE=embed, FF_SIZE=2048,
               ARCH=arch or {"enc": list(ENC), "dec": list(DEC)})


SMALL = dict(hidden=512, heads=8, rel_hbase=64, rel_size=64, flat_mlp=512, flat_out=1024)
LARGE = dict(hidden=1024, heads=8, rel_hbase=128, rel_size=64, flat_mlp=1024, flat_out=2048)
TINY = dict(hidden=32, heads=4, rel_hbase=8, rel_size=8, flat_mlp=32, flat_out=48, embed=16, frcn=(6, 24))


# ---- expected state dict, written from the reference's §1.9 list ----

def expected_state(token_size, h, ffn_mid, flat_mlp, flat_out, rel_size, hhead):
    """[(key, torch shape)] in registration order, for the §1.6 architecture."""
    att = [(f"mhatt.linear_{n}.{p}", (h, h) if p == "weight" else (h,))
           for n in ("v", "k", "q", "merge") for p in ("weight", "bias")]
    norm = [("norm.a_2", (h,)), ("norm.b_2", (h,))]
    ffn = [("mlp.fc.linear.weight", (ffn_mid, h)), ("mlp.fc.linear.bias", (ffn_mid,)),
           ("mlp.linear.weight", (h, ffn_mid)), ("mlp.linear.bias", (h,))] + norm
    rsa = att + [("mhatt.linear_r.weight", (hhead, rel_size)), ("mhatt.linear_r.bias", (hhead,))] + norm
    enc_sa, dec_att, dec_rsa = {0, 1, 2, 3, 8}, {0, 1, 4, 7, 9, 13, 16}, {6, 10, 12, 15}
    keys = [("embedding.weight", (token_size, 300)),
            ("lstm.weight_ih_l0", (4 * h, 300)), ("lstm.weight_hh_l0", (4 * h, h)),
            ("lstm.bias_ih_l0", (4 * h,)), ("lstm.bias_hh_l0", (4 * h,)),
            ("adapter.frcn_linear.weight", (h, 2048)), ("adapter.frcn_linear.bias", (h,))]
    for i in range(12):
        keys += [(f"backbone.enc_list.{i}.{k}", s) for k, s in (att + norm if i in enc_sa else ffn)]
    for j in range(18):
        block = att + norm if j in dec_att else rsa if j in dec_rsa else ffn
        keys += [(f"backbone.dec_list.{j}.{k}", s) for k, s in block]
    keys += [("linear_rel.weight", (rel_size, 4)), ("linear_rel.bias", (rel_size,))]
    for flat in ("attflat_img", "attflat_lang"):
        keys += [(f"{flat}.mlp.fc.linear.weight", (flat_mlp, h)), (f"{flat}.mlp.fc.linear.bias", (flat_mlp,)),
                 (f"{flat}.mlp.linear.weight", (1, flat_mlp)), (f"{flat}.mlp.linear.bias", (1,)),
                 (f"{flat}.linear_merge.weight", (flat_out, h)), (f"{flat}.linear_merge.bias", (flat_out,))]
    keys += [("proj_norm.a_2", (flat_out,)), ("proj_norm.b_2", (flat_out,)),
             ("proj.weight", (ANSWERS, flat_out)), ("proj.bias", (ANSWERS,))]
    return keys


def in_backend_layout(name, keys):
    """Paddle stores every Linear weight as [in, out]: here every 2-D '.weight' except the embedding and the LSTM."""
    if name == "torch":
        return keys
    return [(k, s[::-1] if k.endswith(".weight") and k != "embedding.weight" and not k.startswith("lstm.") else s)
            for k, s in keys]


def test_small_keys_shapes_order_and_count(backend):
    token_size = 7
    got = list(models_module(backend.name).state_dict_shapes(model_cfg(**SMALL), token_size, ANSWERS).items())
    want = in_backend_layout(backend.name, expected_state(token_size, 512, 2048, 512, 1024, 64, 8))
    assert len(want) == 277
    assert [k for k, _ in got] == [k for k, _ in want]
    assert got == want
    # reference §1.8: small = 53,741,467 + 300 * T
    assert sum(math.prod(s) for _, s in got) == 53_741_467 + 300 * token_size


def test_large_keys_shapes_and_count_torch():
    pytest.importorskip("torch")  # meta device: no memory; paddle would allocate 205M parameters
    token_size = 11
    got = list(models_module("torch").state_dict_shapes(model_cfg(**LARGE), token_size, ANSWERS).items())
    assert got == expected_state(token_size, 1024, 4096, 1024, 2048, 64, 8)
    # reference §1.8: large = 204,994,971 + 300 * T
    assert sum(math.prod(s) for _, s in got) == 204_994_971 + 300 * token_size


# ---- numeric tests (framework glue from tests/model_configs.py) ----

def tiny_inputs(batch=3, rows=6, feat=24, tokens=14, token_size=20, seed=0):
    """Numpy inputs with padded regions (zero features and boxes) and padded question tokens."""
    rng = np.random.default_rng(seed)
    valid = [rows, rows - 2, 3][:batch]
    frcn = np.zeros((batch, rows, feat), np.float32)
    boxes = np.zeros((batch, rows, 4), np.float32)
    ques = np.zeros((batch, tokens), np.int64)
    for b, n in enumerate(valid):
        frcn[b, :n] = rng.standard_normal((n, feat)).astype(np.float32)
        x1, y1 = rng.uniform(0, 400, (2, n))
        w, h = rng.uniform(5, 250, (2, n))
        boxes[b, :n] = np.stack([x1, y1, x1 + w, y1 + h], axis=1)
        ques[b, :5 + 3 * b] = rng.integers(1, token_size, 5 + 3 * b)
    return {"frcn_feat": frcn, "grid_feat": np.zeros((batch, 1), np.float32), "bbox_feat": boxes, "ques_ix": ques}


def tiny_net(fw, dropout=0.1, seed=0):
    return build(fw, model_cfg(**TINY, dropout=dropout), seed=seed, token_size=20, answer_size=10)


def run(fw, net, inputs, **extra):
    """Logits (a framework tensor) in the net's current mode; ``extra`` holds keyword inputs such as rel_geom."""
    args = [to_tensor(fw, inputs[k]) for k in INPUT_KEYS]
    return net(*args, **{k: to_tensor(fw, v) for k, v in extra.items()})


def test_net_geometry_matches_core(backend):
    fw = backend.name
    boxes = tiny_inputs()["bbox_feat"]
    net_geometry = importlib.import_module(f"backends.{fw}.models.mmnasnet").relation_geometry
    got = to_numpy(fw, net_geometry(to_tensor(fw, boxes)))
    want = relation_geometry_batch(boxes)
    assert got.shape == (3, 6, 6, 4)
    assert np.max(np.abs(got - want)) <= FORWARD_ATOL


def test_given_geometry_equals_computed_and_is_used(backend):
    fw = backend.name
    net = tiny_net(fw)
    net.eval()
    inputs = tiny_inputs()
    plain = to_numpy(fw, run(fw, net, inputs))
    given = to_numpy(fw, run(fw, net, inputs, rel_geom=relation_geometry_batch(inputs["bbox_feat"])))
    assert plain.shape == (3, 10) and np.all(np.isfinite(plain))
    assert np.max(np.abs(plain - given)) <= FORWARD_ATOL
    # a different geometry must change the answer, or the argument would be ignored silently
    other = to_numpy(fw, run(fw, net, inputs, rel_geom=np.zeros((3, 6, 6, 4), np.float32)))
    assert np.max(np.abs(other - plain)) > 1e-3


@pytest.mark.parametrize("arch, message", [
    ({"enc": ["SA", "RSA"], "dec": ["GA"]}, "ARCH.enc: unknown op 'RSA'"),
    ({"enc": ["SA"], "dec": ["GA", "XX"]}, "ARCH.dec: unknown op 'XX'"),
    ({"enc": [], "dec": ["GA"]}, "ARCH.enc: expected a non-empty list"),
    ({"enc": ["SA"]}, "ARCH: expected a mapping"),
])
def test_bad_arch_is_a_clear_error(backend, arch, message):
    cfg = model_cfg(**dict(TINY, arch=arch))
    with pytest.raises(ValueError, match=re.escape(message)):
        models_module(backend.name).build_net(cfg, 20, 10)


def test_rel_hbase_must_divide_hidden(backend):
    cfg = model_cfg(**dict(TINY, rel_hbase=5))
    with pytest.raises(ValueError, match="REL_HBASE"):
        models_module(backend.name).build_net(cfg, 20, 10)


# ---- torch <-> paddle ----

INTERMEDIATES = ("backbone", "attflat_lang", "attflat_img", "proj_norm")


def torch_linear_weights(net):
    return layers_module("torch").linear_weight_names(net)


def twin_nets(dropout):
    """A torch net and a paddle net (built from another seed) holding the torch weights."""
    torch_net = tiny_net("torch", dropout=dropout)
    paddle_net = tiny_net("paddle", dropout=dropout, seed=1)
    load_state("paddle", paddle_net, to_paddle_layout(numpy_state("torch", torch_net), torch_linear_weights(torch_net)))
    return torch_net, paddle_net


def named_outputs(fw, net, inputs, extra):
    store = {}
    hooks = [capture(fw, getattr(net, n), store, n) for n in INTERMEDIATES]
    try:
        store["logits"] = run(fw, net, inputs, **extra)
    finally:
        for hook in hooks:
            hook.remove()
    lang, img = store.pop("backbone")
    store.update({"encoder_output": lang, "decoder_output": img})
    return {n: to_numpy(fw, v) for n, v in store.items()}


@pytest.mark.parity
@pytest.mark.parametrize("given_geometry", [False, True])
def test_forward_parity(both_backends, given_geometry):
    nets = dict(zip(("torch", "paddle"), twin_nets(dropout=0.1)))
    inputs = tiny_inputs()
    extra = {"rel_geom": relation_geometry_batch(inputs["bbox_feat"])} if given_geometry else {}
    outs = {}
    for fw, net in nets.items():
        net.eval()
        outs[fw] = named_outputs(fw, net, inputs, extra)
    names = ["encoder_output", "decoder_output", "attflat_lang", "attflat_img", "proj_norm", "logits"]
    assert sorted(outs["torch"]) == sorted(outs["paddle"]) == sorted(names)
    for n in names:
        diff = np.max(np.abs(outs["torch"][n] - outs["paddle"][n]))
        assert diff <= FORWARD_ATOL, f"{n}: max abs diff {diff:.3g} > {FORWARD_ATOL}"


@pytest.mark.parity
def test_gradient_parity(both_backends):
    # train mode with DROPOUT_R 0 (Paddle 3.3.1 on CPU cannot backprop through paddle.nn.LSTM in eval mode)
    torch_net, paddle_net = twin_nets(dropout=0.0)
    inputs = tiny_inputs()
    weights = np.random.default_rng(5).standard_normal((3, 10)).astype(np.float32)
    grads = {}
    for fw, net in (("torch", torch_net), ("paddle", paddle_net)):
        net.train()
        (run(fw, net, inputs) * to_tensor(fw, weights)).sum().backward()
        grads[fw] = named_grads(fw, net)
    torch_grads = grads["torch"]
    paddle_grads = to_torch_layout(grads["paddle"], torch_linear_weights(torch_net))
    assert sorted(torch_grads) == sorted(paddle_grads)
    assert len(torch_grads) == len(expected_state(20, 32, 128, 32, 48, 8, 4))
    assert all(g is not None for g in list(torch_grads.values()) + list(paddle_grads.values()))
    largest = max(float(np.max(np.abs(g))) for g in torch_grads.values())
    for n, ref in torch_grads.items():
        error = gradient_error(ref, paddle_grads[n], largest)
        assert error <= GRAD_RTOL, \
            f"{n}: gradient max |diff| / (largest gradient {largest:.3g} + |grad|) = {error:.3g} > {GRAD_RTOL}"
    # the relation path must carry gradient, or its parity would be vacuous
    assert np.max(np.abs(torch_grads["linear_rel.weight"])) > 0
    # and the criterion must still see a 1% error on the relation layer, whose gradient is 1/30 of the largest
    key = "backbone.dec_list.10.mhatt.linear_r.weight"
    assert gradient_error(torch_grads[key], paddle_grads[key] * np.float32(1.01), largest) > GRAD_RTOL


# ---- configs ----

def read_yml(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return yaml.safe_load(f)


TRAINING = {"BATCH_SIZE": 64, "WARMUP_EPOCH": 3, "MAX_EPOCH": 13, "LR_DECAY_LIST": [10, 12], "LR_DECAY_R": 0.2,
            "GRAD_NORM_CLIP": 1.0, "LOSS_FUNC": "bce", "LOSS_REDUCTION": "sum", "OPT": "Adam",
            "OPT_PARAMS": {"betas": "(0.9, 0.98)", "eps": "1e-9"}, "FEAT_TYPE": "region", "USE_BBOX_FEAT": False,
            "BBOX_NORMALIZE": False, "MODEL_USE": "mmnasnet",
            "FEAT_SIZE": {"vqa": {"FRCN_FEAT_SIZE": [100, 2048], "BBOX_FEAT_SIZE": [100, 5]}},
            "ARCH": {"enc": ENC, "dec": DEC}}


@pytest.mark.parametrize("rel, sizes", [
    ("configs/vqa/mmnasnet_small.yml", {"HIDDEN_SIZE": 512, "MULTI_HEAD": 8, "REL_HBASE": 64, "REL_SIZE": 64,
                                        "FLAT_MLP_SIZE": 512, "FLAT_OUT_SIZE": 1024, "LR_BASE": 1.2e-4}),
    ("configs/vqa/mmnasnet_large.yml", {"HIDDEN_SIZE": 1024, "MULTI_HEAD": 8, "REL_HBASE": 128, "REL_SIZE": 64,
                                        "FLAT_MLP_SIZE": 1024, "FLAT_OUT_SIZE": 2048, "LR_BASE": 7e-5}),
])
def test_vqa_configs_match_the_reference(rel, sizes):
    data = read_yml(rel)
    for key, value in {**TRAINING, **sizes}.items():
        assert data.get(key) == value, f"{rel}: {key} = {data.get(key)!r}, expected {value!r}"


def test_demo_config_is_tiny_and_keeps_every_op_kind():
    data = read_yml("configs/demo/mmnasnet_small.yml")
    assert (data["HIDDEN_SIZE"], data["MULTI_HEAD"], data["REL_HBASE"], data["REL_SIZE"]) == (64, 4, 16, 16)
    assert data["FEAT_SIZE"]["vqa"] == {"FRCN_FEAT_SIZE": [12, 48], "BBOX_FEAT_SIZE": [12, 5]}
    assert data["USE_GLOVE"] is False and data["BBOX_NORMALIZE"] is False and data["MODEL_USE"] == "mmnasnet"
    assert set(data["ARCH"]["enc"]) == {"SA", "FFN"} and set(data["ARCH"]["dec"]) == {"SA", "GA", "RSA", "FFN"}


@pytest.mark.parametrize("model, dataset", [("mmnasnet_small", "vqa"), ("mmnasnet_large", "vqa"),
                                            ("mmnasnet_small", "demo")])
def test_configs_load(model, dataset):
    from core.config import load_config
    cfg = load_config(model, dataset)
    assert cfg.MODEL_USE == "mmnasnet"
    assert cfg.ARCH == read_yml(f"configs/{dataset}/{model}.yml")["ARCH"]
    assert cfg.HIDDEN_SIZE % cfg.REL_HBASE == 0
