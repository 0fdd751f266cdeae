"""core/scalars.py: VisualDL and TensorBoard scalars, each written only where its package is installed and
SCALAR_LOGS is on. Neither package is in the requirements: the writers are checked against stand-ins that record the
calls the packages' documented APIs receive, and against the real package where it is installed."""
import importlib.util
import sys
import types

import pytest

from core import scalars
from core.config import load_config


def _cfg(tmp_path, **overrides):
    return load_config("trar", "demo", {"RESULTS_ROOT": str(tmp_path / "results"), "VERSION": "v", **overrides})


def _module(monkeypatch, name, **attributes):
    module = types.ModuleType(name)
    for key, value in attributes.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)
    return module


class _Recorder:
    def __init__(self, calls, name):
        self.calls, self.name = calls, name

    def __getattr__(self, method):
        return lambda *args, **kwargs: self.calls.append((self.name, method, args, kwargs))


@pytest.fixture
def fake_packages(monkeypatch):
    return install_stand_ins(monkeypatch)


def install_stand_ins(monkeypatch):
    """visualdl.LogWriter and the three tensorboard modules TensorBoardWriter imports, recording their calls in the
    list returned."""
    calls = []

    def log_writer(logdir):
        calls.append(("visualdl", "LogWriter", (logdir,), {}))
        return _Recorder(calls, "visualdl")

    def event_file_writer(path):
        calls.append(("tensorboard", "EventFileWriter", (path,), {}))
        return _Recorder(calls, "tensorboard")

    class Summary:
        def __init__(self, value):
            self.value = value

        class Value:
            def __init__(self, tag, simple_value):
                self.tag, self.simple_value = tag, simple_value

    class Event:
        def __init__(self, wall_time, step, summary):
            self.wall_time, self.step, self.summary = wall_time, step, summary

    _module(monkeypatch, "visualdl", LogWriter=log_writer)
    for name in ("tensorboard", "tensorboard.compat", "tensorboard.compat.proto", "tensorboard.summary",
                 "tensorboard.summary.writer"):
        _module(monkeypatch, name)
    _module(monkeypatch, "tensorboard.compat.proto.event_pb2", Event=Event)
    _module(monkeypatch, "tensorboard.compat.proto.summary_pb2", Summary=Summary)
    _module(monkeypatch, "tensorboard.summary.writer.event_file_writer", EventFileWriter=event_file_writer)
    return calls


def test_each_installed_package_gets_the_scalars(tmp_path, fake_packages):
    board = scalars.Scalars.open(_cfg(tmp_path), available=lambda package: True)
    board.scalar("train/loss", 0.5, 7)
    board.flush()
    board.close()
    root = tmp_path / "results" / "scalars" / "v"
    assert (root / "visualdl").is_dir() and (root / "tensorboard").is_dir()
    by_package = {name: [(method, args, kwargs) for who, method, args, kwargs in fake_packages if who == name]
                  for name in ("visualdl", "tensorboard")}
    assert by_package["visualdl"] == [("LogWriter", (str(root / "visualdl"),), {}),
                                      ("add_scalar", (), {"tag": "train/loss", "value": 0.5, "step": 7}),
                                      ("flush", (), {}), ("close", (), {})]
    (constructor, added, flushed, closed) = by_package["tensorboard"]
    assert constructor == ("EventFileWriter", (str(root / "tensorboard"),), {})
    assert added[0] == "add_event" and flushed[0] == "flush" and closed[0] == "close"
    event = added[1][0]
    assert event.step == 7 and [(v.tag, v.simple_value) for v in event.summary.value] == [("train/loss", 0.5)]


def test_none_without_the_packages_or_with_scalar_logs_off(tmp_path, fake_packages):
    assert scalars.Scalars.open(_cfg(tmp_path), available=lambda package: False).writers == []
    assert scalars.Scalars.open(_cfg(tmp_path, SCALAR_LOGS=False), available=lambda package: True).writers == []
    only = scalars.Scalars.open(_cfg(tmp_path), available=lambda package: package == "tensorboard")
    assert [type(w) for w in only.writers] == [scalars.TensorBoardWriter]
    assert not (tmp_path / "results" / "scalars" / "v" / "visualdl").exists()
    assert not [call for call in fake_packages if call[0] == "visualdl"]


def test_this_machine_s_packages_decide(tmp_path):
    """With the real import machinery: a package that is not installed gets no writer and no folder; one that is
    gets its file (TensorBoard's read back with its own reader)."""
    board = scalars.Scalars.open(_cfg(tmp_path))
    board.scalar("epoch/loss", 1.25, 3)
    board.close()
    for package in ("visualdl", "tensorboard"):
        folder = tmp_path / "results" / "scalars" / "v" / package
        if importlib.util.find_spec(package) is None:
            assert not folder.exists()
        else:
            assert folder.is_dir() and any(folder.iterdir())
    if importlib.util.find_spec("tensorboard") is not None:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        events = EventAccumulator(str(tmp_path / "results" / "scalars" / "v" / "tensorboard")).Reload()
        assert [(e.step, e.value) for e in events.Scalars("epoch/loss")] == [(3, 1.25)]


def test_a_broken_install_is_a_warning_not_a_failed_run(tmp_path, monkeypatch, caplog):
    _module(monkeypatch, "visualdl")                                # no LogWriter in it: the import fails
    board = scalars.Scalars.open(_cfg(tmp_path), available=lambda package: package == "visualdl")
    assert board.writers == []
    assert any("SCALAR_LOGS: visualdl is installed but cannot be imported" in m for m in caplog.messages)
