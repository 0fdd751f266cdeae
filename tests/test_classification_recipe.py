"""The ViT originals' training recipe: warm-up then cosine / linear decay by steps (hand-worked), SGD with momentum in
both backends (mirrored, with its state saved, resumed and converted across frameworks), mean CE over accumulated
sub-batches, and a whole train / val / test / resume run of a tiny classifier on the generated images."""
import json
import math
import os

import numpy as np
import pytest

from core import checkpoints, config, engine, schedules
from formats import sgd_state
from tests import tiny_classifier

# ---- schedules ---------------------------------------------------------------------------------------------------

def test_warmup_cosine_hand_worked():
    f = lambda step: schedules.warmup_decay_factor(step, 4, 12, "cosine")      # noqa: E731
    assert [f(s) for s in (0, 1, 2, 3)] == [0.0, 0.25, 0.5, 0.75]
    assert f(4) == 1.0                                        # progress 0
    assert f(6) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))          # progress 2/8: 0.853553...
    assert f(6) == pytest.approx(0.8535533905932737)
    assert f(8) == pytest.approx(0.5)                          # progress 1/2
    assert f(12) == 0.0                                        # the last step: cos(pi) = -1
    assert schedules.step_lr(8, 0.03, 4, 12, "cosine") == pytest.approx(0.015)


def test_warmup_linear_hand_worked_and_never_negative():
    f = lambda step: schedules.warmup_decay_factor(step, 4, 12, "linear")      # noqa: E731
    assert [f(s) for s in (2, 4, 8, 10, 12, 14)] == [0.5, 1.0, 0.5, 0.25, 0.0, 0.0]
    assert schedules.warmup_decay_factor(3, 0, 10, "linear") == 0.7         # no warm-up: (10 - 3) / 10
    with pytest.raises(ValueError, match="LR_SCHEDULE"):
        schedules.warmup_decay_factor(5, 1, 10, "step")


def test_lr_picks_the_schedule(tmp_path, monkeypatch):
    settings = tiny_classifier.register(tmp_path, monkeypatch)
    cfg = config.load_config(tiny_classifier.MODEL, tiny_classifier.DATASET,
                             overrides=dict(settings, WARMUP_STEPS=2, LR_BASE=0.5))
    lrs = [engine._lr(cfg, 0, 0.5, 60, n, 6) for n in range(1, 7)]
    assert lrs == [0.5 * schedules.warmup_decay_factor(n, 2, 6, "cosine") for n in range(1, 7)]
    assert lrs[:2] == [0.25, 0.5] and lrs[-1] == 0.0
    openvqa = cfg.copy(LR_SCHEDULE="openvqa", WARMUP_EPOCH=0)
    assert engine._lr(openvqa, 1, 0.5, 60, 1, 6) == schedules.warmup_lr(1, 0.5, 60, 20, 0)


def test_sgd_keys_are_checked():
    from backends.base import sgd_settings
    cfg = config.load_config("trar", "vqa", overrides={"OPT": "SGD", "OPT_PARAMS": {"momentum": 0.5}})
    assert sgd_settings(cfg) == {"momentum": 0.5, "weight_decay": 0.0, "nesterov": False}
    with pytest.raises(ValueError, match="unknown SGD setting betas"):
        sgd_settings(config.load_config("trar", "vqa", overrides={"OPT": "SGD"}))


# ---- SGD and the loss in both backends ---------------------------------------------------------------------------

def _nets(cfg, num_classes=4, seed=0):
    """The tiny Net in both frameworks with the same weights."""
    import paddle
    import torch
    mod_t, mod_p = tiny_classifier._torch_module(), tiny_classifier._paddle_module()
    torch.manual_seed(seed)
    net_t = mod_t.Net(cfg, num_classes)
    net_p = mod_p.Net(cfg, num_classes)
    state = {k: v.detach().numpy() for k, v in net_t.state_dict().items()}
    state["head.weight"] = state["head.weight"].T.copy()
    net_p.set_state_dict({k: paddle.to_tensor(v) for k, v in state.items()})
    return net_t, net_p


def _params(net):
    import torch
    if isinstance(net, torch.nn.Module):
        return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    out = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    out["head.weight"] = out["head.weight"].T.copy()
    return out


def _batches(n=4, size=20, seed=0):
    rng = np.random.default_rng(seed)
    return [{"image": rng.standard_normal((size, 3, 16, 16)).astype(np.float32),
             "label": rng.integers(0, 4, size).astype(np.int64)} for _ in range(n)]


@pytest.fixture
def recipe_cfg(tmp_path, monkeypatch):
    settings = tiny_classifier.register(tmp_path, monkeypatch)
    return config.load_config(tiny_classifier.MODEL, tiny_classifier.DATASET, overrides=settings)


def test_sgd_training_steps_agree_across_backends(recipe_cfg):
    from backends import get_backend
    cfg = recipe_cfg
    net_t, net_p = _nets(cfg)
    tt = get_backend("torch").make_trainer(net_t, cfg)
    tp = get_backend("paddle").make_trainer(net_p, cfg)
    assert type(tt.optimizer).__name__ == "SGD" and type(tp.optimizer).__name__ == "Momentum"
    for k, batch in enumerate(_batches()):
        lr = schedules.step_lr(k + 1, 0.1, 2, 4, "cosine")
        lt, lp = tt.train_step(batch, lr), tp.train_step(batch, lr)
        assert lt == pytest.approx(lp, rel=1e-5)
    a, b = _params(net_t), _params(net_p)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    first = _params(_nets(cfg)[0])
    assert any(not np.allclose(first[k], a[k]) for k in a)        # it trained


def test_mean_loss_over_accumulated_sub_batches_is_the_full_batch_mean(recipe_cfg, backend):
    """GRAD_ACCU_STEPS 2 with LOSS_REDUCTION 'mean' makes the update of one mean over the whole batch; the returned
    loss is the sum over the batch's rows (what the engine's log divides by the data size)."""
    cfg = recipe_cfg
    nets = [_nets(cfg)[0 if backend.name == "torch" else 1] for _ in range(2)]
    one = backend.make_trainer(nets[0], cfg.copy(GRAD_ACCU_STEPS=1))
    two = backend.make_trainer(nets[1], cfg)                       # GRAD_ACCU_STEPS 2 in the yml
    batch = _batches(1)[0]
    l1, l2 = one.train_step(batch, 0.05), two.train_step(batch, 0.05)
    assert l1 == pytest.approx(l2, rel=1e-5) and l1 > 20 * 0.5      # a sum over 20 rows of CE around log(4)
    a, b = _params(nets[0]), _params(nets[1])
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-7, err_msg=key)


@pytest.mark.parametrize("src,dst", [("torch", "torch"), ("paddle", "paddle"), ("torch", "paddle"),
                                     ("paddle", "torch")])
def test_sgd_state_resumes_in_either_framework(recipe_cfg, tmp_path, src, dst):
    """Two steps, save, load into a fresh net and trainer (same or other framework), a third step: the weights equal
    three uninterrupted steps (to float32 rounding across frameworks); without the momentum buffers they would not."""
    from backends import get_backend
    cfg = recipe_cfg
    be_src, be_dst = get_backend(src), get_backend(dst)
    pick = lambda pair, fw: pair[0] if fw == "torch" else pair[1]      # noqa: E731
    batches = _batches(3)
    straight = pick(_nets(cfg), src)
    trainer = be_src.make_trainer(straight, cfg)
    for batch in batches[:2]:
        trainer.train_step(batch, 0.05)
    path = str(tmp_path / f"epoch1{be_src.checkpoint_ext}")
    trainer.save(path, 1, 0.1)
    trainer.train_step(batches[2], 0.05)

    resumed = pick(_nets(cfg, seed=5), dst)
    meta = be_dst.load_checkpoint(resumed, path)
    assert sgd_state.kind(meta["optimizer"]) == "SGD" and meta["epoch"] == 1
    again = be_dst.make_trainer(resumed, cfg)
    again.load_optimizer_state(meta)
    again.train_step(batches[2], 0.05)
    a, b = _params(straight), _params(resumed)
    for key in a:
        if src == dst:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)

    fresh = pick(_nets(cfg, seed=5), dst)
    be_dst.load_checkpoint(fresh, path)
    be_dst.make_trainer(fresh, cfg).train_step(batches[2], 0.05)     # momentum restarted: another result
    assert any(not np.allclose(_params(fresh)[k], a[k], atol=1e-6) for k in a)


def test_sgd_state_kinds_and_conversion_hand_worked():
    torch_state = {"state": {0: {"momentum_buffer": np.arange(6, dtype=np.float32).reshape(2, 3)},
                             1: {"momentum_buffer": np.ones(2, np.float32)}},
                   "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0, 1]}]}
    assert sgd_state.kind(torch_state) == "SGD"
    assert sgd_state.kind({"state": {}, "param_groups": [{"betas": (0.9, 0.98), "params": []}]}) == "Adam"
    paddle_state = sgd_state.torch_to_paddle(torch_state, ["head.weight", "head.bias"], {"head.weight"})
    assert sgd_state.kind(paddle_state) == "SGD"
    np.testing.assert_array_equal(paddle_state["state"]["head.weight"]["velocity"],
                                  np.arange(6, dtype=np.float32).reshape(2, 3).T)
    back = sgd_state.paddle_to_torch(paddle_state, ["head.weight", "head.bias"], {"head.weight"}, {"lr": 0.1})
    np.testing.assert_array_equal(back["state"][0]["momentum_buffer"], torch_state["state"][0]["momentum_buffer"])
    assert back["param_groups"] == [{"lr": 0.1, "params": [0, 1]}]


def test_an_adam_trainer_does_not_take_an_sgd_state(recipe_cfg, backend, tmp_path):
    cfg = recipe_cfg
    net = _nets(cfg)[0 if backend.name == "torch" else 1]
    trainer = backend.make_trainer(net, cfg)
    trainer.train_step(_batches(1)[0], 0.05)
    path = str(tmp_path / f"e{backend.checkpoint_ext}")
    trainer.save(path, 1, 0.1)
    adam = backend.make_trainer(net, cfg.copy(OPT="Adam", OPT_PARAMS={"betas": (0.9, 0.98), "eps": 1e-9}))
    with pytest.warns(RuntimeWarning, match="not Adam's"):
        adam.load_optimizer_state(backend.load_checkpoint(net, path))


# ---- a whole run -------------------------------------------------------------------------------------------------

class _Recording:
    """A trainer that records the learning rate of every step."""

    def __init__(self, trainer, lrs):
        self.trainer, self.lrs = trainer, lrs

    def train_step(self, batch, lr):
        self.lrs.append(lr)
        return self.trainer.train_step(batch, lr)

    def __getattr__(self, name):
        return getattr(self.trainer, name)


def test_train_val_test_and_resume_a_classifier_on_the_generated_images(tmp_path, monkeypatch, backend):
    settings = tiny_classifier.register(tmp_path, monkeypatch)
    tiny_classifier.small_demo_images(settings["DATA_ROOT"])
    lrs = []
    make_trainer = backend.make_trainer
    monkeypatch.setattr(backend, "make_trainer", lambda net, cfg: _Recording(make_trainer(net, cfg), lrs))
    cfg = config.load_config(tiny_classifier.MODEL, tiny_classifier.DATASET, overrides=settings)
    last = engine.run(cfg, backend)
    assert last["epoch"] == 3 and 0.0 <= last["val"] <= 100.0
    # 60 images, batches of 20: 3 updates an epoch, 9 in all; warm-up 4 then cosine to 0 at update 9
    assert lrs == [0.1 * schedules.warmup_decay_factor(n, 4, 9, "cosine") for n in range(1, 10)]
    log = open(checkpoints.log_path(cfg, "cls"), encoding="utf-8").read()
    assert log.count("Overall Accuracy is: ") == 3 and "top-5 : " in log and "class red_circle : " in log
    assert os.path.isfile(os.path.splitext(checkpoints.log_path(cfg, "cls"))[0] + "_curves.png")

    test_cfg = config.load_config(tiny_classifier.MODEL, tiny_classifier.DATASET, run_mode="test",
                                  overrides=dict(settings, CKPT_VERSION="cls", CKPT_EPOCH=3))
    test = engine.run(test_cfg, backend)
    written = json.load(open(test["result_file"], encoding="utf-8"))
    assert list(written) == [f"test/{i:05d}.png" for i in range(5)] and all(len(v) == 5 for v in written.values())

    # resuming after epoch 2 repeats epoch 3 exactly: its batches, flips, learning rates and SGD momentum
    del lrs[:]
    resume = config.load_config(tiny_classifier.MODEL, tiny_classifier.DATASET,
                                overrides=dict(settings, VERSION="cls2", RESUME=True, CKPT_VERSION="cls",
                                               CKPT_EPOCH=2))
    engine.run(resume, backend)
    assert lrs == [0.1 * schedules.warmup_decay_factor(n, 4, 9, "cosine") for n in (7, 8, 9)]
    resumed, straight = (backend.build_model(cfg, num_classes=10) for _ in range(2))
    backend.load_checkpoint(resumed, checkpoints.ckpt_path(resume, 3, backend.checkpoint_ext))
    backend.load_checkpoint(straight, checkpoints.ckpt_path(cfg, 3, backend.checkpoint_ext))
    a, b = _params(resumed), _params(straight)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_convert_carries_an_sgd_state_both_ways():
    """convert/checkpoints.py: an SGD state goes through formats.sgd_state (buffers transposed for Linear weights);
    an Adam state under OPT 'SGD' is not converted."""
    import types

    from convert.checkpoints import _convert_optimizer
    manifest = types.SimpleNamespace(param_names=["head.weight", "head.bias"], linear_keys={"head.weight"})
    cfg = config.load_config("trar", "vqa", overrides={"OPT": "SGD", "OPT_PARAMS": {"momentum": 0.9}})
    buf = np.arange(6, dtype=np.float32).reshape(2, 3)
    saved = {"state": {0: {"momentum_buffer": buf}, 1: {"momentum_buffer": np.ones(2, np.float32)}},
             "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0, 1]}]}
    paddle_entry, status, _ = _convert_optimizer(saved, "torch2paddle", manifest, cfg, 0.1, [])
    assert status == "converted" and paddle_entry["framework"] == "paddle"
    np.testing.assert_array_equal(paddle_entry["state"]["head.weight"]["velocity"], buf.T)
    back, status, _ = _convert_optimizer(paddle_entry, "paddle2torch", manifest, cfg, 0.1, [])
    assert status == "converted" and back["param_groups"][0]["momentum"] == 0.9 and back["param_groups"][0]["lr"] == 0.1
    np.testing.assert_array_equal(back["state"][0]["momentum_buffer"], buf)
    adam = {"state": {0: {"step": 1, "exp_avg": buf, "exp_avg_sq": buf}},
            "param_groups": [{"betas": (0.9, 0.98), "params": [0]}]}
    assert _convert_optimizer(adam, "torch2paddle", manifest, cfg, 0.1, [])[0] is None
