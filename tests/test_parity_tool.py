"""python -m convert parity: passes on matching weights, names the first bad layer otherwise, writes its report."""
import json
import pickle

import numpy as np
import pytest

from convert import parity
from convert.checkpoints import convert_file
from convert.cli import main
from core.config import load_config
from formats.restricted_pickle import read_pdparams
from tests.model_configs import tiny_cfg
from tests.test_convert import _run_hidden, config_file, trained


def test_gradient_comparison_by_hand():
    ref = {"att.linear_k.bias": np.array([2e-9, -1e-9]), "w": np.array([[1.0, 2.0]]), "b": np.array([4.0])}
    # w is a Linear weight: paddle holds it transposed; its last entry is off by 1e-4, above 1e-5 * (largest 4 + 2)
    got = {"att.linear_k.bias": np.array([-3e-9, 0.0]), "w": np.array([[1.0], [2.0001]]), "b": np.array([4.0])}
    section = parity.compare_gradients(ref, got, {"w"}, tol=1e-5)
    rows = {r["layer"]: r for r in section["rows"]}
    assert rows["att.linear_k.bias"]["ok"]                         # noise 5e-9 against the largest gradient 4
    assert rows["att.linear_k.bias"]["rel"] == pytest.approx(5e-9 / (4 + 2e-9))
    assert rows["w"]["rel"] == pytest.approx(1e-4 / (4 + 2)) and not rows["w"]["ok"]
    assert section["first_failure"] == "w" and not section["passed"] and section["largest_gradient"] == 4


def _run(capsys, *argv):
    code = main(["parity", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parity
def test_parity_passes_on_matching_weights(both_backends, tmp_path, capsys):
    report_path = tmp_path / "report.json"
    code, out, err = _run(capsys, "--MODEL", "trar", "--DATASET", "vqa", "--config",
                          config_file(tmp_path, "trar", "vqa"), "--steps", "2", "--report", report_path)
    assert code == 0, out + err
    assert out.strip().splitlines()[-1].startswith("PASSED")
    report = json.loads(report_path.read_text())
    assert report["passed"] and report["first_failure"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "tiny_trar_vqa.yml"]

    import torch
    torch_net = both_backends[0].build_model(tiny_cfg("trar", "vqa", DROPOUT_R=0.0), 10, 10)
    layers = {r["layer"].split("[")[0].split("#")[0] for r in report["forward"]["rows"]}
    modules = {name or parity.ROOT_NAME for name, m in torch_net.named_modules()
               if not isinstance(m, torch.nn.ModuleList)}     # containers, never called
    assert layers == modules                                  # every module's output was compared
    assert [r["layer"] for r in report["gradients"]["rows"]] == ["loss"] + [n for n, _ in torch_net.named_parameters()]
    assert [r["layer"] for r in report["train"]["rows"]] == ["step 1 loss", "step 2 loss", "logits after 2 steps"]


@pytest.mark.parity
def test_parity_with_dropout_on(both_backends, tmp_path, capsys):
    """--dropout keeps the config's DROPOUT_R (0.1 in the tiny config): the gradients and three training steps still
    agree, because both frameworks drop the same elements; the losses differ from a dropout-free run's."""
    config = config_file(tmp_path, "trar", "vqa")
    reports = {}
    for flag in ("--dropout", None):
        path = tmp_path / f"{flag}.json"
        code, out, err = _run(capsys, "--MODEL", "trar", "--DATASET", "vqa", "--config", config, "--steps", "3",
                              "--report", path, *([flag] if flag else []))
        assert code == 0, out + err
        reports[flag] = json.loads(path.read_text())
    on, off = reports["--dropout"], reports[None]
    assert on["dropout"] == 0.1 and off["dropout"] == 0.0
    assert on["gradients"]["passed"] and on["train"]["passed"] and on["train"]["skipped"] is None
    assert on["gradients"]["loss_torch"] != off["gradients"]["loss_torch"]
    assert on["train"]["losses_torch"] != off["train"]["losses_torch"]


@pytest.mark.parity
def test_parity_names_the_first_bad_layer(both_backends, tmp_path, capsys):
    cfg = tiny_cfg("trar", "vqa")
    config = config_file(tmp_path, "trar", "vqa")
    _, _, trainer, _ = trained("torch", cfg, steps=1)
    trainer.save(str(tmp_path / "t.pkl"), 1, 1e-3)
    convert_file("torch2paddle", str(tmp_path / "t.pkl"), str(tmp_path / "p.pdparams"), "trar", "vqa", config=config)
    args = ["--MODEL", "trar", "--DATASET", "vqa", "--config", config, "--steps", "1", "--ckpt", tmp_path / "t.pkl"]

    code, out, err = _run(capsys, *args, "--paddle-ckpt", tmp_path / "p.pdparams")
    assert code == 0, out + err

    state = read_pdparams(str(tmp_path / "p.pdparams"))
    key = "backbone.dec_list.1.mhatt2.linear_q.weight"
    state[key] = state[key] + 1e-2 * np.random.default_rng(0).standard_normal(state[key].shape).astype(np.float32)
    (tmp_path / "bad.pdparams").write_bytes(pickle.dumps(state, protocol=4))
    code, out, err = _run(capsys, *args, "--paddle-ckpt", tmp_path / "bad.pdparams", "--report",
                          tmp_path / "bad.json")
    assert code == 1
    assert "FAILED: first above tolerance: forward: backbone.dec_list.1.mhatt2.linear_q (" in out
    marked = [line for line in out.splitlines() if "<-- first above tolerance" in line]
    assert marked[0].split()[0] == "backbone.dec_list.1.mhatt2.linear_q"
    report = json.loads((tmp_path / "bad.json").read_text())
    assert report["forward"]["first_failure"] == "backbone.dec_list.1.mhatt2.linear_q" and not report["passed"]


@pytest.mark.parity
def test_hard_routing_on_demo_data(both_backends, tmp_path, capsys):
    """Demo batches (a small demo set generated in a temp dir); hard routing: gradients compared with the routing
    blocks' noise off, the training check skipped with its reason."""
    from core.data.demo import generate
    generate(str(tmp_path / "demo"), n_train_images=3, n_val_images=1, n_test_images=1)
    code, out, err = _run(capsys, "--MODEL", "trar", "--DATASET", "demo", "--SET", f"DATA_ROOT={tmp_path / 'demo'}",
                          "--SET", f"RESULTS_ROOT={tmp_path / 'results'}", "--SET", "ROUTING=hard",
                          "--SET", "TAU_MAX=0.5", "--report", tmp_path / "r.json")
    assert code == 0, out + err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["data"].startswith("demo") and report["gradients"]["passed"]
    assert "Gumbel" in report["train"]["skipped"]


def test_bad_input_is_one_line(tmp_path, capsys):
    code, _, err = _run(capsys, "--MODEL", "trar", "--DATASET", "vqa", "--paddle-ckpt", tmp_path / "x.pdparams")
    assert code == 3 and "--paddle-ckpt needs --ckpt" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("flags,message", [(["--ckpt", "{tmp}/none.pkl"], "--ckpt: no such file {tmp}/none.pkl"),
                                           (["--ckpt", "{tmp}"], "--ckpt: {tmp} is a folder"),
                                           (["--tol", "-1"], "--tol must be a positive tolerance, got -1"),
                                           (["--train-tol", "0"], "--train-tol must be a positive tolerance"),
                                           (["--steps", "0"], "--batch-size and --steps must be >= 1, got 4 and 0")])
def test_flags_are_checked_before_anything_runs(tmp_path, capsys, flags, message):
    flags = [f.format(tmp=tmp_path) for f in flags]
    code, out, err = _run(capsys, "--MODEL", "trar", "--DATASET", "vqa", *flags)
    assert code == 3 and f"error: {message.format(tmp=tmp_path)}" in err and len(err.strip().splitlines()) == 1
    assert out == ""


@pytest.mark.parity
def test_gradient_failure_alone_exits_2_and_each_verdict_is_named(both_backends, tmp_path, capsys):
    """Same weights, a gradient tolerance no fp32 backward can meet: weights/forward pass, gradients fail."""
    config = config_file(tmp_path, "trar", "vqa")
    code, out, err = _run(capsys, "--MODEL", "trar", "--DATASET", "vqa", "--config", config, "--steps", "1",
                          "--grad-tol", "1e-15", "--report", tmp_path / "r.json")
    last = out.strip().splitlines()[-1]
    assert code == 2, out + err
    assert last.startswith("FAILED: first above tolerance: gradients: ")
    assert "(weights/forward passed, gradients FAILED, training passed; " in last
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verdicts"] == {"weights/forward": True, "gradients": False, "training": True}
    assert report["exit_status"] == 2


# ---- a trained demo model, converted: what the tool exists for ----------------------------------------------------

def _demo_args(tmp_path, demo):
    return ["--MODEL", "trar", "--DATASET", "demo", "--SET", f"DATA_ROOT={demo}",
            "--SET", f"RESULTS_ROOT={tmp_path / 'results'}", "--SET", f"CKPTS_ROOT={tmp_path / 'ckpts'}"]


def _scaled_copy(src, dst, key, factor):
    state = read_pdparams(str(src))
    state[key] = state[key] * np.float32(factor)
    dst.write_bytes(pickle.dumps(state, protocol=4))


@pytest.mark.parity
@pytest.mark.parametrize("trained_on", ["torch", "paddle"])
def test_trained_demo_checkpoint_and_its_conversion_pass(both_backends, tmp_path, capsys, trained_on):
    """Two epochs of the demo TRAR on a small demo set in one backend, converted to the other: PASSED on every
    verdict (the per-tensor gradient tolerance this replaced failed such checkpoints). One Linear weight of the
    paddle copy scaled by 1.01: FAILED, exit 1, the tensor named."""
    import run
    from core.data.demo import generate
    demo = tmp_path / "demo"
    generate(str(demo), seed=0, n_train_images=16, n_val_images=2, n_test_images=1, questions_per_image=4)
    args = _demo_args(tmp_path, demo)
    run.main(["--RUN=train", *args, f"--backend={trained_on}", "--MAX_EPOCH=2", "--VERSION=t", "--NW=0",
              "--VERB=False", "--EVAL_EE=False"])
    ckpts = tmp_path / "ckpts" / "ckpt_t"
    if trained_on == "torch":
        torch_ckpt, paddle_ckpt = ckpts / "epoch2.pkl", tmp_path / "epoch2.pdparams"
        convert_file("torch2paddle", str(torch_ckpt), str(paddle_ckpt), "trar", "demo", sets=[("DATA_ROOT", str(demo))])
    else:
        torch_ckpt, paddle_ckpt = tmp_path / "epoch2.pkl", ckpts / "epoch2.pdparams"
        convert_file("paddle2torch", str(paddle_ckpt), str(torch_ckpt), "trar", "demo", sets=[("DATA_ROOT", str(demo))])

    code, out, err = _run(capsys, *args, "--ckpt", torch_ckpt, "--paddle-ckpt", paddle_ckpt, "--dropout")
    assert code == 0, out + err
    assert out.strip().splitlines()[-1].startswith(
        "PASSED (weights/forward passed, gradients passed, training passed; ")

    key = "backbone.dec_list.1.mhatt1.linear_v.weight"
    _scaled_copy(paddle_ckpt, tmp_path / "bad.pdparams", key, 1.01)
    code, out, err = _run(capsys, *args, "--ckpt", torch_ckpt, "--paddle-ckpt", tmp_path / "bad.pdparams")
    last = out.strip().splitlines()[-1]
    assert code == 1, out + err
    assert last.startswith("FAILED: first above tolerance: forward: backbone.dec_list.1.mhatt1")
    assert f"weights/forward FAILED (weights differ first in {key})" in last
    assert [line.split()[0] for line in out.splitlines() if "(above tolerance)" in line][0] == key


# ---- one framework per machine: --dump on one, --compare on the other ----------------------------------------------

@pytest.mark.parity
@pytest.mark.parametrize("first, second", [("torch", "paddle"), ("paddle", "torch")])
def test_dump_on_one_framework_compare_on_the_other(both_backends, tmp_path, capsys, first, second):
    config = config_file(tmp_path, "trar", "vqa")
    args = ["--MODEL", "trar", "--DATASET", "vqa", "--config", config, "--steps", "2"]
    dump = tmp_path / f"{first}.npz"
    code, out, err = _run(capsys, *args, "--dump", dump, "--framework", first)
    assert code == 0 and f"({first}, " in out and str(dump) in out, out + err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([dump.name, "tiny_trar_vqa.yml"])   # no temp file
    with np.load(dump, allow_pickle=False) as npz:              # plain arrays only
        meta = json.loads(str(npz["__meta__"]))
        assert meta["framework"] == first and meta["steps"] == 2 and len(meta["grads"]) > 10
        assert all(npz[k].dtype != object for k in npz.files)

    code, out, err = _run(capsys, *args, "--compare", dump, "--report", tmp_path / "r.json")
    assert code == 0, out + err
    assert out.strip().splitlines()[-1].startswith("PASSED (weights/forward passed, gradients passed, training passed")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verdicts"] == {"weights/forward": True, "gradients": True, "training": True}
    assert [r["layer"] for r in report["train"]["rows"]] == ["step 1 loss", "step 2 loss", "logits after 2 steps"]
    # the rows of a run with both frameworks in one process; from a torch dump (the same seeded torch init as that
    # run's) the same numbers too
    _run(capsys, *args, "--report", tmp_path / "live.json")
    live = json.loads((tmp_path / "live.json").read_text())
    assert [r["layer"] for r in live["gradients"]["rows"]] == [r["layer"] for r in report["gradients"]["rows"]]
    assert [r["layer"] for r in live["forward"]["rows"]] == [r["layer"] for r in report["forward"]["rows"]]
    if first == "torch":
        assert live["gradients"]["loss_torch"] == report["gradients"]["loss_torch"]
        assert live["train"]["losses_torch"] == report["train"]["losses_torch"]

    code, _, err = _run(capsys, *args, "--compare", dump, "--framework", first)
    assert code == 3 and f"a {first} dump; compare it with the other framework" in err


@pytest.mark.parity
def test_dump_from_another_config_or_no_dump_is_refused(both_backends, tmp_path, capsys):
    args = ["--MODEL", "trar", "--DATASET", "vqa", "--config", config_file(tmp_path, "trar", "vqa"), "--steps", "1"]
    _run(capsys, *args, "--dump", tmp_path / "t.npz")
    code, out, err = _run(capsys, *args, "--SET", "FF_SIZE=48", "--compare", tmp_path / "t.npz")
    assert code == 3 and out == "" and len(err.strip().splitlines()) == 1
    assert f"error: {tmp_path / 't.npz'}: dumped with another config: FF_SIZE" in err
    _run(capsys, *args, "--dump", tmp_path / "d.npz", "--dropout")          # ran with the config's DROPOUT_R 0.1
    code, _, err = _run(capsys, *args, "--SET", "DROPOUT_R=0.2", "--compare", tmp_path / "d.npz")
    assert code == 3 and "dumped with another config: DROPOUT_R 0.1 in the dump, 0.2 here" in err
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    code, _, err = _run(capsys, *args, "--compare", tmp_path / "x.npz")
    assert code == 3 and "not a parity dump" in err and len(err.strip().splitlines()) == 1
    np.savez(tmp_path / "obj.npz", __meta__=np.array([{"a": 1}], dtype=object))   # a pickled object: not loaded
    code, _, err = _run(capsys, *args, "--compare", tmp_path / "obj.npz")
    assert code == 3 and "not a parity dump" in err


def test_dump_config_check_skips_the_run_only_keys():
    """Where a run's checkpoints, logs and device fallback go changes no number, so a dump made with other values of
    these keys (or before they existed) still compares; a key of the net still does not."""
    run_only = {"CKPT_KEEP_LAST": 2, "OVERWRITE": True, "RESUME_WEIGHTS_ONLY": True, "LOG_EVERY": 7,
                "SCALAR_LOGS": False, "ALLOW_CPU_FALLBACK": True}
    plain = parity.config_fingerprint(load_config("trar", "vqa"))
    assert parity.config_fingerprint(load_config("trar", "vqa", overrides=run_only)) == plain
    assert not set(run_only) & set(plain)          # a dump made before these keys existed lacks them: still equal
    assert parity.config_fingerprint(load_config("trar", "vqa", overrides={"FF_SIZE": 48})) != plain


def test_usage_errors_exit_3_not_the_gradient_status(capsys):
    for argv in (["--no-such-flag"], ["--dump", "a.npz", "--compare", "b.npz"]):
        with pytest.raises(SystemExit) as exc:
            main(["parity", "--MODEL", "trar", "--DATASET", "vqa", *argv])
        assert exc.value.code == 3
    code, _, err = _run(capsys, "--MODEL", "trar", "--DATASET", "vqa", "--framework", "torch")
    assert code == 3 and "--framework needs --dump or --compare" in err


@pytest.mark.parity
def test_dump_and_compare_in_processes_that_each_have_one_framework(both_backends, tmp_path):
    """As on a Paddle-only machine (AI Studio) and a torch-only one: the other framework cannot be imported."""
    args = ["parity", "--MODEL", "trar", "--DATASET", "vqa", "--config", config_file(tmp_path, "trar", "vqa"),
            "--steps", "1"]
    proc = _run_hidden(["torch"], args + ["--dump", tmp_path / "paddle.npz"])
    assert proc.returncode == 0 and "(paddle, " in proc.stdout and "IMPORTED ['paddle']" in proc.stdout, proc.stderr
    proc = _run_hidden(["paddle"], args + ["--compare", tmp_path / "paddle.npz"])
    assert proc.returncode == 0 and "IMPORTED ['torch']" in proc.stdout, proc.stderr
    assert "PASSED (weights/forward passed, gradients passed, training passed" in proc.stdout
