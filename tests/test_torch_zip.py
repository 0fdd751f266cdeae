"""formats.torch_zip: torch.save's zip format written from numpy, read back by torch and by the restricted reader."""
import collections

import numpy as np
import pytest

from formats.restricted_pickle import read_torch_checkpoint
from formats.torch_zip import write_torch_zip


def _container():
    weights = collections.OrderedDict(
        w=np.arange(6, dtype=np.float32).reshape(2, 3), step=np.array(7, np.int64), empty=np.zeros((0, 4), np.float16),
        mask=np.array([True, False]), t=np.arange(6, dtype=np.float64).reshape(3, 2).T)   # a transposed view
    return {"state_dict": weights, "epoch": 3, "lr_base": 1e-4, "big": 2 ** 40, "name": "r\u00e9sum\u00e9",
            "optimizer": {"state": {0: {"exp_avg": np.ones(3, np.float32)}},
                          "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.98), "params": [0], "amsgrad": False,
                                            "foreach": None}]}}


def _write(path):
    with open(path, "wb") as f:
        write_torch_zip(f, _container())


def test_the_restricted_reader_gives_back_every_value(tmp_path):
    _write(tmp_path / "c.pkl")
    got, want = read_torch_checkpoint(str(tmp_path / "c.pkl")), _container()
    assert list(got["state_dict"]) == list(want["state_dict"])
    for key, value in want["state_dict"].items():
        assert got["state_dict"][key].dtype == value.dtype and got["state_dict"][key].shape == value.shape, key
        np.testing.assert_array_equal(got["state_dict"][key], value)
    assert (got["epoch"], got["lr_base"], got["big"], got["name"]) == (3, 1e-4, 2 ** 40, "r\u00e9sum\u00e9")
    assert got["optimizer"]["param_groups"] == want["optimizer"]["param_groups"]
    np.testing.assert_array_equal(got["optimizer"]["state"][0]["exp_avg"], np.ones(3, np.float32))


def test_torch_load_weights_only_reads_it_as_torch_save_would(tmp_path):
    torch = pytest.importorskip("torch")
    _write(tmp_path / "c.pkl")
    got = torch.load(tmp_path / "c.pkl", weights_only=True)
    assert isinstance(got["state_dict"], collections.OrderedDict)
    for key, value in _container()["state_dict"].items():
        assert tuple(got["state_dict"][key].shape) == value.shape, key
        np.testing.assert_array_equal(got["state_dict"][key].numpy(), value)
    assert got["state_dict"]["step"].dtype == torch.int64 and got["state_dict"]["mask"].dtype == torch.bool
    assert got["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.98) and got["big"] == 2 ** 40


def test_objects_a_checkpoint_never_holds_are_refused(tmp_path):
    with open(tmp_path / "c.pkl", "wb") as f, pytest.raises(TypeError, match="cannot write a set"):
        write_torch_zip(f, {"x": {1, 2}})
    with open(tmp_path / "d.pkl", "wb") as f, pytest.raises(TypeError, match="complex64"):
        write_torch_zip(f, {"x": np.zeros(2, np.complex64)})
