"""Checkpoint files across frameworks: the original openvqa container (zip and legacy torch formats), bare and
DataParallel state dicts, Paddle-port .pdparams, this project's own files, and the errors for files that do not fit."""
import pickle

import numpy as np
import pytest

from formats.layout import CheckpointMismatch
from formats.restricted_pickle import CheckpointReadError
from tests.model_configs import ANSWER_SIZE, TOKEN_SIZE, make_batch, tiny_cfg
from tests.tolerances import FORWARD_ATOL

torch = pytest.importorskip("torch")
paddle = pytest.importorskip("paddle")

MODELS = {"trar": ("trar", {}), "mcan": ("mcan_small", {})}


@pytest.fixture(scope="module")
def backends():
    from backends import get_backend
    torch_be, paddle_be = get_backend("torch"), get_backend("paddle")
    torch_be.set_device("")
    paddle_be.set_device("")
    return torch_be, paddle_be


def _cfg(model="trar", **overrides):
    return tiny_cfg(MODELS[model][0], "vqa", DROPOUT_R=0.0, **overrides)


def _torch_net(be, cfg, answer_size=ANSWER_SIZE, seed=0):
    be.seed(seed)
    return be.build_model(cfg, TOKEN_SIZE, answer_size)


def _fresh(be, cfg, answer_size=ANSWER_SIZE, seed=1):
    """A net with other random weights, so a load that does nothing cannot pass."""
    be.seed(seed)
    return be.build_model(cfg, TOKEN_SIZE, answer_size)


def _container(net):
    return {"state_dict": net.state_dict(), "optimizer": None, "lr_base": 2e-5, "epoch": 11}


def _logits_match(be, net, batch, expected):
    got = be.predict(net, batch)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= FORWARD_ATOL


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_original_container_loads_in_both_backends(backends, tmp_path, model, zip_format):
    torch_be, paddle_be = backends
    cfg = _cfg(model)
    source = _torch_net(torch_be, cfg)
    batch = make_batch(cfg, batch_size=3)
    expected = torch_be.predict(source, batch)
    path = str(tmp_path / "epoch11.pkl")
    torch.save(_container(source), path, _use_new_zipfile_serialization=zip_format)
    for be in backends:
        net = _fresh(be, cfg)
        assert np.abs(be.predict(net, batch) - expected).max() > 1e-3   # the load below has work to do
        meta = be.load_checkpoint(net, path)
        assert meta["epoch"] == 11 and meta["lr_base"] == pytest.approx(2e-5)
        _logits_match(be, net, batch, expected)


@pytest.mark.parametrize("prefix", ["", "module."], ids=["bare", "dataparallel"])
def test_bare_state_dict_and_module_prefix(backends, tmp_path, prefix):
    torch_be, _ = backends
    cfg = _cfg()
    source = _torch_net(torch_be, cfg)
    batch = make_batch(cfg)
    expected = torch_be.predict(source, batch)
    path = str(tmp_path / "bare.pkl")
    torch.save({prefix + k: v for k, v in source.state_dict().items()}, path)
    for be in backends:
        net = _fresh(be, cfg)
        meta = be.load_checkpoint(net, path)
        assert meta == {"epoch": None, "lr_base": None, "optimizer": None}
        _logits_match(be, net, batch, expected)


def _paddle_port_file(backends, cfg, path, container=False):
    """A file as the Paddle port writes it, built by hand from a torch net: every Linear weight transposed
    (Linear layers found in the paddle net's own layer tree), LSTM tensors under both names, the name table.
    container=True: the port's paddle.save({'state_dict', 'optimizer', 'lr_base', 'epoch'}) with paddle Tensors."""
    torch_be, paddle_be = backends
    source = _torch_net(torch_be, cfg)
    layer_tree = _fresh(paddle_be, cfg)
    linear = {f"{name}.weight" for name, layer in layer_tree.named_sublayers()
              if isinstance(layer, paddle.nn.Linear)}
    state = {}
    for key, value in source.state_dict().items():
        array = value.numpy()
        state[key] = array.T.copy() if key in linear else array
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        state[f"lstm.0.cell.{name}"] = state[f"lstm.{name}_l0"].copy()
    if container:
        tensors = {k: paddle.to_tensor(v) for k, v in state.items()}
        paddle.save({"state_dict": tensors, "optimizer": {}, "lr_base": 1e-4, "epoch": 4}, path)
    else:
        state["StructuredToParameterName@@"] = {k: f"param_{i}.w_0" for i, k in enumerate(state)}
        paddle.save(state, path)
    return source, linear


@pytest.mark.parametrize("container", [False, True], ids=["pdparams", "container"])
def test_paddle_port_files_load_in_both_backends(backends, tmp_path, container):
    torch_be, _ = backends
    cfg = _cfg()
    path = str(tmp_path / ("epoch4.pkl" if container else "port.pdparams"))
    source, linear = _paddle_port_file(backends, cfg, path, container)
    assert len(linear) > 20                                   # the transposes are really exercised
    batch = make_batch(cfg)
    expected = torch_be.predict(source, batch)
    for be in backends:
        net = _fresh(be, cfg)
        meta = be.load_checkpoint(net, path)
        assert meta["epoch"] == (4 if container else None)   # a bare .pdparams has no .pdopt beside it
        _logits_match(be, net, batch, expected)


def test_inconsistent_lstm_aliases_are_an_error(backends, tmp_path):
    cfg = _cfg()
    path = str(tmp_path / "port.pdparams")
    _paddle_port_file(backends, cfg, path)
    state = paddle.load(path, return_numpy=True)
    state["lstm.0.cell.bias_ih"] = state["lstm.0.cell.bias_ih"] + 1.0
    paddle.save(state, path)
    for be in backends:
        with pytest.raises(CheckpointMismatch, match="lstm.0.cell.bias_ih differs from lstm.bias_ih_l0"):
            be.load_checkpoint(_fresh(be, cfg), path)


def test_own_files_cross_over(backends, tmp_path):
    """A torch-trained .pkl into paddle and a paddle-trained .pdparams (+ .pdopt) into torch give equal logits."""
    torch_be, paddle_be = backends
    cfg = _cfg()
    batch = make_batch(cfg)
    for writer, reader in ((torch_be, paddle_be), (paddle_be, torch_be)):
        net = _torch_net(writer, cfg)
        trainer = writer.make_trainer(net, cfg)
        path = str(tmp_path / f"epoch3{writer.checkpoint_ext}")
        trainer.save(path, 3, 4e-5)
        other = _fresh(reader, cfg)
        meta = reader.load_checkpoint(other, path)
        assert meta["epoch"] == 3 and meta["lr_base"] == pytest.approx(4e-5)
        _logits_match(reader, other, batch, writer.predict(net, batch))


CELL_ALIASES = {"lstm.0.cell.weight_ih": "lstm.weight_ih_l0", "lstm.0.cell.weight_hh": "lstm.weight_hh_l0",
                "lstm.0.cell.bias_ih": "lstm.bias_ih_l0", "lstm.0.cell.bias_hh": "lstm.bias_hh_l0"}


def test_paddle_files_hold_both_lstm_names_as_a_stock_paddle_lstm_expects(backends, tmp_path):
    """The .pdparams the paddle backend and torch2paddle write list each LSTM tensor under paddle.nn.LSTM's two
    names (as the Paddle ports' files do), so a port built on a stock paddle.nn.LSTM loads them with no key missing."""
    from convert.checkpoints import convert_file
    from formats.restricted_pickle import read_pdparams
    from tests.test_convert import config_file
    torch_be, paddle_be = backends
    cfg = _cfg()
    paddle_be.make_trainer(_torch_net(paddle_be, cfg), cfg).save(str(tmp_path / "own.pdparams"), 1, 1e-4)
    torch_be.make_trainer(_torch_net(torch_be, cfg), cfg).save(str(tmp_path / "t.pkl"), 1, 1e-4)
    convert_file("torch2paddle", str(tmp_path / "t.pkl"), str(tmp_path / "conv.pdparams"), "trar", "vqa",
                 config=config_file(tmp_path, "trar", "vqa"))
    for name in ("own.pdparams", "conv.pdparams"):
        state = read_pdparams(str(tmp_path / name))
        for alias, torch_name in CELL_ALIASES.items():
            np.testing.assert_array_equal(state[alias], state[torch_name])
        stock = paddle.nn.LSTM(cfg.WORD_EMBED_SIZE, cfg.HIDDEN_SIZE)               # what a port's Net holds
        lstm_state = {k[len("lstm."):]: v for k, v in state.items() if k.startswith("lstm.")}
        assert sorted(lstm_state) == sorted(stock.state_dict())                   # 8 keys: 4 tensors, 2 names each
        missing, unexpected = stock.set_state_dict(lstm_state)
        assert missing == [] and unexpected == []
        np.testing.assert_array_equal(stock.weight_hh_l0.numpy(), state["lstm.weight_hh_l0"])


@pytest.mark.parametrize("change, hint", [
    (dict(POOLING="fc"), "POOLING"),
    (dict(ORDERS=[0, 1]), "ORDERS"),
    (dict(LAYER=3), "LAYER"),
    (dict(HIDDEN_SIZE=16, FLAT_MLP_SIZE=16), "HIDDEN_SIZE"),
], ids=["pooling", "orders", "layer", "hidden"])
def test_wrong_config_names_the_probable_key(backends, tmp_path, change, hint):
    torch_be, _ = backends
    path = str(tmp_path / "avg.pkl")
    torch.save(_container(_torch_net(torch_be, _cfg())), path)
    for be in backends:
        with pytest.raises(CheckpointMismatch) as info:
            be.load_checkpoint(_fresh(be, _cfg(**change)), path)
        message = str(info.value)
        assert hint in message and path in message and "\n" not in message


def test_other_answer_list_is_named(backends, tmp_path):
    torch_be, _ = backends
    path = str(tmp_path / "answers.pkl")
    torch.save(_container(_torch_net(torch_be, _cfg())), path)
    for be in backends:
        with pytest.raises(CheckpointMismatch, match=r"shape conflicts 2 \(proj\.weight.*answer list"):
            be.load_checkpoint(_fresh(be, _cfg(), answer_size=ANSWER_SIZE + 2), path)


def test_trar_checkpoint_into_mcan_names_the_model(backends, tmp_path):
    torch_be, _ = backends
    path = str(tmp_path / "trar.pkl")
    torch.save(_container(_torch_net(torch_be, _cfg("trar"))), path)
    for be in backends:
        with pytest.raises(CheckpointMismatch, match=r"unexpected keys \d+ .*routing_block.*check MODEL"):
            be.load_checkpoint(_fresh(be, _cfg("mcan")), path)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_truncated_file_gives_one_line_error(backends, tmp_path, zip_format):
    torch_be, _ = backends
    path = tmp_path / "epoch1.pkl"
    torch.save(_container(_torch_net(torch_be, _cfg())), str(path), _use_new_zipfile_serialization=zip_format)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    for be in backends:
        with pytest.raises(CheckpointReadError) as info:
            be.load_checkpoint(_fresh(be, _cfg()), str(path))
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_not_a_state_dict(backends, tmp_path):
    path = tmp_path / "list.pkl"
    torch.save({"weights": [torch.zeros(2)]}, str(path))
    for be in backends:
        with pytest.raises(CheckpointMismatch, match="neither a checkpoint container"):
            be.load_checkpoint(_fresh(be, _cfg()), str(path))


class _RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        import os
        return os.system, (self.command,)


def test_malicious_checkpoint_is_refused_by_both_backends(backends, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    torch.save({"state_dict": {"w": _RunsCommand(f"touch {marker}")}}, str(path))
    for be in backends:
        with pytest.raises(pickle.UnpicklingError, match="system"):
            be.load_checkpoint(_fresh(be, _cfg()), str(path))
    assert not marker.exists()


@pytest.mark.parametrize("opt", ["Adam", "SGD"])
def test_pdopt_goes_straight_into_a_fresh_paddle_optimizer(opt, tmp_path):
    """What a Paddle user does with any .pdopt: paddle.load + set_state_dict on a fresh optimizer of a net built the
    same way in a fresh process (a new name generator gives the same internal names), then one step; the moments
    equal the trained optimizer's, and the next step's weights equal the trained run's."""
    from paddle.utils import unique_name

    from tests.test_convert import trained
    cfg = _cfg(OPT=opt, OPT_PARAMS={}) if opt == "SGD" else _cfg()
    with unique_name.guard():
        be, net, trainer, _ = trained("paddle", cfg, steps=2)
    path = str(tmp_path / "epoch1.pdparams")
    trainer.save(path, 1, 1e-3)
    with unique_name.guard():   # a fresh process: model and optimizer names from one new generator
        be.seed(5)
        fresh = be.build_model(cfg, TOKEN_SIZE, ANSWER_SIZE)
        fresh.set_state_dict(paddle.load(path))
        params = [p for p in fresh.parameters() if not p.stop_gradient]
        optimizer = paddle.optimizer.Momentum(learning_rate=0.0, momentum=0.9, parameters=params) if opt == "SGD" \
            else paddle.optimizer.Adam(learning_rate=0.0, parameters=params)
        optimizer.set_state_dict(paddle.load(str(tmp_path / "epoch1.pdopt")))
        optimizer._create_accumulators(paddle.static.default_main_program().global_block(), params)
    expected = {k: v.numpy() for k, v in trainer.optimizer.state_dict().items()}
    got = {k: v.numpy() for k, v in optimizer.state_dict().items()}
    assert sorted(got) == sorted(expected) and len(got) >= (1 if opt == "SGD" else 4) * len(params)
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    assert any(np.abs(v).max() > 0 for k, v in got.items() if "moment1" in k or "velocity" in k)
    # the project's own reader still rebuilds its structured entry from the same file
    meta = be.load_checkpoint(_fresh(be, cfg), path)
    assert meta["epoch"] == 1 and meta["optimizer"]["framework"] == "paddle"
    assert len(meta["optimizer"]["state"]) == len(params)


def test_pdopt_of_the_previous_version_still_resumes(tmp_path):
    """A .pdopt as the previous version wrote it (the structured 'optimizer' entry, no Paddle keys) restores the same
    moments into a fresh trainer."""
    from backends.paddle.checkpoint import optimizer_state
    from formats import adam_state, integrity
    from formats.restricted_pickle import read_pdparams
    from tests.test_convert import trained
    cfg = _cfg()
    be, net, trainer, _ = trained("paddle", cfg, steps=2)
    path = str(tmp_path / "epoch2.pdparams")
    trainer.save(path, 2, 1e-3)
    new = read_pdparams(str(tmp_path / "epoch2.pdopt"))
    old = {"epoch": 2, "lr_base": 1e-3, "optimizer": adam_state.paddle_entry(new)}
    assert adam_state.PADDLE_NAMES_KEY not in old and old["optimizer"]["state"]
    with open(tmp_path / "epoch2.pdopt", "wb") as f:
        pickle.dump({**old, **integrity.pdopt_checksums(old, path)}, f, protocol=4)
    other = _fresh(be, cfg)
    meta = be.load_checkpoint(other, path)
    resumed = be.make_trainer(other, cfg)
    resumed.load_optimizer_state(meta)
    want, got = optimizer_state(trainer.optimizer, net)["state"], optimizer_state(resumed.optimizer, other)["state"]
    assert sorted(got) == sorted(want)
    for name, accumulators in want.items():
        for key, value in accumulators.items():
            np.testing.assert_array_equal(got[name][key], value, err_msg=f"{name}.{key}")
