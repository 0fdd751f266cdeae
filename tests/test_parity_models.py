"""Torch <-> paddle parity of the TRAR and MCAN nets: same weights (initialised in torch, copied to paddle with the
Linear weights transposed), same numpy inputs, both frameworks in one process.

Eval mode: every named intermediate (encoder output, decoder output, pooled features, routing weights, logits) within
FORWARD_ATOL. Train mode with dropout 0 and soft routing: every parameter's gradient element within
GRAD_RTOL * (largest + |torch gradient|), largest the net's largest gradient (convert/tolerances.py gradient_error;
train mode because paddle 3.3.1 on CPU cannot backprop through nn.LSTM in eval mode).
"""
import numpy as np
import pytest

from core.dropout_masks import STREAM as DROPOUT_MASKS
from tests.model_configs import (
    ANSWER_SIZE,
    TOKEN_SIZE,
    build,
    capture,
    forward,
    full_cfg,
    layers_module,
    load_state,
    make_batch,
    named_grads,
    numpy_state,
    tiny_cfg,
    to_numpy,
    to_tensor,
)
from tests.tolerances import FORWARD_ATOL, GRAD_RTOL, gradient_error

pytestmark = pytest.mark.parity


def torch_to_paddle(torch_net):
    """{key: numpy} in paddle's layout: Linear weights (found by module type) transposed, everything else as is."""
    linear = layers_module("torch").linear_weight_names(torch_net)
    return {k: v.T.copy() if k in linear else v for k, v in numpy_state("torch", torch_net).items()}


def twin_nets(cfg, token_size=TOKEN_SIZE, answer_size=ANSWER_SIZE, seed=0):
    torch_net = build("torch", cfg, seed=seed, token_size=token_size, answer_size=answer_size)
    paddle_net = build("paddle", cfg, seed=seed, token_size=token_size, answer_size=answer_size)
    load_state("paddle", paddle_net, torch_to_paddle(torch_net))
    return torch_net, paddle_net


def backbone_of(net):
    """The sublayer registered just before attflat_img, which returns (question features, image features): its name
    is the original's (openvqa: backbone; RWSAN: RWSA_layer)."""
    names = [name for name, _ in net.named_children()]
    return getattr(net, names[names.index("attflat_img") - 1])


def run_with_intermediates(fw, net, batch, train=False):
    """Logits plus the outputs of the backbone, the two poolings and (TRAR) the routing weights, as numpy."""
    store = {}
    hooks = [capture(fw, backbone_of(net), store, "backbone"),
             capture(fw, net.attflat_lang, store, "attflat_lang"),
             capture(fw, net.attflat_img, store, "attflat_img")]
    try:
        logits = forward(fw, net, batch, train=train)
    finally:
        for h in hooks:
            h.remove()
    lang, img = store.pop("backbone")
    out = {"encoder_output": lang, "decoder_output": img, **store, "logits": logits}
    out = {name: to_numpy(fw, value) for name, value in out.items()}
    for i, alphas in enumerate(net.routing_alphas()):
        out[f"routing_alphas.{i}"] = to_numpy(fw, alphas)
    return out, logits


def assert_all_close(expected, got, atol, path="outputs"):
    """Walk dicts/lists/arrays together; fail naming the first path that differs. Unknown types are an error."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and set(got) == set(expected), f"{path}: keys {sorted(got)} != {sorted(expected)}"
        for key in expected:
            assert_all_close(expected[key], got[key], atol, f"{path}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(expected), f"{path}: lengths differ"
        for i, (e, g) in enumerate(zip(expected, got)):
            assert_all_close(e, g, atol, f"{path}.{i}")
    elif isinstance(expected, np.ndarray):
        assert isinstance(got, np.ndarray) and got.shape == expected.shape, \
            f"{path}: shape {getattr(got, 'shape', None)} != {expected.shape}"
        assert np.isfinite(expected).all() and np.isfinite(got).all(), f"{path}: non-finite values"
        diff = float(np.max(np.abs(got.astype(np.float64) - expected))) if expected.size else 0.0
        assert diff <= atol, f"{path}: max abs difference {diff:.3g} > {atol:g}"
    else:
        raise TypeError(f"{path}: cannot compare values of type {type(expected).__name__}")


EVAL_CASES = {
    "trar_soft_avg": ("trar", "vqa", {}),
    "trar_soft_attention": ("trar", "vqa", {"POOLING": "attention"}),
    "trar_soft_fc": ("trar", "vqa", {"POOLING": "fc"}),
    "trar_hard_avg": ("trar", "vqa", {"ROUTING": "hard", "TAU_MAX": 0.5}),
    "trar_hard_attention_binarize": ("trar", "vqa", {"ROUTING": "hard", "POOLING": "attention", "BINARIZE": True}),
    "trar_clevr_hard_fc_binarize": ("trar", "clevr", {}),
    "mcan_small": ("mcan_small", "vqa", {}),
    "mcan_small_bbox": ("mcan_small", "vqa", {"USE_BBOX_FEAT": True, "BBOXFEAT_EMB_SIZE": 6}),
    "mcan_large": ("mcan_large", "vqa", {}),
    "rwsan": ("rwsan", "vqa", {"SRWSA_LAYER": 2, "SGRWSA_LAYER": 2, "SGRWSA_GA_MIDSIZE": 12}),
    "lsat": ("lsat", "vqa", {"LSAT_WINDOW": 4}),
    "lsat_rotary": ("lsat", "vqa", {"LSAT_WINDOW": 2, "LSAT_LOOK_FORWARD": 0, "LSAT_ROTARY": True}),
    "lsat_clevr_rotary": ("lsat", "clevr", {"LSAT_WINDOW": 5, "LSAT_ROTARY": True}),
}


@pytest.mark.parametrize("case", sorted(EVAL_CASES))
def test_eval_forward_parity(both_backends, case):
    model, dataset, overrides = EVAL_CASES[case]
    cfg = tiny_cfg(model, dataset, **overrides)
    torch_net, paddle_net = twin_nets(cfg)
    batch = make_batch(cfg, batch_size=4)
    expected, _ = run_with_intermediates("torch", torch_net, batch)
    got, _ = run_with_intermediates("paddle", paddle_net, batch)
    assert_all_close(expected, got, FORWARD_ATOL, case)


def test_eval_forward_parity_full_size_trar(both_backends):
    """The shipped vqa TRAR (52M parameters, 3129 answers), two samples."""
    cfg = full_cfg("trar", "vqa")
    torch_net, paddle_net = twin_nets(cfg, token_size=50, answer_size=3129)
    batch = make_batch(cfg, batch_size=2)
    batch["ques_ix"] %= 50
    batch["ques_ix"][0, 5:] = 0
    expected, _ = run_with_intermediates("torch", torch_net, batch)
    got, _ = run_with_intermediates("paddle", paddle_net, batch)
    assert_all_close(expected, got, FORWARD_ATOL, "trar_full")


GRAD_CASES = {
    "trar_soft_avg": ("trar", "vqa", {}),
    "trar_soft_attention": ("trar", "vqa", {"POOLING": "attention"}),
    "trar_soft_fc_clevr": ("trar", "clevr", {"ROUTING": "soft", "BINARIZE": False}),
    "mcan_small": ("mcan_small", "vqa", {}),
    "rwsan": ("rwsan", "vqa", {"SRWSA_LAYER": 2, "SGRWSA_LAYER": 2, "SGRWSA_GA_MIDSIZE": 12}),
    "lsat": ("lsat", "vqa", {"LSAT_WINDOW": 4}),
    "lsat_rotary": ("lsat", "vqa", {"LSAT_WINDOW": 2, "LSAT_LOOK_FORWARD": 0, "LSAT_ROTARY": True}),
}
# make_batch pads image rows so that some attention rows have every key masked; paddle's CPU span softmax handles
# those rows apart, so one case also runs without padded rows.
GRAD_BATCHES = {"trar_soft_avg_unpadded": ("trar", "vqa", {}, ())}
GRAD_CASES.update({name: case[:3] for name, case in GRAD_BATCHES.items()})


def loss_and_backward(fw, net, batch, weights):
    """A fixed linear loss sum(logits * weights), so the gradient reaching the logits is ``weights`` itself."""
    out, logits = run_with_intermediates(fw, net, batch, train=True)
    (logits * to_tensor(fw, weights)).sum().backward()
    return out


@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("case", sorted(GRAD_CASES))
def test_gradient_parity(both_backends, case, dropout):
    """With dropout on, both frameworks draw their CPU dropout masks from core.dropout_masks, reset to the same
    seed, and call their dropout layers in the same order: the same elements are dropped."""
    model, dataset, overrides = GRAD_CASES[case]
    cfg = tiny_cfg(model, dataset, DROPOUT_R=dropout, **overrides)
    torch_net, paddle_net = twin_nets(cfg)
    batch = make_batch(cfg, batch_size=4, **({"padded_rows": GRAD_BATCHES[case][3]} if case in GRAD_BATCHES else {}))
    weights = np.random.default_rng(3).standard_normal((4, ANSWER_SIZE)).astype(np.float32)

    DROPOUT_MASKS.reset(11)
    expected = loss_and_backward("torch", torch_net, batch, weights)
    DROPOUT_MASKS.reset(11)
    got = loss_and_backward("paddle", paddle_net, batch, weights)
    if dropout:
        DROPOUT_MASKS.reset(12)
        other = loss_and_backward("torch", torch_net, batch, weights)
        assert np.abs(other["logits"] - expected["logits"]).max() > 1e-3, "dropout changed nothing"
        torch_net.clear_gradients() if hasattr(torch_net, "clear_gradients") else torch_net.zero_grad()
        DROPOUT_MASKS.reset(11)
        loss_and_backward("torch", torch_net, batch, weights)
    assert_all_close(expected, got, FORWARD_ATOL, f"{case}.train")

    linear = layers_module("torch").linear_weight_names(torch_net)
    torch_grads = named_grads("torch", torch_net)
    paddle_grads = named_grads("paddle", paddle_net)
    assert sorted(paddle_grads) == sorted(torch_grads)
    largest = max(float(np.max(np.abs(g))) for g in torch_grads.values() if g is not None)
    for name, g_torch in torch_grads.items():
        g_paddle = paddle_grads[name]
        assert g_torch is not None and g_paddle is not None, f"{case}.grad.{name}: no gradient"
        if name in linear:
            g_paddle = g_paddle.T
        error = gradient_error(g_torch, g_paddle, largest)
        assert error <= GRAD_RTOL, (f"{case}.grad.{name}: max |diff| / (largest gradient {largest:.3g} + |torch grad|)"
                                    f" = {error:.3g} > {GRAD_RTOL:g}")
    # a 1% error in one tensor (the Linear weight with the largest gradient) must still fail
    key = max((n for n in torch_grads if n in linear), key=lambda n: float(np.max(np.abs(torch_grads[n]))))
    g_paddle = paddle_grads[key].T if key in linear else paddle_grads[key]
    assert gradient_error(torch_grads[key], g_paddle * np.float32(1.01), largest) > GRAD_RTOL


@pytest.mark.parametrize("case", sorted(EVAL_CASES))
def test_module_trees_mirror(both_backends, case):
    """Same class names at the same paths in both frameworks (inside an LSTM only paddle has per-cell sublayers;
    torch's ModuleList is paddle's LayerList)."""
    model, dataset, overrides = EVAL_CASES[case]
    cfg = tiny_cfg(model, dataset, **overrides)
    torch_net = build("torch", cfg)
    paddle_net = build("paddle", cfg)
    torch_tree = [(name, {"ModuleList": "LayerList"}.get(type(m).__name__, type(m).__name__))
                  for name, m in torch_net.named_modules()]
    paddle_tree = [(name, type(m).__name__) for name, m in paddle_net.named_sublayers(include_self=True)
                   if not name.startswith("lstm.")]
    assert paddle_tree == torch_tree
