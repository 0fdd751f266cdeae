"""ViT checkpoints: Google's official .npz layout (a tiny file written here, by hand, in that layout), the position
embedding resize on hand-worked grids, zero_head, the routing heads an npz lacks, and the original train script's
.ckpt container (numpy float64 best_acc) in both backends; hostile pickles are still refused."""
import math
import warnings
import zipfile

import numpy as np
import pytest

from formats import restricted_pickle, vit_npz
from formats.layout import CheckpointMismatch
from tests.model_configs import numpy_state, seed_framework
from tests.vit_configs import image_configs, make_images, vit_cfg  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("image_configs")

# 2 layers, hidden 8 in 2 heads of 4, MLP 12, 4x4 patches; IMG_SIZE 8 -> a 2x2 patch grid, 12 -> 3x3.
SMALL = dict(HIDDEN_SIZE=8, MULTI_HEAD=2, FF_SIZE=12, PATCH_SIZE=4, IMG_SIZE=8, LAYER=2, ORDERS=[0, 1])


# ---- position embedding resize ---------------------------------------------------------------------------------

def test_resize_grid_hand_worked():
    grid = np.array([[1.0, 3.0], [5.0, 11.0]], np.float32)[:, :, None]        # (2, 2, 1)
    up = vit_npz.resize_grid(grid, 3)[:, :, 0]
    # corners kept; edges the midpoints; the centre the mean of the four
    np.testing.assert_allclose(up, [[1, 2, 3], [3, 5, 7], [5, 8, 11]], rtol=0, atol=1e-6)
    assert up.dtype == np.float32
    grid3 = np.arange(9, dtype=np.float32).reshape(3, 3, 1) ** 2           # 0 1 4 / 9 16 25 / 36 49 64
    np.testing.assert_allclose(vit_npz.resize_grid(grid3, 2)[:, :, 0], [[0, 4], [36, 64]], atol=1e-6)
    # 3 -> 5: input positions 0, 0.5, 1, 1.5, 2 along each axis; row 0 of squares 0 1 4 -> 0 .5 1 2.5 4
    np.testing.assert_allclose(vit_npz.resize_grid(grid3, 5)[0, :, 0], [0, 0.5, 1, 2.5, 4], atol=1e-6)
    np.testing.assert_allclose(vit_npz.resize_grid(grid3, 5)[1, 1, 0], (0 + 1 + 9 + 16) / 4, atol=1e-6)
    np.testing.assert_array_equal(vit_npz.resize_grid(grid3, 3), grid3)      # same size: unchanged


def test_resize_position_embeddings_keeps_cls_and_channels():
    rng = np.random.default_rng(0)
    posemb = rng.standard_normal((1, 1 + 4, 3)).astype(np.float32)
    out = vit_npz.resize_position_embeddings(posemb, 1 + 9)
    assert out.shape == (1, 10, 3)
    np.testing.assert_array_equal(out[0, 0], posemb[0, 0])                    # CLS row as is
    grid = posemb[0, 1:].reshape(2, 2, 3)
    np.testing.assert_allclose(out[0, 1:].reshape(3, 3, 3)[1, 1], grid.mean(axis=(0, 1)), atol=1e-6)
    np.testing.assert_array_equal(out[0, 1:].reshape(3, 3, 3)[2, 2], grid[1, 1])
    with pytest.raises(CheckpointMismatch, match="do not form a square grid"):
        vit_npz.resize_position_embeddings(posemb, 1 + 8)


# ---- Google's npz, written by hand -----------------------------------------------------------------------------

def google_npz(path, state, heads):
    """Write a torch-layout ViT state dict as Google's npz (names and layouts of the official files, with the
    pre_logits pair the original never reads)."""
    hidden = state["transformer.encoder.encoder_norm.weight"].shape[0]
    dh = hidden // heads
    out = {"embedding/kernel": state["transformer.embeddings.patch_embeddings.weight"].transpose(2, 3, 1, 0),
           "embedding/bias": state["transformer.embeddings.patch_embeddings.bias"],
           "cls": state["transformer.embeddings.cls_token"],
           "Transformer/posembed_input/pos_embedding": state["transformer.embeddings.position_embeddings"],
           "Transformer/encoder_norm/scale": state["transformer.encoder.encoder_norm.weight"],
           "Transformer/encoder_norm/bias": state["transformer.encoder.encoder_norm.bias"],
           "head/kernel": state["head.weight"].T, "head/bias": state["head.bias"],
           "pre_logits/kernel": np.ones((hidden, hidden), np.float32), "pre_logits/bias": np.ones(hidden, np.float32)}
    layers = {int(k.split(".")[3]) for k in state if k.startswith("transformer.encoder.layer.")}
    for i in sorted(layers):
        p, g = f"transformer.encoder.layer.{i}.", f"Transformer/encoderblock_{i}/"
        att = g + "MultiHeadDotProductAttention_1/"
        for name in ("query", "key", "value"):
            out[att + f"{name}/kernel"] = state[p + f"attn.{name}.weight"].T.reshape(hidden, heads, dh)   # (in, h, dh)
            out[att + f"{name}/bias"] = state[p + f"attn.{name}.bias"].reshape(heads, dh)
        out[att + "out/kernel"] = state[p + "attn.out.weight"].T.reshape(heads, dh, hidden)             # (h, dh, out)
        out[att + "out/bias"] = state[p + "attn.out.bias"]
        out[g + "MlpBlock_3/Dense_0/kernel"] = state[p + "ffn.fc1.weight"].T
        out[g + "MlpBlock_3/Dense_0/bias"] = state[p + "ffn.fc1.bias"]
        out[g + "MlpBlock_3/Dense_1/kernel"] = state[p + "ffn.fc2.weight"].T
        out[g + "MlpBlock_3/Dense_1/bias"] = state[p + "ffn.fc2.bias"]
        for ln, name in (("LayerNorm_0", "attention_norm"), ("LayerNorm_2", "ffn_norm")):
            out[g + f"{ln}/scale"] = state[p + f"{name}.weight"]
            out[g + f"{ln}/bias"] = state[p + f"{name}.bias"]
    np.savez(path, **out)
    return path


def random_state(cfg, classes, seed=0):
    """A torch-layout state dict of the cfg's net with every tensor random (no zero to hide a missed copy), of a
    trained net's scale (N(0, 0.3))."""
    from backends.torch.models import state_dict_shapes
    rng = np.random.default_rng(seed)
    return {k: (0.3 * rng.standard_normal(s)).astype(np.float32)
            for k, s in state_dict_shapes(cfg, num_classes=classes).items()}


def torch_to_fw(fw, net, state):
    """The torch-layout state in fw's layout for ``net``."""
    if fw == "torch":
        return state
    from backends.paddle.layers import linear_weight_names
    linear = linear_weight_names(net)
    return {k: v.T.copy() if k in linear else v for k, v in state.items()}


@pytest.mark.parametrize("model", ["vit", "vit_trar"])
def test_google_npz_loads_like_the_state_dict(backend, model, tmp_path):
    pytest.importorskip("torch")
    fw = backend.name
    cfg = vit_cfg(model, **SMALL)
    state = random_state(cfg, 3)
    path = google_npz(tmp_path / "ViT-tiny.npz", state, heads=2)
    assert vit_npz.is_google_npz(path) and restricted_pickle.checkpoint_kind(path) == "torch-zip"   # a zip too

    seed_framework(fw, 1)
    from_npz = backend.build_model(cfg, num_classes=3)
    init = numpy_state(fw, from_npz)
    init = {k: v.copy() for k, v in init.items()}
    meta = backend.load_checkpoint(from_npz, str(path))
    assert meta == {"epoch": None, "lr_base": None, "optimizer": None}
    loaded = numpy_state(fw, from_npz)
    expected = torch_to_fw(fw, from_npz, state)
    for key, value in loaded.items():
        if "routing_block" in key:
            np.testing.assert_array_equal(value, init[key], err_msg=f"{key}: a routing head keeps its init")
        else:
            np.testing.assert_array_equal(value, expected[key], err_msg=key)

    direct = backend.build_model(cfg, num_classes=3)
    direct_state = {**torch_to_fw(fw, direct, state), **{k: v for k, v in init.items() if "routing_block" in k}}
    if fw == "torch":
        import torch
        direct.load_state_dict({k: torch.from_numpy(v) for k, v in direct_state.items()})
    else:
        direct.set_state_dict(direct_state)
    images = make_images(cfg, batch_size=2)
    np.testing.assert_array_equal(backend.predict(from_npz, {"image": images}),
                                  backend.predict(direct, {"image": images}))


def test_google_npz_resize_and_zero_head(backend, tmp_path):
    """A 2x2-grid (IMG_SIZE 8) checkpoint with 3 classes into a 3x3-grid (IMG_SIZE 12) model with 5 classes: the
    position grid is interpolated, the head zeroed (fine-tuning to other classes)."""
    pytest.importorskip("torch")
    fw = backend.name
    source = random_state(vit_cfg("vit_trar", **SMALL), 3)
    path = google_npz(tmp_path / "ViT-224.npz", source, heads=2)
    net = backend.build_model(vit_cfg("vit_trar", **dict(SMALL, IMG_SIZE=12)), num_classes=5)
    backend.load_checkpoint(net, str(path))
    state = numpy_state(fw, net)
    assert not state["head.weight"].any() and not state["head.bias"].any()
    pos, old = state["transformer.embeddings.position_embeddings"], source["transformer.embeddings.position_embeddings"]
    assert pos.shape == (1, 10, 8)
    np.testing.assert_array_equal(pos[0, 0], old[0, 0])
    grid, old_grid = pos[0, 1:].reshape(3, 3, 8), old[0, 1:].reshape(2, 2, 8)
    np.testing.assert_array_equal(grid[0, 0], old_grid[0, 0])
    np.testing.assert_array_equal(grid[2, 2], old_grid[1, 1])
    np.testing.assert_allclose(grid[0, 1], (old_grid[0, 0] + old_grid[0, 1]) / 2, atol=1e-6)
    np.testing.assert_allclose(grid[1, 1], old_grid.mean(axis=(0, 1)), atol=1e-6)
    assert np.isfinite(backend.predict(net, {"image": make_images(vit_cfg("vit", IMG_SIZE=12), 2)})).all()


def test_google_npz_that_does_not_fit_names_the_key(backend, tmp_path):
    pytest.importorskip("torch")
    source = random_state(vit_cfg("vit", **SMALL), 3)
    path = google_npz(tmp_path / "two_layers.npz", source, heads=2)
    net = backend.build_model(vit_cfg("vit", **dict(SMALL, LAYER=3)), num_classes=3)
    with pytest.raises(CheckpointMismatch, match="missing Transformer/encoderblock_2/.*it has 2 encoder blocks, "
                                                 "the model 3.*check LAYER"):
        backend.load_checkpoint(net, str(path))
    net = backend.build_model(vit_cfg("vit", **dict(SMALL, FF_SIZE=16)), num_classes=3)
    with pytest.raises(CheckpointMismatch, match="ffn.fc1.weight has shape .12, 8. after the Google-layout"):
        backend.load_checkpoint(net, str(path))
    hybrid = dict(np.load(path))
    hybrid["conv_root/kernel"] = np.zeros((7, 7, 3, 64), np.float32)
    np.savez(tmp_path / "r50.npz", **hybrid)
    with pytest.raises(CheckpointMismatch, match="hybrid"):
        backend.load_checkpoint(backend.build_model(vit_cfg("vit", **SMALL), num_classes=3), str(tmp_path / "r50.npz"))


# ---- the original train script's .ckpt -----------------------------------------------------------------------------

def original_ckpt(path, state, best_acc=np.float64(0.8162)):
    """What ViT.pytorch's train.py save_checkpoint writes: the model's state_dict, SGD (momentum buffers) and its
    warm-up cosine LambdaLR after one step, the step count and best_acc (a numpy float64 after the first eval)."""
    import torch
    params = {k: torch.nn.Parameter(torch.from_numpy(v)) for k, v in state.items()}
    sgd = torch.optim.SGD(params.values(), lr=3e-2, momentum=0.9, weight_decay=0)

    def cosine(step, warmup=2, total=10):
        if step < warmup:
            return step / warmup
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (total - warmup))))
    scheduler = torch.optim.lr_scheduler.LambdaLR(sgd, cosine)
    sum(p.sum() for p in params.values()).backward()
    with warnings.catch_warnings():     # the original steps the scheduler before the optimizer; torch warns
        warnings.simplefilter("ignore", UserWarning)
        scheduler.step()
    sgd.step()
    trained = {k: p.detach().clone() for k, p in params.items()}
    torch.save({"state_dict": trained, "optimizer": sgd.state_dict(), "scheduler": scheduler.state_dict(),
                "steps": 1, "best_acc": best_acc}, path)
    return {k: v.numpy() for k, v in trained.items()}


@pytest.mark.parametrize("model", ["vit", "vit_trar"])
def test_original_ckpt_loads_in_either_backend(backend, model, tmp_path):
    torch = pytest.importorskip("torch")
    fw = backend.name
    cfg = vit_cfg(model, **SMALL)
    path = str(tmp_path / "ViT_TRAR_384_012.ckpt")
    trained = original_ckpt(path, random_state(cfg, 4))
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path, weights_only=True)       # why the restricted reader is needed (numpy scalar)
    raw = restricted_pickle.read_torch_checkpoint(path)
    assert type(raw["best_acc"]) is np.float64 and raw["best_acc"] == 0.8162 and raw["steps"] == 1
    assert set(raw["optimizer"]["state"][0]) == {"momentum_buffer"}
    net = backend.build_model(cfg, num_classes=4)
    meta = backend.load_checkpoint(net, path)
    assert meta["epoch"] is None and meta["optimizer"]["param_groups"][0]["momentum"] == 0.9
    expected = torch_to_fw(fw, net, trained)
    for key, value in numpy_state(fw, net).items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)
    zero = str(tmp_path / "first.ckpt")
    original_ckpt(zero, random_state(cfg, 4), best_acc=0)     # the first save: best_acc an int 0
    backend.load_checkpoint(net, zero)


def _rewrite_data_pkl(src, dst, old, new):
    """A copy of the torch zip ``src`` with ``old`` replaced by ``new`` in its pickle (GLOBAL opcodes are text)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                assert old in data
                data = data.replace(old, new)
            zout.writestr(item, data)
    return dst


def test_numpy_scalar_globals_old_and_new_names_load_and_others_are_refused(tmp_path):
    pytest.importorskip("torch")
    cfg = vit_cfg("vit", **SMALL)
    path = str(tmp_path / "best_checkpoint.ckpt")
    original_ckpt(path, random_state(cfg, 4))
    pkl = zipfile.ZipFile(path).read(next(n for n in zipfile.ZipFile(path).namelist() if n.endswith("data.pkl")))
    new_name = b"numpy._core.multiarray\nscalar" if b"numpy._core.multiarray\nscalar" in pkl else \
        b"numpy.core.multiarray\nscalar"
    # written under numpy 1.x, the same file names numpy.core.multiarray.scalar
    old_numpy = _rewrite_data_pkl(path, str(tmp_path / "numpy1.ckpt"), new_name, b"numpy.core.multiarray\nscalar")
    assert restricted_pickle.read_torch_checkpoint(old_numpy)["best_acc"] == 0.8162
    for hostile in (b"os\nsystem", b"numpy\nload", b"numpy.testing._private.utils\nrunstring", b"builtins\neval"):
        bad = _rewrite_data_pkl(path, str(tmp_path / "hostile.ckpt"), new_name, hostile)
        with pytest.raises(restricted_pickle.RefusedPickle,
                           match="refused global " + hostile.decode().replace("\n", ".").replace(".", r"\.")):
            restricted_pickle.read_torch_checkpoint(bad)


# ---- conversion, both ways -----------------------------------------------------------------------------------------

@pytest.mark.parity
def test_convert_original_ckpt_both_ways(both_backends, tmp_path):
    """The train script's .ckpt -> .pdparams (torch2paddle) -> .pkl (paddle2torch): the same weights at every stop,
    loaded by either backend; its SGD momentum state is converted too (formats/sgd_state.py)."""
    from backends import get_backend
    from convert.checkpoints import convert_file
    overrides = [(k, v) for k, v in SMALL.items()]
    cfg = vit_cfg("vit_trar", **SMALL)
    ckpt = str(tmp_path / "ViT_TRAR.ckpt")
    trained = original_ckpt(ckpt, random_state(cfg, 4))
    summary = convert_file("torch2paddle", ckpt, str(tmp_path / "vit.pdparams"), "vit_trar", "imagenet",
                           sets=overrides)
    assert summary["facts"] == {"num_classes": 4} and summary["tensors"] == len(trained)
    assert summary["transposed"] == sum(k.endswith(".weight") and v.ndim == 2 for k, v in trained.items())
    assert summary["optimizer_converted"] and summary["optimizer"] == "converted"
    back = convert_file("paddle2torch", str(tmp_path / "vit.pdparams"), str(tmp_path / "vit.pkl"), "vit_trar",
                        "imagenet", sets=overrides)
    assert back["facts"] == {"num_classes": 4}
    images = make_images(cfg, 2)
    results = []
    for fw in ("torch", "paddle"):
        be = get_backend(fw)
        for path in (ckpt, str(tmp_path / "vit.pdparams"), str(tmp_path / "vit.pkl")):
            net = be.build_model(cfg, num_classes=4)
            be.load_checkpoint(net, path)
            expected = torch_to_fw(fw, net, trained)
            for key, value in numpy_state(fw, net).items():
                np.testing.assert_array_equal(value, expected[key], err_msg=f"{fw} {path} {key}")
            results.append(be.predict(net, {"image": images}))
    from tests.tolerances import FORWARD_ATOL
    np.testing.assert_array_equal(results[0], results[1])    # one framework: the same weights, the same logits
    np.testing.assert_array_equal(results[3], results[5])
    assert float(np.abs(results[3] - results[0]).max()) <= FORWARD_ATOL


@pytest.mark.parity
@pytest.mark.parametrize("direction", ["torch2paddle", "paddle2torch"])
def test_convert_google_npz(both_backends, direction, tmp_path):
    from backends import get_backend
    from convert.checkpoints import convert_file
    cfg = vit_cfg("vit_trar", **SMALL)
    state = random_state(cfg, 3)
    npz = str(google_npz(tmp_path / "ViT-tiny.npz", state, heads=2))
    dst = str(tmp_path / ("out.pdparams" if direction == "torch2paddle" else "out.pkl"))
    summary = convert_file(direction, npz, dst, "vit_trar", "imagenet", sets=list(SMALL.items()))
    assert summary["facts"] == {"num_classes": 3}
    assert any("keep the net's initial values" in n for n in summary["notes"])
    for fw in ("torch", "paddle"):
        be = get_backend(fw)
        net = be.build_model(cfg, num_classes=3)
        be.load_checkpoint(net, dst)
        expected = torch_to_fw(fw, net, state)
        for key, value in numpy_state(fw, net).items():
            if "routing_block" not in key:
                np.testing.assert_array_equal(value, expected[key], err_msg=f"{fw} {key}")
            else:
                assert value.shape == expected[key].shape and value.any()
