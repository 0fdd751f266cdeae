"""Outputs never replace a user's files, and inputs that are not regular files are refused (issue 26): the demo
generator's --out, deploy predict's --out, deploy export's --out, a named pipe among the feature files."""
import json
import os
import subprocess
import sys

import pytest

from core.data import demo
from core.data.demo import generate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(n_train_images=4, n_val_images=2, n_test_images=2, questions_per_image=2)
SMALL_FLAGS = ["--train-images", "4", "--val-images", "2", "--test-images", "2", "--questions-per-image", "2"]


def _exit_message(call):
    with pytest.raises(SystemExit) as exc:
        call()
    message = str(exc.value.code)
    assert "\n" not in message and message.startswith("error: ")
    return message


# ------------------------------------------------------------------------------------------ the demo generator
def test_the_demo_generator_refuses_a_folder_of_other_files(tmp_path):
    (tmp_path / "vqa" / "raw").mkdir(parents=True)
    mine = tmp_path / "vqa" / "raw" / "v2_OpenEnded_mscoco_train2014_questions.json"
    mine.write_text('{"questions": ["my real data"]}')
    message = _exit_message(lambda: demo.main(["--out", str(tmp_path), *SMALL_FLAGS]))
    assert str(tmp_path) in message and demo.SUMMARY_FILE in message
    assert mine.read_text() == '{"questions": ["my real data"]}'
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["raw", mine.name, "vqa"]
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert str(a_file) in _exit_message(lambda: demo.main(["--out", str(a_file), *SMALL_FLAGS]))


def test_the_demo_generator_writes_over_its_own_previous_set(tmp_path):
    out = tmp_path / "demo"
    demo.main(["--out", str(out), "--seed", "1", *SMALL_FLAGS])          # missing folder
    demo.main(["--out", str(out), "--seed", "2", *SMALL_FLAGS])          # its own set: replaced
    assert json.loads((out / demo.SUMMARY_FILE).read_text())["seed"] == 2
    auto = tmp_path / "auto"
    generate(str(auto), origin=demo.AUTOMATIC, **SMALL)                  # run.py's own set too
    demo.main(["--out", str(auto), "--seed", "3", *SMALL_FLAGS])
    empty = tmp_path / "empty"
    empty.mkdir()
    demo.main(["--out", str(empty), *SMALL_FLAGS])


# ------------------------------------------------------------------------------------------ deploy
def test_deploy_predict_refuses_to_write_over_its_questions(tmp_path):
    from deploy.__main__ import main
    questions = tmp_path / "questions.json"
    questions.write_text('{"questions": []}')
    (tmp_path / "feats").mkdir()
    (tmp_path / "link").symlink_to(tmp_path)
    for out in (questions, tmp_path / "feats" / ".." / "questions.json", tmp_path / "link" / "questions.json"):
        message = _exit_message(lambda: main(["predict", "--model", str(tmp_path / "no_model"), "--questions",
                                              str(questions), "--features-dir", str(tmp_path / "feats"),
                                              "--out", str(out)]))
        assert "--out" in message and str(out) in message and "--questions" in message
        assert questions.read_text() == '{"questions": []}'


def test_deploy_export_refuses_a_folder_that_is_not_an_export(tmp_path):
    from deploy.__main__ import main
    from deploy.bundle import BundleError, staging_dir
    ckpt = tmp_path / "epoch1.pdparams"
    ckpt.write_bytes(b"never read")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.yml").write_text("my: config\n")
    (out / "answers.json").write_text('["mine"]')
    message = _exit_message(lambda: main(["export", "--MODEL", "trar", "--DATASET", "demo", "--DATA_ROOT",
                                          str(tmp_path / "data"), "--CKPT_PATH", str(ckpt), "--out", str(out)]))
    assert str(out) in message and "manifest.json" in message
    assert (out / "config.yml").read_text() == "my: config\n" and (out / "answers.json").read_text() == '["mine"]'
    with pytest.raises(BundleError, match="not an export folder"):       # the library path too
        staging_dir(str(out))
    with pytest.raises(BundleError, match="not a folder"):
        staging_dir(str(ckpt))
    staging_dir(str(tmp_path / "new"))                                  # a missing folder is fine
    (tmp_path / "empty").mkdir()
    staging_dir(str(tmp_path / "empty"))                                # an empty one too
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "manifest.json").write_text(json.dumps({"format": "twinvqa-inference"}))
    (tmp_path / "old" / "config.yml").write_text("x: 1\n")
    staging_dir(str(tmp_path / "old"))                                  # an earlier export: replaced


# ------------------------------------------------------------------------------------------ named pipes
def test_a_named_pipe_among_the_features_is_refused_not_read(tmp_path):
    root = tmp_path / "data"
    generate(str(root), seed=0, **SMALL)
    folder = root / "vqa" / "feats" / "train2014"
    victim = sorted(folder.glob("*.npy"))[0]
    victim.unlink()
    os.mkfifo(victim)
    argv = [sys.executable, "run.py", "--RUN=train", "--MODEL=trar", "--DATASET=demo", f"--DATA_ROOT={root}",
            "--SET", f"RESULTS_ROOT={tmp_path / 'results'}", "--SET", f"CKPTS_ROOT={tmp_path / 'ckpts'}",
            "--MAX_EPOCH=1", "--BS=4", "--NW=0", "--VERB=False", "--SET", "LAYER=1", "--SET", "HIDDEN_SIZE=32",
            "--SET", "FF_SIZE=64", "--SET", "FLAT_MLP_SIZE=32", "--SET", "FLAT_OUT_SIZE=64", "--backend=torch"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert str(victim) in last and "not a regular file" in last and "Traceback" not in result.stderr
