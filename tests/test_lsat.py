"""LSAT in both backends (reference lsat.md section 3): the window masks against hand-worked rows, the rotary tables by
hand, the local attention against a numpy re-computation, the mask each decoder layer's image self-attention gets,
MCAN's parameter names (an MCAN-with-grid checkpoint loads strictly), LSAT == MCAN when the window covers every token,
rotary on vs off, and the config's one-line errors.

Torch <-> paddle: the parity tool here (every module, every gradient, two Adam steps); forward and gradient parity
also in tests/test_parity_models.py (EVAL_CASES, GRAD_CASES 'lsat*'); convert and cross-framework resume:
tests/test_convert.py; export to Paddle Inference and ONNX: tests/test_deploy.py (KINDS 'lsat'); keys and shapes at
the shipped sizes: tests/test_models.py (FULL_VARIANTS 'lsat_*').
"""
import math

import numpy as np
import pytest

from core.config import ConfigError, load_config
from core.local_windows import rotary_tables, window_mask
from tests.model_configs import (
    build,
    capture,
    load_state,
    make_batch,
    models_module,
    numpy_state,
    predict,
    tiny_cfg,
    to_numpy,
    to_tensor,
)
from tests.tolerances import FORWARD_ATOL

TOKEN_SIZE, ANSWERS = 20, 7


@pytest.fixture
def fw(backend):
    return backend.name


# ---- masks, written out by hand (64 tokens = the 8x8 grid; True = blocked) ---------------------------------------
# (window, look back, look forward, query) -> the keys it may attend, worked out on paper from blk(p) = p // window.
HAND_ROWS = {
    (8, 1, 1, 0): range(0, 16),       # row 0 of the grid: itself and row 1
    (8, 1, 1, 20): range(8, 32),      # row 2: rows 1, 2, 3
    (8, 1, 1, 63): range(48, 64),     # row 7: rows 6, 7
    (4, 1, 1, 0): range(0, 8),        # half rows: block 0 and block 1
    (4, 1, 1, 5): range(0, 12),       # block 1: blocks 0, 1, 2
    (4, 1, 1, 62): range(56, 64),     # block 15: blocks 14, 15
    (16, 1, 1, 0): range(0, 32),      # two rows per block: blocks 0, 1
    (16, 1, 1, 17): range(0, 48),     # block 1: blocks 0, 1, 2
    (16, 1, 1, 50): range(32, 64),    # block 3: blocks 2, 3
    (32, 1, 1, 0): range(0, 64),      # two blocks: every query sees both
    (32, 1, 1, 40): range(0, 64),
    (8, 1, 0, 20): range(8, 24),      # back only: rows 1, 2
    (8, 0, 2, 20): range(16, 40),     # forward only: rows 2, 3, 4
    (8, 0, 0, 9): range(8, 16),       # its own row only
    (64, 0, 0, 33): range(0, 64),     # one block: global
}


@pytest.mark.parametrize("window, back, forward, query", sorted(HAND_ROWS))
def test_window_mask_rows_by_hand(window, back, forward, query):
    mask = window_mask(64, window, back, forward)
    assert mask.shape == (64, 64) and mask.dtype == bool
    expected = np.ones(64, bool)
    expected[list(HAND_ROWS[(window, back, forward, query)])] = False
    np.testing.assert_array_equal(mask[query], expected)


def test_window_mask_counts_per_row():
    """W = 8, look 1 / 1: rows 0 and 7 of the grid see 16 keys, the others 24 (a 3x8 band)."""
    open_keys = (~window_mask(64, 8, 1, 1)).sum(axis=1)
    np.testing.assert_array_equal(open_keys, [16] * 8 + [24] * 48 + [16] * 8)
    assert (~window_mask(64, 16, 1, 1)).sum(axis=1).tolist() == [32] * 16 + [48] * 32 + [32] * 16


@pytest.mark.parametrize("args, message", [((64, 7), "LSAT_WINDOW 7 must divide the 64"),
                                           ((64, 0), "LSAT_WINDOW must be an integer >= 1"),
                                           ((64, 8, -1, 1), "LSAT_LOOK_BACKWARD must be an integer >= 0"),
                                           ((64, 8, 1, 1.5), "LSAT_LOOK_FORWARD must be an integer >= 0")])
def test_window_mask_refuses_bad_values(args, message):
    with pytest.raises(ValueError, match=message):
        window_mask(*args)


def test_rotary_tables_by_hand():
    """head size 4: frequencies 1 and 10000 ** (-2 / 4) = 0.01, repeated over the two halves; token p turns by p."""
    cos, sin = rotary_tables(3, 4)
    assert cos.shape == sin.shape == (3, 4) and cos.dtype == sin.dtype == np.float32
    for p in range(3):
        angles = [p * 1.0, p * 0.01, p * 1.0, p * 0.01]
        np.testing.assert_allclose(cos[p], [math.cos(a) for a in angles], rtol=0, atol=1e-6)
        np.testing.assert_allclose(sin[p], [math.sin(a) for a in angles], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="even head size"):
        rotary_tables(3, 5)


# ---- the nets ----------------------------------------------------------------------------------------------------
# An 8x8 grid of 24-d cells at the tiny sizes of tests/model_configs.py
GRID_8 = dict(IMG_SCALE=8, FEAT_SIZE={"vqa": {"FRCN_FEAT_SIZE": (64, 24)}})


def lsat_cfg(**overrides):
    return tiny_cfg("lsat", "vqa", **{**GRID_8, **overrides})


def mcan_grid_cfg(**overrides):
    return tiny_cfg("mcan_small", "vqa", FEAT_TYPE="grid", **{**GRID_8, **overrides})


def test_mcan_grid_checkpoint_loads_strictly(fw):
    """Same keys, order and shapes as MCAN on the same grid; masks and rotary tables are not saved."""
    mcan_state = numpy_state(fw, build(fw, mcan_grid_cfg(), seed=2))
    for extra in ({}, {"LSAT_ROTARY": True}):
        lsat = build(fw, lsat_cfg(**extra), seed=1)
        state = numpy_state(fw, lsat)
        assert [(k, v.shape) for k, v in state.items()] == [(k, v.shape) for k, v in mcan_state.items()]
        load_state(fw, lsat, mcan_state)                           # strict
        np.testing.assert_array_equal(numpy_state(fw, lsat)["backbone.dec_list.1.mhatt1.linear_k.weight"],
                                      mcan_state["backbone.dec_list.1.mhatt1.linear_k.weight"])


@pytest.mark.parametrize("window, look", [(32, 1), (64, 0)])
def test_a_window_over_every_token_is_mcan(fw, window, look):
    """W = 32 with look 1 / 1, or W = 64 with look 0 / 0, on 64 tokens: LSAT on MCAN's weights is MCAN, to the bit;
    a window of one grid row is not."""
    mcan = build(fw, mcan_grid_cfg(), seed=2)
    batch = make_batch(mcan_grid_cfg(), batch_size=3)
    expected = predict(fw, mcan, batch)
    lsat = build(fw, lsat_cfg(LSAT_WINDOW=window, LSAT_LOOK_BACKWARD=look, LSAT_LOOK_FORWARD=look), seed=1)
    load_state(fw, lsat, numpy_state(fw, mcan))
    np.testing.assert_array_equal(predict(fw, lsat, batch), expected)
    local = build(fw, lsat_cfg(LSAT_WINDOW=8), seed=1)
    load_state(fw, local, numpy_state(fw, mcan))
    assert np.abs(predict(fw, local, batch) - expected).max() > 1e-3


def hand_mask(n, window, back, forward):
    """The rule of reference lsat.md section 3, one entry at a time (True = blocked)."""
    mask = np.zeros((n, n), bool)
    for p in range(n):
        for q in range(n):
            mask[p, q] = not (-back <= q // window - p // window <= forward)
    return mask


def test_every_decoder_layer_gets_the_window_mask_or_padding(fw):
    cfg = lsat_cfg(LSAT_WINDOW=16, LSAT_LOOK_BACKWARD=0, LSAT_LOOK_FORWARD=1)
    net = build(fw, cfg)
    batch = make_batch(cfg, batch_size=3, padded_rows=((1, 7),))
    seen = []

    def hook(_layer, inputs):
        seen.append(to_numpy(fw, inputs[3]))
    hooks = [dec.mhatt1.register_forward_pre_hook(hook) for dec in net.backbone.dec_list]
    predict(fw, net, batch)
    for h in hooks:
        h.remove()
    padding = np.zeros((3, 1, 1, 64), bool)
    padding[1, :, :, 64 - 7:] = True
    expected = padding | hand_mask(64, 16, 0, 1)
    assert len(seen) == cfg.LAYER
    for got in seen:
        np.testing.assert_array_equal(np.broadcast_to(got, expected.shape), expected)
    np.testing.assert_array_equal(to_numpy(fw, net.backbone.window_mask).astype(bool), hand_mask(64, 16, 0, 1))


def _linear(fw, state, prefix, x):
    w = state[f"{prefix}.weight"]
    return x @ (w if fw == "paddle" else w.T) + state[f"{prefix}.bias"]


def numpy_local_attention(fw, state, prefix, x, mask, heads, rotary):
    """MHAtt by hand: per-head q, k, v; rotary x cos + rotate_half(x) sin with angle p * 10000 ** (-2 i / dh);
    scores / sqrt(dh) filled with -1e9 where masked; softmax; merge."""
    b, n, h = x.shape
    dh = h // heads

    def split(t):
        return t.reshape(b, n, heads, dh).transpose(0, 2, 1, 3).astype(np.float64)
    q, k, v = (split(_linear(fw, state, f"{prefix}.linear_{name}", x)) for name in "qkv")
    if rotary:
        angle = np.array([[p * 10000.0 ** (-2 * (i % (dh // 2)) / dh) for i in range(dh)] for p in range(n)])

        def turn(t):
            half = np.concatenate([-t[..., dh // 2:], t[..., :dh // 2]], axis=-1)
            return t * np.cos(angle) + half * np.sin(angle)
        q, k = turn(q), turn(k)
    scores = np.where(mask, -1e9, q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh))
    att = np.exp(scores - scores.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    merged = (att @ v).transpose(0, 2, 1, 3).reshape(b, n, h).astype(np.float32)
    return _linear(fw, state, f"{prefix}.linear_merge", merged)


@pytest.mark.parametrize("rotary", [False, True])
def test_local_attention_against_numpy(fw, rotary):
    """The first decoder layer's image self-attention, from the decoder's input, against numpy."""
    cfg = lsat_cfg(LSAT_WINDOW=8, LSAT_ROTARY=rotary, DROPOUT_R=0.0)
    net = build(fw, cfg, seed=3)
    batch = make_batch(cfg, batch_size=2, padded_rows=((1, 5),))
    store = {}
    dec = net.backbone.dec_list[0]
    handles = [dec.mhatt1.register_forward_pre_hook(lambda _l, inputs: store.update(x=inputs[0])),
               capture(fw, dec.mhatt1, store, "out")]
    predict(fw, net, batch)
    for h in handles:
        h.remove()
    x = to_numpy(fw, store["x"])
    padding = np.zeros((2, 1, 1, 64), bool)
    padding[1, :, :, 64 - 5:] = True
    expected = numpy_local_attention(fw, numpy_state(fw, net), "backbone.dec_list.0.mhatt1", x,
                                     padding | hand_mask(64, 8, 1, 1), cfg.MULTI_HEAD, rotary)
    np.testing.assert_allclose(to_numpy(fw, store["out"]), expected, rtol=0, atol=FORWARD_ATOL)


def test_rotary_changes_the_outputs(fw):
    plain = build(fw, lsat_cfg(LSAT_WINDOW=8), seed=1)
    turned = build(fw, lsat_cfg(LSAT_WINDOW=8, LSAT_ROTARY=True), seed=1)
    load_state(fw, turned, numpy_state(fw, plain))
    batch = make_batch(lsat_cfg(), batch_size=2)
    assert np.abs(predict(fw, turned, batch) - predict(fw, plain, batch)).max() > 1e-3


# MCAN-small's parameters at the shipped vqa sizes, excluding the embedding (README model table, measured on MCAN)
MCAN_SMALL_VQA_PARAMS = 51_640_891


@pytest.mark.parametrize("rotary", [False, True])
def test_parameter_count_is_mcan_smalls(fw, rotary):
    cfg = load_config("lsat", "vqa", {"LSAT_ROTARY": rotary})
    shapes = models_module(fw).state_dict_shapes(cfg, 10, 3129)
    assert sum(int(np.prod(shape)) for shape in shapes.values()) == MCAN_SMALL_VQA_PARAMS + 300 * 10


def test_batch_of_one_and_clevr_grid(fw):
    cfg = tiny_cfg("lsat", "clevr", LSAT_WINDOW=5, LSAT_ROTARY=True)
    net = build(fw, cfg)
    batch = make_batch(cfg, batch_size=2)
    both = predict(fw, net, batch)
    one = predict(fw, net, {k: v[1:] for k, v in batch.items()})
    assert both.shape == (2, ANSWERS) and np.isfinite(both).all()
    np.testing.assert_allclose(one[0], both[1], rtol=0, atol=FORWARD_ATOL)


def test_build_from_tensors_is_framework_native(fw):
    """The Net takes the four inputs of the vqa task as tensors of the backend (models/__init__.py's build_net)."""
    cfg = lsat_cfg()
    net = models_module(fw).build_net(cfg, TOKEN_SIZE, ANSWERS)
    net.eval()
    batch = make_batch(cfg, batch_size=1)
    inputs = [to_tensor(fw, batch[k]) for k in ("frcn_feat", "grid_feat", "bbox_feat", "ques_ix")]
    assert tuple(net(*inputs).shape) == (1, ANSWERS)


@pytest.mark.parity
def test_parity_tool_forward_gradients_and_training_steps(both_backends, tmp_path, capsys):
    """python -m convert parity on local windows with rotary positions: every module's output, every gradient and two
    Adam steps (losses, logits after) agree within the project's tolerances (convert/tolerances.py)."""
    import json

    from convert.cli import main
    from tests.test_convert import config_file
    report_path = tmp_path / "report.json"
    config = config_file(tmp_path, "lsat", "vqa", LSAT_WINDOW=4, LSAT_LOOK_FORWARD=0, LSAT_ROTARY=True)
    code = main(["parity", "--MODEL", "lsat", "--DATASET", "vqa", "--config", config, "--steps", "2",
                 "--report", str(report_path)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    report = json.loads(report_path.read_text())
    assert report["passed"] and report["first_failure"] is None
    assert [r["layer"] for r in report["train"]["rows"]] == ["step 1 loss", "step 2 loss", "logits after 2 steps"]
    assert any(r["layer"].startswith("backbone.dec_list.1.mhatt1") for r in report["forward"]["rows"])


# ---- the config --------------------------------------------------------------------------------------------------

def test_shipped_defaults():
    cfg = load_config("lsat", "vqa")
    assert (cfg.MODEL_USE, cfg.IMG_SCALE, cfg.LSAT_WINDOW, cfg.LSAT_LOOK_BACKWARD, cfg.LSAT_LOOK_FORWARD,
            cfg.LSAT_ROTARY) == ("lsat", 8, 8, 1, 1, False)
    assert load_config("lsat", "clevr").LSAT_WINDOW == 14


@pytest.mark.parametrize("overrides, starts", [
    ({"LSAT_WINDOW": 7}, "LSAT_WINDOW: 7 must divide the 64 image tokens"),
    ({"LSAT_WINDOW": 0}, "LSAT_WINDOW: must be >= 1"),
    ({"LSAT_LOOK_BACKWARD": -1}, "LSAT_LOOK_BACKWARD: must be >= 0"),
    ({"LSAT_LOOK_FORWARD": "two"}, "LSAT_LOOK_FORWARD"),
    ({"LSAT_ROTARY": "maybe"}, "LSAT_ROTARY"),
    ({"LSAT_ROTARY": True, "HIDDEN_SIZE": 24, "MULTI_HEAD": 8}, "LSAT_ROTARY: rotary positions need an even head"),
    ({"IMG_SCALE": 6}, "IMG_SCALE: 6x6 grid needs FEAT_SIZE.vqa.FRCN_FEAT_SIZE rows = 36, got 64"),
    ({"FEAT_TYPE": "region"}, "FEAT_TYPE: LSAT needs 'grid' features"),
])
def test_bad_values_are_one_line_errors(overrides, starts):
    with pytest.raises(ConfigError) as info:
        load_config("lsat", "vqa", overrides)
    message = str(info.value)
    assert message.startswith(starts) and "\n" not in message
