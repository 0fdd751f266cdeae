"""TRAR and MCAN nets, run once per backend: state-dict keys against the original's list, routing behaviour, masks.

Expected keys and shapes are written out from the original code's state dict (TRAR-VQA / openvqa, torch layout
[out, in]); paddle is checked against the same list with Linear weights transposed.
"""
import importlib
import types

import numpy as np
import pytest

from core.masks import span_mask_stack
from tests.model_configs import (
    ANSWER_SIZE,
    TOKEN_SIZE,
    build,
    forward,
    full_cfg,
    layers_module,
    load_state,
    make_batch,
    models_module,
    named_grads,
    numpy_state,
    predict,
    tiny_cfg,
    to_numpy,
    to_tensor,
)
from tests.tolerances import FORWARD_ATOL


@pytest.fixture
def fw(backend):
    """The framework name of the ``backend`` fixture (tests/conftest.py): 'torch' or 'paddle'."""
    return backend.name


# ---- the original state dict, by hand ----------------------------------------------------------------------------
# Entries are (key, torch shape, is_linear_weight).

def _linear(prefix, out_size, in_size, bias=True):
    entries = [(f"{prefix}.weight", (out_size, in_size), True)]
    if bias:
        entries.append((f"{prefix}.bias", (out_size,), False))
    return entries


def _norm(prefix, size):
    return [(f"{prefix}.a_2", (size,), False), (f"{prefix}.b_2", (size,), False)]


def _mhatt(prefix, h):
    return sum((_linear(f"{prefix}.{n}", h, h) for n in ("linear_v", "linear_k", "linear_q", "linear_merge")), [])


def _ffn(prefix, h, ff):
    return _linear(f"{prefix}.mlp.fc.linear", ff, h) + _linear(f"{prefix}.mlp.linear", h, ff)


def _attflat(prefix, h, mid, glimpses, out):
    return (_linear(f"{prefix}.mlp.fc.linear", mid, h) + _linear(f"{prefix}.mlp.linear", glimpses, mid)
            + _linear(f"{prefix}.linear_merge", out, h * glimpses))


def _routing(prefix, h, n_orders, pooling):
    pool = []
    if pooling == "fc":
        pool = _linear(f"{prefix}.pool", 1, h)
    elif pooling == "attention":
        pool = (_linear(f"{prefix}.pool.mlp.fc.linear", h, h) + _linear(f"{prefix}.pool.mlp.linear", 1, h)
                + _linear(f"{prefix}.pool.linear_merge", h, h) + _norm(f"{prefix}.pool.norm", h))
    return (pool + _linear(f"{prefix}.mlp.0", h // 2, h, bias=False) + _linear(f"{prefix}.mlp.2", n_orders, h // 2))


def original_state_dict(model, token_size, answer_size, layers=6, h=512, ff=2048, flat_mlp=512, flat_out=1024,
                        embed=300, frcn_in=2048, bbox=None, grid_in=None, n_orders=4, pooling="avg"):
    """The original's state dict in registration order (trar-openvqa.md section 3.1)."""
    keys = [("embedding.weight", (token_size, embed), False),
            ("lstm.weight_ih_l0", (4 * h, embed), False), ("lstm.weight_hh_l0", (4 * h, h), False),
            ("lstm.bias_ih_l0", (4 * h,), False), ("lstm.bias_hh_l0", (4 * h,), False)]
    if grid_in is not None:
        keys += _linear("adapter.grid_linear", h, grid_in)
    elif bbox is not None:
        bbox_in, bbox_emb = bbox
        keys += _linear("adapter.bbox_linear", bbox_emb, bbox_in)
        keys += _linear("adapter.frcn_linear", h, frcn_in + bbox_emb)
    else:
        keys += _linear("adapter.frcn_linear", h, frcn_in)
    for i in range(layers):
        p = f"backbone.enc_list.{i}"
        keys += _mhatt(f"{p}.mhatt", h) + _ffn(f"{p}.ffn", h, ff) + _norm(f"{p}.norm1", h) + _norm(f"{p}.norm2", h)
    for i in range(layers):
        p = f"backbone.dec_list.{i}"
        keys += _mhatt(f"{p}.mhatt1", h)
        if model == "trar":
            keys += _routing(f"{p}.mhatt1.routing_block", h, n_orders, pooling)
        keys += _mhatt(f"{p}.mhatt2", h) + _ffn(f"{p}.ffn", h, ff)
        keys += _norm(f"{p}.norm1", h) + _norm(f"{p}.norm2", h) + _norm(f"{p}.norm3", h)
    keys += _attflat("attflat_img", h, flat_mlp, 1, flat_out) + _attflat("attflat_lang", h, flat_mlp, 1, flat_out)
    keys += _norm("proj_norm", flat_out) + _linear("proj", answer_size, flat_out)
    return keys


def in_layout(fw, entries):
    """[(key, shape)] in this framework's layout: paddle Linear weights are [in, out]."""
    return [(k, tuple(reversed(s)) if fw == "paddle" and is_linear else s) for k, s, is_linear in entries]


FULL_T = 10
FULL_VARIANTS = {
    # name: (config args, original_state_dict args)
    "trar_vqa_soft_avg": (("trar", "vqa", {}), dict(model="trar", answer_size=3129)),
    "trar_vqa_attention": (("trar", "vqa", {"POOLING": "attention"}),
                           dict(model="trar", answer_size=3129, pooling="attention")),
    "trar_vqa_fc": (("trar", "vqa", {"POOLING": "fc"}), dict(model="trar", answer_size=3129, pooling="fc")),
    "trar_clevr": (("trar", "clevr", {}),
                   dict(model="trar", answer_size=28, grid_in=1024, n_orders=3, pooling="fc")),
    "mcan_small_vqa": (("mcan_small", "vqa", {}), dict(model="mcan", answer_size=3129)),
    "mcan_small_vqa_bbox": (("mcan_small", "vqa", {"USE_BBOX_FEAT": True}),
                            dict(model="mcan", answer_size=3129, bbox=(5, 2048))),
    "mcan_large_vqa": (("mcan_large", "vqa", {}),
                       dict(model="mcan", answer_size=3129, h=1024, ff=4096, flat_out=2048)),
    # LSAT has MCAN's parameters (reference lsat.md section 3)
    "lsat_vqa": (("lsat", "vqa", {}), dict(model="mcan", answer_size=3129)),
    "lsat_vqa_rotary": (("lsat", "vqa", {"LSAT_ROTARY": True}), dict(model="mcan", answer_size=3129)),
    "lsat_clevr": (("lsat", "clevr", {}), dict(model="mcan", answer_size=28, grid_in=1024)),
}
_shape_cache = {}


def full_shapes(fw, variant):
    if (fw, variant) not in _shape_cache:
        (model, dataset, overrides), expected_args = FULL_VARIANTS[variant]
        cfg = full_cfg(model, dataset, **overrides)
        shapes = models_module(fw).state_dict_shapes(cfg, FULL_T, expected_args["answer_size"])
        _shape_cache[(fw, variant)] = list(shapes.items())
    return _shape_cache[(fw, variant)]


@pytest.mark.parametrize("variant", sorted(FULL_VARIANTS))
def test_state_dict_equals_the_original(fw, variant):
    expected = in_layout(fw, original_state_dict(token_size=FULL_T, **FULL_VARIANTS[variant][1]))
    got = full_shapes(fw, variant)
    assert [k for k, _ in got] == [k for k, _ in expected], "keys or their order differ"
    assert got == expected


# Parameters excluding the embedding, from the original's default vqa TRAR (soft, avg), and per extra pool.
TRAR_VQA_PARAMS = 52_433_491
ATTENTION_POOL_PARAMS = 526_849
FC_POOL_PARAMS = 513


@pytest.mark.parametrize("variant, extra", [("trar_vqa_soft_avg", 0), ("trar_vqa_attention", 6 * ATTENTION_POOL_PARAMS),
                                            ("trar_vqa_fc", 6 * FC_POOL_PARAMS)])
def test_parameter_count(fw, variant, extra):
    total = sum(int(np.prod(shape)) for _, shape in full_shapes(fw, variant))
    assert total == TRAR_VQA_PARAMS + extra + 300 * FULL_T


TINY_VARIANTS = {
    "trar_vqa": (("trar", "vqa", {}), dict(model="trar", n_orders=3)),
    "trar_vqa_attention": (("trar", "vqa", {"POOLING": "attention"}), dict(model="trar", n_orders=3,
                                                                          pooling="attention")),
    "trar_vqa_fc_hard": (("trar", "vqa", {"POOLING": "fc", "ROUTING": "hard"}), dict(model="trar", n_orders=3,
                                                                                    pooling="fc")),
    "trar_clevr": (("trar", "clevr", {}), dict(model="trar", n_orders=3, pooling="fc", grid_in=20)),
    "mcan_small_bbox": (("mcan_small", "vqa", {"USE_BBOX_FEAT": True, "BBOXFEAT_EMB_SIZE": 6}),
                        dict(model="mcan", bbox=(5, 6))),
    "mcan_large": (("mcan_large", "vqa", {}), dict(model="mcan")),
    "lsat_vqa_rotary": (("lsat", "vqa", {"LSAT_WINDOW": 4, "LSAT_ROTARY": True}), dict(model="mcan")),
    "lsat_clevr": (("lsat", "clevr", {"LSAT_WINDOW": 5}), dict(model="mcan", grid_in=20)),
}


def tiny_expected(variant):
    _, args = TINY_VARIANTS[variant]
    return original_state_dict(token_size=TOKEN_SIZE, answer_size=ANSWER_SIZE, layers=2, h=32, ff=64, flat_mlp=16,
                               flat_out=48, embed=12, frcn_in=24, **args)


def tiny_variant_cfg(variant):
    (model, dataset, overrides), _ = TINY_VARIANTS[variant]
    return tiny_cfg(model, dataset, **overrides)


@pytest.mark.parametrize("variant", sorted(TINY_VARIANTS))
def test_tiny_state_dict_and_linear_weight_names(fw, variant):
    net = build(fw, tiny_variant_cfg(variant))
    expected = tiny_expected(variant)
    got = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    assert got == in_layout(fw, expected)
    assert layers_module(fw).linear_weight_names(net) == {k for k, _, is_linear in expected if is_linear}


@pytest.mark.parametrize("variant", sorted(TINY_VARIANTS))
def test_forward_shape_and_finite(fw, variant):
    cfg = tiny_variant_cfg(variant)
    logits = predict(fw, build(fw, cfg), make_batch(cfg))
    assert logits.shape == (3, ANSWER_SIZE) and logits.dtype == np.float32
    assert np.isfinite(logits).all()


def test_span_masks_are_a_buffer_but_not_saved(fw):
    net = build(fw, tiny_cfg())
    assert not any("span_masks" in k for k in net.state_dict())
    masks = to_numpy(fw, net.backbone.span_masks)
    np.testing.assert_array_equal(masks, span_mask_stack(4, [0, 1, 2]))


def test_state_dict_round_trip(fw):
    cfg = tiny_cfg()
    batch = make_batch(cfg)
    a, b = build(fw, cfg, seed=1), build(fw, cfg, seed=2)
    assert not np.allclose(predict(fw, a, batch), predict(fw, b, batch))
    load_state(fw, b, numpy_state(fw, a))
    np.testing.assert_array_equal(predict(fw, a, batch), predict(fw, b, batch))


def test_trar_with_order_zero_only_equals_mcan(fw):
    """ORDERS [0] with soft routing gives alpha = 1 for the global map: the decoder is MCAN's SGA."""
    trar_cfg = tiny_cfg("trar", "vqa", ORDERS=[0])
    mcan_cfg = tiny_cfg("mcan_small", "vqa", FEAT_SIZE={"vqa": {"FRCN_FEAT_SIZE": (16, 24)}})
    trar, mcan = build(fw, trar_cfg, seed=1), build(fw, mcan_cfg, seed=2)
    trar_state = numpy_state(fw, trar)
    mcan_state = numpy_state(fw, mcan)
    assert set(mcan_state) < set(trar_state)
    assert all("routing_block" in k for k in set(trar_state) - set(mcan_state))
    load_state(fw, trar, {**trar_state, **mcan_state})
    batch = make_batch(trar_cfg)
    np.testing.assert_allclose(predict(fw, trar, batch), predict(fw, mcan, batch), rtol=0, atol=FORWARD_ATOL)


@pytest.mark.parametrize("pooling", ["avg", "attention", "fc"])
@pytest.mark.parametrize("routing", ["soft", "hard"])
def test_batch_size_one(fw, pooling, routing):
    cfg = tiny_cfg(POOLING=pooling, ROUTING=routing)
    net = build(fw, cfg)
    batch = make_batch(cfg, batch_size=1)
    logits = predict(fw, net, batch)
    assert logits.shape == (1, ANSWER_SIZE) and np.isfinite(logits).all()
    logits = to_numpy(fw, forward(fw, net, batch, train=True))
    assert logits.shape == (1, ANSWER_SIZE) and np.isfinite(logits).all()


def routing_alphas(fw, net):
    return [to_numpy(fw, a) for a in net.routing_alphas()]


def test_routing_alphas_and_tau(fw):
    cfg = tiny_cfg(ROUTING="hard")
    net = build(fw, cfg)
    assert net.backbone.tau == 10.0  # TAU_MAX of configs/vqa/trar.yml
    net.set_tau(0.5)
    assert net.backbone.tau == 0.5
    keys = list(net.state_dict())
    predict(fw, net, make_batch(cfg))
    assert list(net.state_dict()) == keys  # the kept alphas are not state
    alphas = routing_alphas(fw, net)
    assert len(alphas) == cfg.LAYER
    for a in alphas:
        assert a.shape == (3, 3)
        np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=0, atol=1e-6)


def test_mcan_has_no_routing(fw):
    cfg = tiny_cfg("mcan_small", "vqa")
    net = build(fw, cfg)
    batch = make_batch(cfg)
    before = predict(fw, net, batch)
    net.set_tau(0.1)
    np.testing.assert_array_equal(predict(fw, net, batch), before)
    assert net.routing_alphas() == []


def test_hard_routing_at_eval_is_deterministic_and_follows_tau(fw):
    """At eval there is no Gumbel noise: alphas = softmax(log_softmax(z) / tau) = softmax(log(soft alphas) / tau)."""
    batch = make_batch(tiny_cfg())
    soft = build(fw, tiny_cfg(ROUTING="soft"), seed=3)
    hard = build(fw, tiny_cfg(ROUTING="hard"), seed=4)
    load_state(fw, hard, numpy_state(fw, soft))
    predict(fw, soft, batch)
    soft_alphas = routing_alphas(fw, soft)
    for tau in (1.0, 0.3):
        hard.set_tau(tau)
        first = predict(fw, hard, batch)
        np.testing.assert_array_equal(predict(fw, hard, batch), first)
        # the first decoder layer sees the same input in both nets (later ones only when tau = 1)
        logits = np.log(soft_alphas[0]) / tau
        expected = np.exp(logits - logits.max(axis=1, keepdims=True))
        np.testing.assert_allclose(routing_alphas(fw, hard)[0], expected / expected.sum(axis=1, keepdims=True),
                                   rtol=0, atol=1e-5)
    hard.set_tau(1.0)
    np.testing.assert_allclose(predict(fw, hard, batch), predict(fw, soft, batch), rtol=0, atol=FORWARD_ATOL)


def test_binarize_at_eval_is_one_hot_of_the_argmax(fw):
    batch = make_batch(tiny_cfg())
    plain = build(fw, tiny_cfg(ROUTING="hard", BINARIZE=False), seed=5)
    binary = build(fw, tiny_cfg(ROUTING="hard", BINARIZE=True), seed=6)
    load_state(fw, binary, numpy_state(fw, plain))
    first = predict(fw, binary, batch)
    np.testing.assert_array_equal(predict(fw, binary, batch), first)
    predict(fw, plain, batch)
    # first decoder layer: same input in both nets, so the one-hot sits at the argmax of the plain alphas
    plain_alphas = routing_alphas(fw, plain)[0]
    binary_alphas = routing_alphas(fw, binary)
    np.testing.assert_array_equal(binary_alphas[0], np.eye(3, dtype=np.float32)[plain_alphas.argmax(axis=1)])
    for a in binary_alphas:
        assert set(np.unique(a)) <= {0.0, 1.0} and (a.sum(axis=1) == 1).all()


def test_hard_routing_in_training_samples_gumbel_noise(fw):
    cfg = tiny_cfg(ROUTING="hard", DROPOUT_R=0.0, BINARIZE=True)
    net = build(fw, cfg)
    batch = make_batch(cfg)
    draws = []
    for _ in range(2):
        forward(fw, net, batch, train=True)
        draws.append(routing_alphas(fw, net)[0])
    assert not np.allclose(draws[0], draws[1])
    for a in draws:  # BINARIZE acts at eval only
        assert not set(np.unique(a)) <= {0.0, 1.0}
        np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=0, atol=1e-6)


def test_fully_masked_window_gives_finite_logits(fw):
    cfg = tiny_cfg(ORDERS=[1], DROPOUT_R=0.0)
    batch = make_batch(cfg, padded_rows=((0, 16), (1, 7)))  # sample 0: no image at all; sample 1: corner window
    net = build(fw, cfg)
    assert np.isfinite(predict(fw, net, batch)).all()
    assert np.isfinite(to_numpy(fw, forward(fw, net, batch, train=True))).all()


# ---- numpy references of the small blocks ---------------------------------------------------------------------

def np_layer_norm(x, a, b, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    std = np.sqrt(((x - mean) ** 2).sum(-1, keepdims=True) / (x.shape[-1] - 1))
    return a * (x - mean) / (std + eps) + b


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_layer_norm_is_openvqa_formula(fw):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8)).astype(np.float32)
    norm = layers_module(fw).LayerNorm(8)
    a = rng.standard_normal(8).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    load_state(fw, norm, {"a_2": a, "b_2": b})
    expected = np_layer_norm(x.astype(np.float64), a, b)
    got = to_numpy(fw, norm(to_tensor(fw, x)))                  # as in training (the parameters want gradients)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    framework = importlib.import_module(fw)
    with framework.no_grad():                                   # as in evaluation (another code path in paddle)
        got = to_numpy(fw, norm(to_tensor(fw, x)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def _np_layer_norm_grads(x, a, b, weights, step=1e-6):
    """Central finite differences (float64) of sum(np_layer_norm(x, a, b) * weights) for x, a and b."""
    def loss(x_, a_, b_):
        return float((np_layer_norm(x_, a_, b_) * weights).sum())
    grads = []
    for index, array in enumerate((x, a, b)):
        grad = np.zeros_like(array)
        for i in np.ndindex(array.shape):
            args = [x.copy(), a.copy(), b.copy()]
            args[index][i] += step
            up = loss(*args)
            args[index][i] -= 2 * step
            grad[i] = (up - loss(*args)) / (2 * step)
        grads.append(grad)
    return grads


def test_layer_norm_gradients_match_finite_differences(fw):
    """The training path (torch: a written-out backward; paddle: row-scale and bias-add layers) against float64
    finite differences of the numpy formula."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 8))
    a = rng.standard_normal(8)
    b = rng.standard_normal(8)
    weights = rng.standard_normal((2, 3, 8))
    norm = layers_module(fw).LayerNorm(8)
    load_state(fw, norm, {"a_2": a.astype(np.float32), "b_2": b.astype(np.float32)})
    xt = to_tensor(fw, x.astype(np.float32))
    if fw == "torch":
        xt.requires_grad_(True)
    else:
        xt.stop_gradient = False
    out = norm(xt)
    (out * to_tensor(fw, weights.astype(np.float32))).sum().backward()
    np.testing.assert_allclose(to_numpy(fw, out), np_layer_norm(x, a, b), rtol=0, atol=1e-5)
    want_x, want_a, want_b = _np_layer_norm_grads(x, a, b, weights)
    got = named_grads(fw, norm)
    np.testing.assert_allclose(to_numpy(fw, xt.grad), want_x, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["a_2"], want_a, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["b_2"], want_b, rtol=1e-4, atol=1e-5)


def test_make_mask(fw):
    feat = np.ones((2, 3, 4), np.float32)
    feat[0, 2] = 0
    feat[1, 0] = 0
    feat[1, 1, 0] = -1
    feat[1, 1, 1:] = 0   # one non-zero entry: not padding
    mask = to_numpy(fw, layers_module(fw).make_mask(to_tensor(fw, feat)))
    np.testing.assert_array_equal(mask, np.array([[[[False, False, True]]], [[[True, False, False]]]]))


def torch_layout(fw, net, state):
    linear = layers_module(fw).linear_weight_names(net)
    return {k: v.T if fw == "paddle" and k in linear else v for k, v in state.items()}


def np_routing_block(w, x, pooling, n_orders):
    def linear(name, inp):
        out = inp @ w[f"{name}.weight"].T
        return out + w[f"{name}.bias"] if f"{name}.bias" in w else out
    if pooling == "avg":
        pooled = x.mean(axis=1)
    elif pooling == "fc":
        pooled = (x * np_softmax(linear("pool", x), axis=1)).sum(axis=1)
    else:
        att = linear("pool.mlp.linear", np.maximum(linear("pool.mlp.fc.linear", x), 0))
        pooled = linear("pool.linear_merge", (x * np_softmax(att, axis=1)).sum(axis=1))
        pooled = np_layer_norm(pooled, w["pool.norm.a_2"], w["pool.norm.b_2"])
    logits = linear("mlp.2", np.maximum(linear("mlp.0", pooled), 0))
    assert logits.shape[1] == n_orders
    return np_softmax(logits)


@pytest.mark.parametrize("pooling", ["avg", "attention", "fc"])
def test_sa_routing_block_matches_numpy(fw, pooling):
    """One decoder self-attention block at eval (soft routing) against a numpy re-derivation, including a query
    row whose every key is masked (the -1e9 fill makes it attend uniformly to all keys)."""
    cfg = tiny_cfg(POOLING=pooling, ORDERS=[0, 1, 2])
    net = build(fw, cfg, seed=7)
    net.eval()
    block = net.backbone.dec_list[0].mhatt1
    prefix = "backbone.dec_list.0.mhatt1."
    state = torch_layout(fw, net, numpy_state(fw, net))
    w = {k[len(prefix):]: v.astype(np.float64) for k, v in state.items() if k.startswith(prefix)}

    rng = np.random.default_rng(1)
    b, n, h, heads = 2, 16, 32, 4
    x = rng.standard_normal((b, n, h)).astype(np.float32)
    img_mask = np.zeros((b, 1, 1, n), bool)
    img_mask[1, 0, 0, [10, 11, 14, 15]] = True      # query 15's order-1 window is all padding
    masks = np.logical_or(img_mask, span_mask_stack(4, [0, 1, 2]))   # (B, L, N, N)
    assert masks[1, 1, 15].all() and not masks[1, 0, 15].all()

    got = to_numpy(fw, block(*[to_tensor(fw, x)] * 3, to_tensor(fw, masks), 1.0))

    xd = x.astype(np.float64)
    alphas = np_routing_block({k[len("routing_block."):]: v for k, v in w.items() if k.startswith("routing_block.")},
                              xd, pooling, 3)

    def proj(name, inp):
        out = inp @ w[f"{name}.weight"].T + w[f"{name}.bias"]
        return out.reshape(b, n, heads, h // heads).transpose(0, 2, 1, 3)
    v, k, q = proj("linear_v", xd), proj("linear_k", xd), proj("linear_q", xd)
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(h // heads)                    # (B, heads, N, N)
    mixed = np.zeros_like(scores)
    for order in range(3):
        filled = np.where(masks[:, order][:, None], -1e9, scores)
        mixed += alphas[:, order, None, None, None] * np_softmax(filled)
    out = (mixed @ v).transpose(0, 2, 1, 3).reshape(b, n, h)
    expected = out @ w["linear_merge.weight"].T + w["linear_merge.bias"]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(to_numpy(fw, net.backbone.dec_list[0].mhatt1.routing_block.last_alphas), alphas,
                               rtol=0, atol=1e-6)


# ---- construction errors ------------------------------------------------------------------------------------

def cfg_namespace(cfg, **changes):
    """The config as a plain namespace, to reach the nets' own checks past load_config's validation."""
    return types.SimpleNamespace(**{**cfg.to_dict(), **changes})


def test_img_scale_must_match_the_feature_rows(fw):
    cfg = cfg_namespace(tiny_cfg(), IMG_SCALE=5)
    with pytest.raises(ValueError, match="IMG_SCALE 5"):
        models_module(fw).build_net(cfg, TOKEN_SIZE, ANSWER_SIZE)


def test_unknown_model(fw):
    cfg = cfg_namespace(tiny_cfg(), MODEL_USE="nope")
    with pytest.raises(ValueError, match="MODEL_USE 'nope'"):
        models_module(fw).build_net(cfg, TOKEN_SIZE, ANSWER_SIZE)


def test_pretrained_embedding(fw):
    cfg = tiny_cfg()
    emb = np.arange(TOKEN_SIZE * 12, dtype=np.float32).reshape(TOKEN_SIZE, 12)
    net = build(fw, cfg, pretrained_emb=emb)
    np.testing.assert_array_equal(to_numpy(fw, net.embedding.weight), emb)
    with pytest.raises(ValueError, match=r"pretrained_emb has shape \(20, 11\)"):
        build(fw, cfg, pretrained_emb=emb[:, :11])


# ---- paddle only: LSTM parameter names ------------------------------------------------------------------------

TORCH_LSTM_KEYS = ["lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0"]
PADDLE_CELL_KEYS = ["lstm.0.cell.weight_ih", "lstm.0.cell.weight_hh", "lstm.0.cell.bias_ih", "lstm.0.cell.bias_hh"]


def test_paddle_lstm_state_dict_uses_torch_names_and_loads_either_alias():
    pytest.importorskip("paddle")
    cfg = tiny_cfg()
    net = build("paddle", cfg, seed=1)
    keys = list(net.state_dict())
    assert [k for k in keys if "lstm" in k] == TORCH_LSTM_KEYS
    source = numpy_state("paddle", build("paddle", cfg, seed=2))
    batch = make_batch(cfg)
    expected = predict("paddle", build("paddle", cfg, seed=2), batch)
    rest = {k: v for k, v in source.items() if not k.startswith("lstm.")}
    lstm = [source[k] for k in TORCH_LSTM_KEYS]
    for names in (TORCH_LSTM_KEYS, PADDLE_CELL_KEYS, TORCH_LSTM_KEYS + PADDLE_CELL_KEYS):
        target = build("paddle", cfg, seed=3)
        state = {**rest, **dict(zip(names, lstm + lstm))}
        missing, unexpected = target.set_state_dict(state)
        assert missing == [] and unexpected == []
        np.testing.assert_array_equal(predict("paddle", target, batch), expected)


# ---- initialisation: both frameworks draw PyTorch's defaults (the originals train from them) ------------------------

def test_initialisation_follows_pytorch_defaults(fw):
    cfg = full_cfg("mcan_small")
    net = build(fw, cfg)
    state = {k: to_numpy(fw, v) for k, v in net.state_dict().items()}
    w = state["backbone.enc_list.0.mhatt.linear_q.weight"]        # 512 x 512, fan_in 512
    b = state["backbone.enc_list.0.mhatt.linear_q.bias"]
    bound = 1 / np.sqrt(512)
    # U(-bound, bound): every value inside, standard deviation bound / sqrt(3) (Xavier would give 0.0442 vs 0.0255)
    assert np.abs(w).max() <= bound and abs(w.std() - bound / np.sqrt(3)) < 0.02 * bound
    assert np.abs(b).max() <= bound and b.std() > 0.4 * bound          # non-zero biases (paddle's default is zeros)
    emb = state["embedding.weight"]                                    # N(0, 1)
    assert abs(emb.std() - 1.0) < 0.05 and abs(emb.mean()) < 0.05
    lstm = state["lstm.weight_hh_l0"]                                  # U(-1/sqrt(512), 1/sqrt(512))
    assert np.abs(lstm).max() <= bound and abs(lstm.std() - bound / np.sqrt(3)) < 0.02 * bound


@pytest.mark.parametrize("model", ["mcan_small", "trar"])
def test_paddle_gpu_formulas_equal_the_cpu_ones(model, monkeypatch):
    """Paddle's Linear and LayerNorm train through PyLayers with matmul-with-ones sums on the CPU, and through
    paddle's own ops on a GPU (where AMP's auto_cast knows them). No GPU here: the GPU branch is chosen by
    pretending the tensors are not on the CPU, and its gradients must equal the CPU branch's."""
    pytest.importorskip("paddle")
    import paddle

    from backends.paddle import cpu_ops
    cfg = tiny_cfg(model, DROPOUT_R=0.0)
    batch = make_batch(cfg)
    weights = np.random.default_rng(3).standard_normal((3, ANSWER_SIZE)).astype(np.float32)
    results = []
    for cpu_branch in (True, False):
        if not cpu_branch:
            monkeypatch.setattr(cpu_ops, "_by_matmul", lambda t: False)
        net = build("paddle", cfg)
        out = forward("paddle", net, batch, train=True)
        (out * paddle.to_tensor(weights)).sum().backward()
        results.append((to_numpy("paddle", out), named_grads("paddle", net)))
    (out_cpu, grads_cpu), (out_gpu, grads_gpu) = results
    np.testing.assert_allclose(out_gpu, out_cpu, rtol=1e-5, atol=1e-6)
    assert grads_cpu.keys() == grads_gpu.keys()
    for name, grad in grads_cpu.items():
        assert grad is not None, name
        np.testing.assert_allclose(grads_gpu[name], grad, rtol=1e-4, atol=1e-6, err_msg=name)
