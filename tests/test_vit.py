"""ViT and ViT+TRAR (backends/<fw>/models/vit.py, vit_trar.py): state-dict keys and shapes of the originals, parameter
counts of the reference, the config keys, the span masks, ORDERS [0] against plain ViT bit for bit, the routing's
reach, and torch <-> paddle forward and gradient parity on tiny configs."""
import numpy as np
import pytest

from core.config import ConfigError
from core.dropout_masks import STREAM as DROPOUT_MASKS
from core.masks import token_span_mask_stack
from tests.model_configs import (
    layers_module,
    load_state,
    models_module,
    numpy_state,
    seed_framework,
    to_numpy,
    to_tensor,
)
from tests.tolerances import FORWARD_ATOL, GRAD_RTOL, gradient_error
from tests.vit_configs import NUM_CLASSES, full_vit_cfg, image_configs, make_images, vit_cfg  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("image_configs")


def block_keys(i, routed):
    """One block's state-dict keys and torch shapes at B/16 (reference A.3, B.1), in registration order."""
    p = f"transformer.encoder.layer.{i}."
    keys = [(p + "attention_norm.weight", (768,)), (p + "attention_norm.bias", (768,)),
            (p + "ffn_norm.weight", (768,)), (p + "ffn_norm.bias", (768,)),
            (p + "ffn.fc1.weight", (3072, 768)), (p + "ffn.fc1.bias", (3072,)),
            (p + "ffn.fc2.weight", (768, 3072)), (p + "ffn.fc2.bias", (768,))]
    for name in ("query", "key", "value", "out"):
        keys += [(p + f"attn.{name}.weight", (768, 768)), (p + f"attn.{name}.bias", (768,))]
    if routed:
        keys += [(p + "attn.routing_block.mlp.0.weight", (384, 768)),
                 (p + "attn.routing_block.mlp.2.weight", (routed, 384)),
                 (p + "attn.routing_block.mlp.2.bias", (routed,))]
    return keys


def b16_keys(img_size, classes, routed=0):
    n = (img_size // 16) ** 2 + 1
    keys = [("transformer.embeddings.position_embeddings", (1, n, 768)),
            ("transformer.embeddings.cls_token", (1, 1, 768)),
            ("transformer.embeddings.patch_embeddings.weight", (768, 3, 16, 16)),
            ("transformer.embeddings.patch_embeddings.bias", (768,))]
    for i in range(12):
        keys += block_keys(i, routed)
    return keys + [("transformer.encoder.encoder_norm.weight", (768,)),
                   ("transformer.encoder.encoder_norm.bias", (768,)),
                   ("head.weight", (classes, 768)), ("head.bias", (classes,))]


def torch_shapes(cfg, classes):
    from backends.torch.models import state_dict_shapes
    return list(state_dict_shapes(cfg, num_classes=classes).items())


@pytest.mark.parametrize("model, img_size, orders, count", [
    ("vit", 224, None, 86_567_656), ("vit", 384, None, 86_859_496),
    ("vit_trar", 224, [0, 1, 2, 3], 90_125_080), ("vit_trar", 384, [0, 1, 2], 90_412_300),
    ("vit_trar", 384, [0, 1, 2, 3], 90_416_920)])
def test_b16_state_dict_and_parameter_count_equal_the_originals(model, img_size, orders, count):
    """Meta-device construction (no weights allocated): the keys, their order and shapes, and the counts the
    reference got by instantiating the original code (1000 classes)."""
    pytest.importorskip("torch")
    cfg = full_vit_cfg(model, IMG_SIZE=img_size, **({"ORDERS": orders} if orders else {}))
    assert (cfg.HIDDEN_SIZE, cfg.FF_SIZE, cfg.MULTI_HEAD, cfg.LAYER, cfg.PATCH_SIZE) == (768, 3072, 12, 12, 16)
    assert cfg.IMG_SCALE == img_size // 16
    shapes = torch_shapes(cfg, 1000)
    assert shapes == b16_keys(img_size, 1000, len(orders) if orders else 0)
    assert sum(int(np.prod(s)) for _, s in shapes) == count


def test_paddle_keys_and_shapes_equal_torch(both_backends):
    """Tiny nets: the same keys in the same order; shapes equal up to the Linear weights' transpose."""
    cfg = vit_cfg("vit_trar")
    torch_net = models_module("torch").build_net(cfg, num_classes=NUM_CLASSES)
    paddle_net = models_module("paddle").build_net(cfg, num_classes=NUM_CLASSES)
    linear = layers_module("paddle").linear_weight_names(paddle_net)
    assert linear == layers_module("torch").linear_weight_names(torch_net)
    torch_state, paddle_state = numpy_state("torch", torch_net), numpy_state("paddle", paddle_net)
    assert list(paddle_state) == list(torch_state)
    for key, value in torch_state.items():
        assert paddle_state[key].shape == (value.T.shape if key in linear else value.shape), key
    assert "transformer.embeddings.patch_embeddings.weight" not in linear    # a conv: one layout in both


def test_init_follows_the_original(backend):
    """Zeros for the CLS token and position embeddings, ones/zeros for the LayerNorms, xavier MLP weights with
    N(0, 1e-6) biases (paddle redraws torch's defaults first, then the Mlp's own init)."""
    cfg = vit_cfg("vit_trar", HIDDEN_SIZE=64, FF_SIZE=256, MULTI_HEAD=4)
    fw = backend.name
    seed_framework(fw, 0)
    state = numpy_state(fw, models_module(fw).build_net(cfg, num_classes=NUM_CLASSES))
    assert not state["transformer.embeddings.cls_token"].any()
    assert not state["transformer.embeddings.position_embeddings"].any()
    assert (state["transformer.encoder.layer.0.attention_norm.weight"] == 1).all()
    fc1 = state["transformer.encoder.layer.0.ffn.fc1.weight"]
    assert np.abs(fc1).max() <= np.sqrt(6 / (64 + 256)) and np.abs(fc1).max() > 0.9 * np.sqrt(6 / (64 + 256))
    assert 0 < np.abs(state["transformer.encoder.layer.0.ffn.fc1.bias"]).max() < 1e-5
    bound = 1 / np.sqrt(64)            # torch's default Linear init elsewhere: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    query = state["transformer.encoder.layer.0.attn.query.weight"]
    assert bound * 0.9 < np.abs(query).max() <= bound
    conv = state["transformer.embeddings.patch_embeddings.weight"]
    assert np.abs(conv).max() <= 1 / np.sqrt(3 * 4 * 4)


# ---- config keys ---------------------------------------------------------------------------------------------------

def test_img_scale_is_derived_and_checked():
    assert vit_cfg("vit").IMG_SCALE == 4
    assert full_vit_cfg("vit").IMG_SCALE == 14 and full_vit_cfg("vit", IMG_SIZE=384).IMG_SCALE == 24
    assert full_vit_cfg("vit").copy(IMG_SIZE=384).IMG_SCALE == 24          # re-derived on copy
    assert full_vit_cfg("vit", IMG_SIZE=384, IMG_SCALE=24).IMG_SCALE == 24  # a value given must agree
    with pytest.raises(ConfigError, match=r"IMG_SCALE: 24 does not match IMG_SIZE / PATCH_SIZE = 224 / 16 = 14"):
        full_vit_cfg("vit", IMG_SCALE=24)
    with pytest.raises(ConfigError, match="IMG_SIZE: 200 is not divisible by PATCH_SIZE=16"):
        full_vit_cfg("vit", IMG_SIZE=200)
    with pytest.raises(ConfigError, match="ORDERS: .*every order must be in 0..IMG_SCALE-1 .IMG_SCALE=4"):
        vit_cfg("vit_trar", ORDERS=[0, 4])
    with pytest.raises(ConfigError, match="POOLING: 'fc': ViT.TRAR routes from the average"):
        vit_cfg("vit_trar", POOLING="fc")
    with pytest.raises(ConfigError, match="ROUTING: 'hard'"):
        vit_cfg("vit_trar", ROUTING="hard")
    with pytest.raises(ConfigError, match="CLASSIFIER: 'gap' is not one of token"):
        vit_cfg("vit", CLASSIFIER="gap")
    with pytest.raises(ConfigError, match="ATTN_DROPOUT_R: must be below 1"):
        vit_cfg("vit", ATTN_DROPOUT_R=1.0)


def test_presets_are_the_original_configs():
    from core.specs import vit as vit_spec
    cfg = full_vit_cfg("vit_trar", **vit_spec.preset("B_16", 384, ORDERS=[0, 1, 2]))
    assert (cfg.IMG_SCALE, cfg.HIDDEN_SIZE, cfg.LAYER, cfg.ORDERS) == (24, 768, 12, [0, 1, 2])
    h14 = full_vit_cfg("vit", **vit_spec.preset("H_14"))
    assert (h14.IMG_SCALE, h14.HIDDEN_SIZE, h14.FF_SIZE, h14.MULTI_HEAD, h14.LAYER) == (16, 1280, 5120, 16, 32)
    with pytest.raises(ValueError, match="ViT preset 'B_8' is unknown"):
        vit_spec.preset("B_8")


# ---- masks ---------------------------------------------------------------------------------------------------------

def test_token_span_masks_hand_worked():
    """3x3 patch grid + CLS = 10 tokens; True = masked. Token 1 + 3r + c is patch (r, c)."""
    masks = token_span_mask_stack(3, [0, 1, 2])
    assert masks.shape == (3, 10, 10) and masks.dtype == bool
    assert not masks[0].any()                                  # order 0: global
    assert not masks[:, 0, :].any() and not masks[:, :, 0].any()   # CLS row and column always open
    # order 1, patch (0, 0) = token 1: sees patches (0,0) (0,1) (1,0) (1,1) = tokens 1 2 4 5, and CLS
    np.testing.assert_array_equal(masks[1, 1], [0, 0, 0, 1, 0, 0, 1, 1, 1, 1])
    # order 1, patch (1, 1) = token 5: the whole grid
    assert not masks[1, 5].any()
    # order 1, patch (0, 2) = token 3: columns 1..2 of rows 0..1 = tokens 2 3 5 6
    np.testing.assert_array_equal(masks[1, 3], [0, 1, 0, 0, 1, 0, 0, 1, 1, 1])
    assert not masks[2].any()                                  # order 2 on a 3x3 grid: every patch sees all
    with pytest.raises(ValueError, match="must be smaller than IMG_SCALE 3"):
        token_span_mask_stack(3, [3])


# ---- forward: ORDERS [0] is plain ViT, the last block's routing cannot reach the logits ---------------------------

def test_orders_0_gives_plain_vit_bit_for_bit(backend):
    fw = backend.name
    trar = backend.build_model(vit_cfg("vit_trar", ORDERS=[0]), num_classes=NUM_CLASSES)
    plain = backend.build_model(vit_cfg("vit"), num_classes=NUM_CLASSES)
    state = numpy_state(fw, trar)
    load_state(fw, plain, {k: v for k, v in state.items() if "routing_block" not in k})
    images = make_images(vit_cfg("vit"), batch_size=4)
    got, expected = backend.predict(trar, {"image": images}), backend.predict(plain, {"image": images})
    assert got.dtype == np.float32 and got.shape == (4, NUM_CLASSES)
    np.testing.assert_array_equal(got, expected)
    assert [a.tolist() for a in backend.routing_alphas(trar)] == [[[1.0]] * 4] * 2


def test_routing_changes_the_logits_except_the_last_blocks(backend):
    """Reference B.1: the head reads CLS only and the CLS row is the same for every order, so the last block's
    routing weights cannot change the logits; the first block's do."""
    fw = backend.name
    cfg = vit_cfg("vit_trar", ORDERS=[0, 1])
    net = backend.build_model(cfg, num_classes=NUM_CLASSES)
    state = {k: v.copy() for k, v in numpy_state(fw, net).items()}     # torch's arrays share the parameters' memory
    images = make_images(cfg)
    base = backend.predict(net, {"image": images})
    alphas = backend.routing_alphas(net)
    assert len(alphas) == 2 and alphas[0].shape == (3, 2)
    np.testing.assert_allclose(alphas[0].sum(1), 1, rtol=1e-6)
    for layer, moved in ((0, True), (1, False)):
        key = f"transformer.encoder.layer.{layer}.attn.routing_block.mlp.2.bias"
        load_state(fw, net, {**state, key: state[key] + np.array([5.0, -5.0], np.float32)})
        diff = np.abs(backend.predict(net, {"image": images}) - base).max()
        assert (diff > 1e-3) if moved else (diff < 1e-5), (layer, diff)
    load_state(fw, net, state)


def test_batch_of_one_and_finite(backend):
    cfg = vit_cfg("vit_trar", ORDERS=[0, 1, 2])
    net = backend.build_model(cfg, num_classes=NUM_CLASSES)
    images = make_images(cfg, batch_size=3)
    out = backend.predict(net, {"image": images})
    assert np.isfinite(out).all()
    np.testing.assert_allclose(backend.predict(net, {"image": images[1:2]}), out[1:2], atol=1e-5)


# ---- torch <-> paddle parity ---------------------------------------------------------------------------------------

def twin_nets(cfg, seed=0):
    seed_framework("torch", seed)
    torch_net = models_module("torch").build_net(cfg, num_classes=NUM_CLASSES)
    paddle_net = models_module("paddle").build_net(cfg, num_classes=NUM_CLASSES)
    linear = layers_module("torch").linear_weight_names(torch_net)
    load_state("paddle", paddle_net, {k: v.T.copy() if k in linear else v
                                      for k, v in numpy_state("torch", torch_net).items()})
    return torch_net, paddle_net


def run(fw, net, images, train):
    """Logits (a framework tensor) and, as numpy, the encoder output and the routing weights."""
    store = {}

    def hook(_layer, _inputs, output):
        store["encoder_output"] = output
    encoder = net.transformer.encoder
    handle = encoder.register_forward_hook(hook) if fw == "torch" else encoder.register_forward_post_hook(hook)
    net.train() if train else net.eval()
    try:
        if train:
            logits = net(to_tensor(fw, images))
        elif fw == "torch":
            import torch
            with torch.no_grad():
                logits = net(to_tensor(fw, images))
        else:
            import paddle
            with paddle.no_grad():
                logits = net(to_tensor(fw, images))
    finally:
        handle.remove()
    out = {"encoder_output": to_numpy(fw, store["encoder_output"]), "logits": to_numpy(fw, logits)}
    out.update({f"routing_alphas.{i}": to_numpy(fw, a) for i, a in enumerate(net.routing_alphas())})
    return logits, out


def assert_close(expected, got, atol, case):
    assert sorted(got) == sorted(expected), case
    for name, value in expected.items():
        assert got[name].shape == value.shape, f"{case}.{name}"
        diff = float(np.abs(got[name].astype(np.float64) - value).max())
        assert diff <= atol, f"{case}.{name}: max abs difference {diff:.3g} > {atol:g}"


PARITY_CASES = {"vit": ("vit", {}), "vit_trar": ("vit_trar", {"ORDERS": [0, 1, 2]}),
                "vit_trar_3_orders_5x5": ("vit_trar", {"IMG_SIZE": 20, "ORDERS": [2, 0, 1]})}


@pytest.mark.parity
@pytest.mark.parametrize("case", sorted(PARITY_CASES))
def test_forward_parity(both_backends, case):
    model, overrides = PARITY_CASES[case]
    cfg = vit_cfg(model, **overrides)
    torch_net, paddle_net = twin_nets(cfg)
    images = make_images(cfg, batch_size=4)
    _, expected = run("torch", torch_net, images, train=False)
    _, got = run("paddle", paddle_net, images, train=False)
    assert_close(expected, got, FORWARD_ATOL, case)


def zero_in_exact_arithmetic(name, cfg):
    """Gradients that are exactly zero in exact arithmetic, so only rounding noise is left to compare: the key bias
    (one constant added to every score of a softmax row) and, without attention dropout, the last block's routing
    head (reference B.1: the CLS row is the same map for every order; dropout on the maps makes them differ)."""
    last = f"transformer.encoder.layer.{cfg.LAYER - 1}.attn.routing_block."
    return name.endswith(".attn.key.bias") or (name.startswith(last) and cfg.ATTN_DROPOUT_R == 0)


@pytest.mark.parity
@pytest.mark.parametrize("dropout", [0.0, 0.2])
@pytest.mark.parametrize("case", sorted(PARITY_CASES))
def test_gradient_parity(both_backends, case, dropout):
    """A fixed linear loss sum(logits * w); every parameter's gradient within GRAD_RTOL of the torch gradient's
    largest magnitude (convert.tolerances.gradient_error, the one rule). With dropout both frameworks draw
    the CPU masks from core.dropout_masks, reset to one seed."""
    model, overrides = PARITY_CASES[case]
    cfg = vit_cfg(model, DROPOUT_R=dropout, ATTN_DROPOUT_R=dropout, **overrides)
    torch_net, paddle_net = twin_nets(cfg)
    images = make_images(cfg, batch_size=4)
    weights = np.random.default_rng(3).standard_normal((4, NUM_CLASSES)).astype(np.float32)
    results = {}
    for fw, net in (("torch", torch_net), ("paddle", paddle_net)):
        DROPOUT_MASKS.reset(11)
        logits, results[fw] = run(fw, net, images, train=True)
        (logits * to_tensor(fw, weights)).sum().backward()
    assert_close(results["torch"], results["paddle"], FORWARD_ATOL, f"{case}.train")

    linear = layers_module("torch").linear_weight_names(torch_net)
    torch_grads = {n: to_numpy("torch", p.grad) for n, p in torch_net.named_parameters()}
    paddle_grads = {n: to_numpy("paddle", p.grad) for n, p in paddle_net.named_parameters()}
    assert list(paddle_grads) == list(torch_grads)
    largest = max(float(np.abs(g).max()) for g in torch_grads.values())
    for name, g_torch in torch_grads.items():
        g_paddle = paddle_grads[name].T if name in linear else paddle_grads[name]
        if zero_in_exact_arithmetic(name, cfg):   # rounding noise in both: its size, not the difference, must be small
            noise = max(float(np.abs(g_torch).max()), float(np.abs(g_paddle).max()))
            assert noise <= GRAD_RTOL * largest, f"{case}.grad.{name}: should be ~0, {noise:.3g} vs {largest:.3g}"
            continue
        error = gradient_error(g_torch, g_paddle, largest)
        assert error <= GRAD_RTOL, f"{case}.grad.{name}: max |diff| / (largest + |torch grad|) = {error:.3g}"
    # a 1% error in one tensor (the Linear weight with the largest gradient) must still fail
    key = max((n for n in torch_grads if n in linear), key=lambda n: float(np.abs(torch_grads[n]).max()))
    g_paddle = paddle_grads[key].T if key in linear else paddle_grads[key]
    assert gradient_error(torch_grads[key], g_paddle * np.float32(1.01), largest) > GRAD_RTOL


@pytest.mark.parity
@pytest.mark.parametrize("model", ["vit", "vit_trar"])
def test_module_trees_mirror(both_backends, model):
    """Same class names at the same paths in both frameworks (torch's ModuleList is paddle's LayerList)."""
    cfg = vit_cfg(model)
    torch_net = models_module("torch").build_net(cfg, num_classes=NUM_CLASSES)
    paddle_net = models_module("paddle").build_net(cfg, num_classes=NUM_CLASSES)
    names = {"ModuleList": "LayerList", "Conv2d": "Conv2D"}
    torch_tree = [(name, names.get(type(m).__name__, type(m).__name__)) for name, m in torch_net.named_modules()]
    paddle_tree = [(name, type(m).__name__) for name, m in paddle_net.named_sublayers(include_self=True)]
    assert paddle_tree == torch_tree


@pytest.mark.parity
@pytest.mark.parametrize("model", ["vit", "vit_trar"])
def test_training_steps_parity(both_backends, model):
    """A few optimizer steps of both backends' trainers ('ce' loss, mean over the batch, clipping) from the same
    weights on the same batches: the losses follow each other within TRAIN_RTOL, with dropout masks shared."""
    from backends import get_backend
    from tests.tolerances import TRAIN_RTOL
    cfg = vit_cfg(model, **({"ORDERS": [0, 1, 2]} if model == "vit_trar" else {}), BATCH_SIZE=4, GRAD_NORM_CLIP=1.0)
    torch_net, paddle_net = twin_nets(cfg)
    rng = np.random.default_rng(5)
    batches = [{"image": make_images(cfg, 4, seed=i), "label": rng.integers(0, NUM_CLASSES, 4).astype(np.int64)}
               for i in range(4)]
    losses = {}
    for fw, net in (("torch", torch_net), ("paddle", paddle_net)):
        trainer = get_backend(fw).make_trainer(net, cfg)
        DROPOUT_MASKS.reset(7)
        losses[fw] = [trainer.train_step(batch, 1e-3) for batch in batches]
    np.testing.assert_allclose(losses["paddle"], losses["torch"], rtol=TRAIN_RTOL)
    assert losses["torch"][-1] != losses["torch"][0]


@pytest.mark.parity
def test_forward_parity_full_size_b16_trar(both_backends):
    """ViT-B/16 + TRAR [0, 1, 2, 3] at 224 (90M parameters, 1000 classes), one image."""
    cfg = full_vit_cfg("vit_trar")
    seed_framework("torch", 0)
    torch_net = models_module("torch").build_net(cfg, num_classes=1000)
    paddle_net = models_module("paddle").build_net(cfg, num_classes=1000)
    linear = layers_module("torch").linear_weight_names(torch_net)
    load_state("paddle", paddle_net, {k: v.T.copy() if k in linear else v
                                      for k, v in numpy_state("torch", torch_net).items()})
    images = make_images(cfg, batch_size=1)
    _, expected = run("torch", torch_net, images, train=False)
    _, got = run("paddle", paddle_net, images, train=False)
    assert_close(expected, got, FORWARD_ATOL, "vit_trar_b16")


class BrightestChannel:
    """16x16 images whose class is the brightest channel, plus noise (the classification sample format)."""

    def __init__(self, cfg, mode):
        n = {"train": 48, "val": 12, "test": 6}[mode]
        rng = np.random.default_rng({"train": 0, "val": 1, "test": 2}[mode])
        self.class_names = ["red", "green", "blue"]
        labels = np.arange(n, dtype=np.int64) % 3
        self.images = (0.1 * rng.standard_normal((n, 3, 16, 16))).astype(np.float32)
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


def test_engine_trains_and_validates_vit_trar(backend, tmp_path, monkeypatch):
    """run.py's loop on a tiny in-test image set: training, validation (top-1 / top-5), checkpoints, curves and the
    routing plot, as for the VQA models."""
    import os

    from core import config, engine, registry
    monkeypatch.setitem(registry.FORMATS, "brightest", registry.FormatSpec(
        "brightest", task="classification", loader=f"{__name__}:BrightestChannel", loss_funcs=("ce",)))
    monkeypatch.setitem(registry.DATASETS, "brightest", registry.DatasetSpec(
        "brightest", "brightest", train_splits=("train", "val")))
    configs = tmp_path / "configs"
    (configs / "brightest").mkdir(parents=True)
    (configs / "brightest" / "vit_trar.yml").write_text(
        "MODEL_USE: vit_trar\nIMG_SIZE: 16\nPATCH_SIZE: 4\nHIDDEN_SIZE: 32\nFF_SIZE: 64\nMULTI_HEAD: 4\nLAYER: 2\n"
        "ORDERS: [0, 1, 2]\nLOSS_FUNC: ce\nLOSS_REDUCTION: mean\nBATCH_SIZE: 8\nMAX_EPOCH: 3\nWARMUP_EPOCH: 0\n"
        "LR_BASE: 0.001\nLR_DECAY_LIST: []\n")
    monkeypatch.setattr(config, "CONFIGS_DIR", str(configs))
    cfg = config.load_config("vit_trar", "brightest", overrides={
        "RESULTS_ROOT": str(tmp_path / "results"), "CKPTS_ROOT": str(tmp_path / "ckpts"), "NUM_WORKERS": 0,
        "VERSION": "v", "VERBOSE": False, "BACKEND": backend.name})
    last = engine.run(cfg, backend)
    assert last["epoch"] == 3 and last["val"] >= 75.0          # chance is 33.3; measured 100 in both backends
    assert os.path.isfile(last["checkpoint"])
    logs = set(os.listdir(tmp_path / "results" / "log"))
    assert {"log_run_v.txt", "log_run_v_curves.png", "log_run_v_routing.png"} <= logs


@pytest.mark.parity
@pytest.mark.parametrize("model", ["vit", "vit_trar"])
def test_parity_tool_on_vit(both_backends, model):
    """python -m convert parity on a classifier: synthetic images and labels, every layer, every gradient (one rule,
    convert.tolerances.gradient_error, also for the key biases whose gradient is zero in exact arithmetic) and a few
    training steps within tolerance."""
    from convert import parity
    report = parity.run_parity(vit_cfg(model, IMG_SIZE=20, ORDERS=[0, 1, 2]), steps=2, batch_size=3)
    assert report["passed"], report["first_failure"]
    assert report["facts"] == {"num_classes": parity.SYNTHETIC_CLASSES} and report["data"] == "synthetic"
    rows = {r["layer"]: r for r in report["gradients"]["rows"]}
    assert rows["transformer.encoder.layer.0.attn.key.bias"]["ok"] and all(r["ok"] for r in rows.values())
    if model == "vit_trar":
        assert "transformer.encoder.layer.1.attn.routing_block.mlp.2.bias" in rows
    assert len(report["train"]["losses_torch"]) == 2
    assert "transformer.encoder.encoder_norm" in {r["layer"] for r in report["forward"]["rows"]}


@pytest.mark.parametrize("model", ["vit", "vit_trar"])
def test_torch_autocast_follows_float32(model):
    """--AMP as far as a CPU checks it (tests/test_mixed_precision.py): torch's bfloat16 autocast through the ViT
    blocks, the span masks' fill and the routing; logits near float32's, every gradient finite and present."""
    torch = pytest.importorskip("torch")
    cfg = vit_cfg(model, DROPOUT_R=0.0, ORDERS=[0, 1, 2])
    seed_framework("torch", 0)
    net = models_module("torch").build_net(cfg, num_classes=NUM_CLASSES)
    images = torch.from_numpy(make_images(cfg, batch_size=4))
    results = []
    for autocast in (False, True):
        net.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = net(images)
        assert logits.dtype == (torch.bfloat16 if autocast else torch.float32)
        logits.float().sum().backward()
        results.append((logits.detach().float().numpy(), {n: p.grad.clone() for n, p in net.named_parameters()}))
    (ref, ref_grads), (low, grads) = results
    assert np.isfinite(low).all() and np.abs(low - ref).max() <= 0.05 * np.abs(ref).max()
    assert set(grads) == set(ref_grads) and all(torch.isfinite(g).all() for g in grads.values())
    total = torch.sqrt(sum((g.double() ** 2).sum() for g in ref_grads.values()))
    overall = torch.sqrt(sum(((grads[k].double() - ref_grads[k].double()) ** 2).sum() for k in grads)) / total
    assert overall < 0.1
