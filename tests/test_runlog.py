import datetime

import pytest

from core.config import load_config
from core.runlog import RunLog, backend_spans, read_history


@pytest.fixture
def cfg():
    return load_config("trar", "demo", {"VERSION": "v"})


def test_log_format(tmp_path, cfg):
    log = RunLog(str(tmp_path / "log" / "log_run_v.txt"))
    log.start(cfg)
    log.epoch_header(now=datetime.datetime(2022, 4, 10, 18, 21, 31))
    log.epoch_end(1, 2.5, 2.5e-05, 12.7, 0.25)
    log.accuracy(67.6234, {"yes/no": 85.3, "number": 49.891, "other": 58.83})
    log.line("done")
    text = (tmp_path / "log" / "log_run_v.txt").read_text()
    assert text == (str(cfg)
                    + "=====================================\nnowTime: 2022-04-10 18:21:31\n"
                    + "Epoch: 1, Loss: 2.5, Lr: 2.5e-05\nElapsed time: 12, Speed(s/batch): 0.25\n\n"
                    + "Overall Accuracy is: 67.62\nyes/no : 85.30 number : 49.89 other : 58.83 \n\n"
                    + "done\n")


def test_start_clears_unless_resuming(tmp_path, cfg):
    path = tmp_path / "log.txt"
    path.write_text("old run\n")
    RunLog(str(path)).start(cfg, resume=True)
    assert path.read_text().startswith("old run\n{ ")
    RunLog(str(path)).start(cfg)
    assert path.read_text() == str(cfg)


def test_history_round_trip(tmp_path, cfg):
    path = str(tmp_path / "log.txt")
    log = RunLog(path)
    log.start(cfg)
    log.epoch_header()
    log.epoch_end(1, 3.25, 0.00025, 10, 0.5)
    log.accuracy(40.5, {"yes/no": 60.0, "number": 20.25, "other": 10.0})
    log.epoch_header()
    log.epoch_end(2, 2.0, 0.0005, 11, 0.55)
    assert read_history(path) == [
        {"epoch": 1, "loss": 3.25, "lr": 0.00025, "elapsed": 10, "speed": 0.5, "val_overall": 40.5,
         "val_per_type": {"yes/no": 60.0, "number": 20.25, "other": 10.0}},
        {"epoch": 2, "loss": 2.0, "lr": 0.0005, "elapsed": 11, "speed": 0.55},
    ]


def test_history_of_an_original_log_with_a_resume(tmp_path):
    path = tmp_path / "log_run_5652158.txt"
    path.write_text(
        "{ BATCH_SIZE        }->64\n"
        "=====================================\nnowTime: 2022-04-10 18:21:31\n"
        "Epoch: 10, Loss: 1.9, Lr: 0.0001\nElapsed time: 3000, Speed(s/batch): 0.43\n\n"
        "Overall Accuracy is: 66.10\nyes/no : 84.00 number : 48.00 other : 57.50 \n\n"
        "{ BATCH_SIZE        }->64\n"
        "=====================================\nnowTime: 2022-04-11 09:00:00\n"
        "Epoch: 10, Loss: 1.8, Lr: 0.0001\nElapsed time: 2990, Speed(s/batch): 0.43\n\n"
        "Overall Accuracy is: 66.40\nCompare Numbers : 99.42 Exist : 99.54 \n\n"
        "Epoch: 11, Loss: 1.7, Lr: 2e-05\nElapsed time: 2995, Speed(s/batch): 0.432\n\n")
    history = read_history(str(path))
    assert [h["epoch"] for h in history] == [10, 11]
    assert history[0]["loss"] == 1.8 and history[0]["val_overall"] == 66.4
    assert history[0]["val_per_type"] == {"Compare Numbers": 99.42, "Exist": 99.54}
    assert history[1] == {"epoch": 11, "loss": 1.7, "lr": 2e-05, "elapsed": 2995, "speed": 0.432}


def test_a_run_resumed_in_the_other_framework_marks_its_epochs(tmp_path, cfg):
    """Each (re)started run writes which backend runs its epochs; read_history gives every epoch its backend."""
    path = str(tmp_path / "log.txt")
    log = RunLog(path)
    log.start(cfg, backend="torch", first_epoch=1)
    log.epoch_header()
    log.epoch_end(1, 3.0, 0.001, 10, 0.5)
    log.epoch_header()
    log.epoch_end(2, 2.5, 0.001, 10, 0.5)
    log.start(cfg, resume=True, backend="paddle", first_epoch=2, resumed_from="ckpts/ckpt_v/epoch1.pkl")
    log.epoch_header()
    log.epoch_end(2, 2.4, 0.001, 10, 0.5)
    log.epoch_header()
    log.epoch_end(3, 2.0, 0.001, 10, 0.5)
    text = open(path).read()
    assert "Training on the torch backend from epoch 1\n" in text
    assert "Training on the paddle backend from epoch 2, resumed from ckpts/ckpt_v/epoch1.pkl\n" in text
    history = read_history(path)
    assert [(h["epoch"], h["loss"], h["backend"]) for h in history] == [(1, 3.0, "torch"), (2, 2.4, "paddle"),
                                                                       (3, 2.0, "paddle")]
    assert backend_spans(history) == [("torch", 1, 1), ("paddle", 2, 3)]


def test_a_val_entry_has_a_header_and_its_accuracy_belongs_to_no_epoch(tmp_path, cfg):
    path = str(tmp_path / "log.txt")
    log = RunLog(path)
    log.start(cfg, backend="torch")
    log.epoch_header()
    log.epoch_end(1, 3.0, 0.001, 10, 0.5)
    log.accuracy(40.0, {"yes/no": 50.0})
    log.evaluation("val", "ckpts/ckpt_v/epoch1.pkl", "paddle", epoch=1, now=datetime.datetime(2026, 1, 2, 3, 4, 5))
    log.accuracy(41.0, {"yes/no": 51.0})
    log.evaluation("test", "ckpts/ckpt_v/epoch1.pkl", "torch", now=datetime.datetime(2026, 1, 2, 3, 5, 0))
    entries = open(path).read().split("Overall Accuracy is: 40.00\nyes/no : 50.00 \n\n")[1]
    assert entries == ("=====================================\nnowTime: 2026-01-02 03:04:05\n"
                       "Evaluation (val) of ckpts/ckpt_v/epoch1.pkl (epoch 1) on the paddle backend\n"
                       "Overall Accuracy is: 41.00\nyes/no : 51.00 \n\n"
                       "=====================================\nnowTime: 2026-01-02 03:05:00\n"
                       "Evaluation (test) of ckpts/ckpt_v/epoch1.pkl on the torch backend\n")
    assert read_history(path)[0]["val_overall"] == 40.0      # the training run's own validation, not the later one


def test_step_lines_are_not_read_as_epochs(tmp_path, cfg):
    path = str(tmp_path / "log.txt")
    log = RunLog(path)
    log.start(cfg)
    log.epoch_header()
    log.line("[Epoch 1/2][Step 2/6] Loss: 0.5000, Lr: 1.00e-03, 100 samples/s, ETA 0:00:01 (epoch), 0:00:03 (run)")
    log.epoch_end(1, 3.0, 0.001, 10, 0.5)
    assert read_history(path) == [{"epoch": 1, "loss": 3.0, "lr": 0.001, "elapsed": 10, "speed": 0.5}]
