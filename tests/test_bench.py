"""bench/: functional checks at tiny sizes, 1-2 steps. No timing is asserted anywhere (speed goals are reported in
docs/benchmarks.md, never tested). The feature store itself is tested in tests/test_feature_store.py."""
import datetime
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from bench import page_cache, report
from bench import train_step as ts
from bench.__main__ import build_parser
from bench.__main__ import main as bench_main
from bench.data_loading import measure as measure_data

# ---- train / eval measurement ----------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["trar", "mmnasnet"])
def test_synthetic_samples_have_the_dataset_format(model):
    cfg = ts.bench_config(model, "demo")
    samples = ts.synthetic_samples(cfg, 6, token_size=36, answer_size=50, seed=1)
    rows, dim = cfg.FEAT_SIZE["vqa"]["FRCN_FEAT_SIZE"]
    for s in samples:
        assert s["frcn_feat"].shape == (rows, dim) and s["frcn_feat"].dtype == np.float32
        assert s["ques_ix"].shape == (14,) and s["ques_ix"].dtype == np.int64
        assert 0 < s["ques_ix"].max() < 36 and s["ques_ix"][0] != 0           # real tokens first, then PAD
        assert s["ans"].shape == (50,) and 1 <= np.count_nonzero(s["ans"]) <= 3
        if model == "trar":                                                   # grids: no padded rows
            assert s["bbox_feat"].shape == (1,) and np.all(np.abs(s["frcn_feat"]).sum(1) > 0)
        else:                                                                 # regions: 10..rows boxes, then zeros
            real = int((np.abs(s["frcn_feat"]).sum(1) > 0).sum())
            assert min(10, rows) <= real <= rows
            assert s["bbox_feat"].shape == (cfg.FEAT_SIZE["vqa"]["BBOX_FEAT_SIZE"][0], 4)
            boxes = s["bbox_feat"][:real]
            assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
            assert not s["bbox_feat"][real:].any()


def test_bench_config_rejects_unknown_model_or_size():
    with pytest.raises(ValueError, match="model/size"):
        ts.bench_config("trar", "huge")


@pytest.mark.parametrize("kind", ["train", "eval"])
def test_measure_in_process(backend, kind):
    spec = {"kind": kind, "backend": backend.name, "model": "mcan", "size": "demo", "steps": 2, "warmup": 0,
            "batch_size": 4}
    result = ts.measure(spec)
    assert result["backend"] == backend.name and result["device"] == "cpu"
    assert len(result["times_s"]) == 2 and result["median_s"] == pytest.approx(float(np.median(result["times_s"])),
                                                                              abs=1e-5)
    assert result["batch_size"] == (4 if kind == "train" else 2)               # EVAL_BATCH_SIZE = batch // 2
    assert result["peak_rss_mib"] >= result["rss_after_build_mib"] > 0
    if kind == "train":
        assert np.isfinite(result["loss"]) and result["loss"] > 0
    assert result["framework"]["cpu_linear"].startswith(("MKL", "oneDNN"))
    json.dumps(result)                                                        # what the child prints must serialise


def test_every_registry_model_is_measured_at_each_size_it_has_a_config_for():
    from core import registry
    assert ts.MODELS == registry.model_uses()
    assert ts.CONFIGS[("rwsan", "demo")] == ("rwsan", "demo") and ts.CONFIGS[("rwsan", "default")] == ("rwsan", "vqa")
    for use in ("vit", "vit_trar"):
        assert ts.CONFIGS[(use, "demo")] == (use, "demo_images") and ts.CONFIGS[(use, "default")] == (use, "imagenet")
    assert ("mmnasnet", "demo") in ts.CONFIGS                      # the small size, which has a demo yml


def test_a_model_added_to_the_registry_is_measured_with_no_bench_change():
    """What another model (e.g. LSAT) gets from its ModelSpec alone: a row per size whose dataset it has a yml for."""
    from core import registry
    others = {name: spec for name, spec in registry.MODELS.items() if spec.model_use != "lsat"}   # LSAT, as if new
    fake = dict(others, lsat=registry.ModelSpec("lsat", "lsat", task="vqa", features="grid",
                                                         datasets=("vqa", "demo")),
                lsat_large=registry.ModelSpec("lsat_large", "lsat", task="vqa", features="grid", datasets=("vqa",)))
    first, configs = ts.measured_models(fake)
    assert list(first)[-1] == "lsat" and first["lsat"].name == "lsat"               # its first (smallest) size
    assert configs[("lsat", "demo")] == ("lsat", "demo") and configs[("lsat", "default")] == ("lsat", "vqa")
    without_lsat = {k: v for k, v in ts.CONFIGS.items() if k[0] != "lsat"}
    assert {k: v for k, v in configs.items() if k[0] != "lsat"} == without_lsat


def test_classification_sizes_are_b16_at_224_batch_8_and_the_demo_images_config():
    cfg = ts.bench_config("vit_trar", "default")
    assert (cfg.IMG_SIZE, cfg.PATCH_SIZE, cfg.HIDDEN_SIZE, cfg.FF_SIZE, cfg.MULTI_HEAD, cfg.LAYER) == \
        (224, 16, 768, 3072, 12, 12)
    assert (cfg.BATCH_SIZE, cfg.SUB_BATCH_SIZE, cfg.OPT, cfg.LOSS_FUNC) == (8, 8, "SGD", "ce")
    assert cfg.ORDERS == [0, 1, 2, 3] and ts.model_facts("vit_trar", "default") == {"num_classes": 1000}
    demo = ts.bench_config("vit", "demo")
    assert (demo.IMG_SIZE, demo.PATCH_SIZE, demo.HIDDEN_SIZE, demo.LAYER, demo.BATCH_SIZE) == (32, 4, 64, 4, 32)
    assert ts.model_facts("vit", "demo") == {"num_classes": 10}
    assert ts.model_facts("rwsan", "default") == {"token_size": 20573, "answer_size": 3129}


def test_synthetic_images_have_the_dataset_format():
    from core import registry
    cfg = ts.bench_config("vit", "demo")
    samples = ts.task_samples(cfg, 5, {"num_classes": 3}, seed=2)
    task = registry.task("classification")
    for s in samples:
        assert set(s) == set(task.input_keys) | {task.target_key}
        assert s["image"].shape == (3, 32, 32) and str(s["image"].dtype) == task.input_dtypes["image"]
        assert -1.0 <= s["image"].min() < s["image"].max() <= 1.0                # normalised with mean = std = 0.5
        assert s["label"].dtype == np.int64 and 0 <= s["label"] < 3
    assert len({int(s["label"]) for s in ts.task_samples(cfg, 40, {"num_classes": 3})}) == 3


@pytest.mark.parametrize("model", ["vit_trar", "rwsan"])
def test_measure_other_models_in_process(backend, model):
    """The classifier's train step (mean CE, SGD, clipping) and RWSAN's, at the demo size with a batch of 4."""
    spec = {"kind": "train", "backend": backend.name, "model": model, "size": "demo", "steps": 1, "warmup": 0,
            "batch_size": 4}
    result = ts.measure(spec)
    assert (result["model"], result["batch_size"], result["hidden_size"]) == (model, 4, 64)
    assert np.isfinite(result["loss"]) and result["loss"] > 0
    if model == "vit_trar":                       # summed mean CE over 4 images of 10 classes, random weights
        assert 4 * 0.5 * np.log(10) < result["loss"] < 4 * 2 * np.log(10)
    else:                                         # reference rwsan.md: the demo config's 564,059 + 32 x 36 tokens
        assert result["parameters"] == 564_059 + 32 * 36
    json.dumps(result)


def test_step_products_count_the_flops_torch_counts():
    """The products bench.floor records in a step (op, operand shapes) hold, by 2mkn per product, exactly the FLOPs
    torch's own counter counts in the same step: the per-shape timing covers every product the floor counts."""
    from bench import floor, matmuls
    products = matmuls.record_products(floor.torch_step("mcan", "demo"))
    flops = 0
    for (op, operands), calls in products.items():
        shapes = [shape for shape, _ in operands]
        a, b = shapes[-2], shapes[-1]
        assert op in ("mm", "addmm", "bmm", "baddbmm") and a[-1] == b[-2]
        flops += calls * 2 * math.prod(a) * b[-1]
    assert flops == floor.step_flops("mcan", "demo") > 0


def test_floor_here_measures_the_rate_and_the_products_in_this_process():
    """bench.train_step.floor_here: the best of bench.floor's rates and the step's own products' seconds, as the
    torch measuring process records them after its steps."""
    from bench import floor
    here = ts.floor_here(floor.torch_step("mcan", "demo"))
    assert here["best_gflops_per_s"] == max(here["matmul_gflops_per_s"].values()) > 0
    assert here["matmul_s"] > 0
    json.dumps(here)


def test_product_seconds_times_each_shape_and_strides():
    """product_seconds: each product run at its recorded strides (a transposed operand stays transposed), times
    its calls."""
    import torch

    from bench import matmuls
    seen = []
    real_mm = torch.mm

    def spy(a, b):
        seen.append((a.stride(), b.stride()))
        return real_mm(a, b)

    product = ("mm", (((8, 4), (1, 8)), ((4, 3), (3, 1))))
    torch.mm = spy
    try:
        once = matmuls.product_seconds({product: 1}, repeats=3)
        thrice = matmuls.product_seconds({product: 3}, repeats=3)
    finally:
        torch.mm = real_mm
    assert set(seen) == {((1, 8), (3, 1))}
    assert once > 0 and thrice > 0 and len(seen) == 2 * (1 + 3)      # one warm-up and three timed calls, twice


def test_measure_with_gpu_but_no_gpu_is_an_error(backend):
    """A backend that falls back to the CPU must not report CPU numbers as a GPU run."""
    from tests.test_backend_runtime import _has_gpu
    if _has_gpu(backend):
        pytest.skip("a GPU is present")
    spec = {"kind": "train", "backend": backend.name, "model": "mcan", "size": "demo", "steps": 1, "warmup": 0,
            "batch_size": 4, "gpu": "0"}
    with pytest.raises(RuntimeError, match="--gpu 0: .*no CUDA"):   # set_device refuses it (core.distributed)
        ts.measure(spec)
    backend.set_device("")


def test_measure_rejects_bad_spec():
    with pytest.raises(ValueError, match="kind"):
        ts.measure({"kind": "fly", "backend": "torch", "model": "mcan", "size": "demo"})
    with pytest.raises(ValueError, match="steps"):
        ts.measure({"kind": "train", "backend": "torch", "model": "mcan", "size": "demo", "steps": 0})


def test_cli_end_to_end_in_a_subprocess(tmp_path):
    """`python -m bench train` runs each measurement in a child process and writes JSON and the docs block."""
    out, docs = tmp_path / "r.json", tmp_path / "bench.md"
    docs.write_text("# Benchmarks\n\nHand-written notes.\n")
    bench_main(["train", "--backends", "torch", "--models", "mcan", "--sizes", "demo", "--steps", "1",
                "--warmup", "0", "--rounds", "2", "--threads", "1", "--out", str(out), "--docs", str(docs)])
    res = json.loads(out.read_text())
    (run,) = res["runs"]
    assert "error" not in run, run
    assert "partial" not in res["meta"]                                        # the run ended: the file is whole
    assert run["rounds"] == 2 and len(run["times_s"]) == len(run["round_times_s"]) == 2   # two processes, one row
    assert (run["backend"], run["model"], run["size"], run["kind"]) == ("torch", "mcan", "demo", "train")
    assert run["framework"]["threads"] == 1                                    # --threads reached the child
    assert res["floor"]["threads"] == 1 and res["floor"]["floors"]["mcan/demo"]["gflop"] > 0
    assert res["meta"]["machine"]["cores"] == os.cpu_count()
    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\nHand-written notes.") and report.BEGIN in text and "| mcan | demo |" in text
    assert (tmp_path / "bench.png").stat().st_size > 0 and "](bench.png)" in text   # named after its report


def test_floor_measure_tiny():
    """bench.floor: matmul rates from timed products, a step's matmul FLOPs from torch's counter, floor = ratio."""
    from bench import floor
    rates = floor.matmul_rate(shapes=((64, 32, 16),), repeats=2)
    assert list(rates) == ["mm 64x32x16", "onednn 64x32x16"]
    assert all(np.isfinite(rate) and rate >= 0 for rate in rates.values())     # rounded: a slow host may give 0.0
    result = floor.measure({"models": ["mcan"], "sizes": ["demo"]})
    entry = result["floors"]["mcan/demo"]
    assert entry["gflop"] > 0
    assert entry["floor_s"] == pytest.approx(entry["gflop"] / result["best_gflops_per_s"], rel=1e-2, abs=1e-4)
    assert set(entry) == {"gflop", "floor_s"}   # the moment-bound parts are measured by the torch processes
    json.dumps(result)


def test_floor_counts_a_vit_step_as_the_hand_formula():
    """A ViT train step's matmul FLOPs (torch's counter, as the floor uses) equal the count from the shapes: per
    image, the patch convolution 2 n D 3 P^2, per layer q/k/v/out 4 x 2 N D^2, scores and context 2 x 2 N^2 D, the MLP
    2 x 2 N D F, the head on the CLS token 2 D C; backward doubles each, except the patch convolution, whose input
    (the image) needs no gradient."""
    from bench import floor
    cfg = ts.bench_config("vit", "demo")
    B, S, P, D, F, L, C = cfg.BATCH_SIZE, 32, 4, 64, 128, 4, 10
    assert (cfg.IMG_SIZE, cfg.PATCH_SIZE, cfg.HIDDEN_SIZE, cfg.FF_SIZE, cfg.LAYER) == (S, P, D, F, L)
    n = (S // P) ** 2
    N = n + 1
    patch = 2 * n * D * 3 * P * P
    forward = patch + L * (4 * 2 * N * D * D + 2 * 2 * N * N * D + 2 * 2 * N * D * F) + 2 * D * C
    assert floor.step_flops("vit", "demo") == B * (3 * forward - patch) == 2_076_401_664


def test_inference_part_skips_the_models_deploy_timing_cannot_build():
    from bench import inference
    result = inference.measure({"models": ["vit"], "sizes": ["demo"]})
    assert result["rows"] == [] and "VQA nets only" in result["skipped"]["vit"]
    text = report.render({"meta": {}, "runs": [], "infer": result})
    assert "Not measured: vit (deploy.timing.bench times VQA nets only (classification task))" in text


def test_conversion_part_converts_a_classifier_with_its_sgd_state():
    from bench import conversion
    result = conversion.measure({"models": ["vit"], "sizes": ["demo"], "repeats": 1})
    assert [r["direction"] for r in result["rows"]] == ["torch2paddle", "paddle2torch"]
    assert all(r["optimizer"] == "converted" and r["tensors"] > 0 for r in result["rows"])


def test_cli_rejects_unknown_names():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--models", "trar,bert"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fly"])


def test_help_lists_the_parts_and_each_part_its_options(capsys):
    from bench.__main__ import PARTS
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--help"])
    assert info.value.code == 0
    listing = capsys.readouterr().out
    for part, (summary, description, _) in PARTS.items():
        assert f"{part}  " in listing and summary in listing
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args([part, "--help"])
        assert info.value.code == 0
        text = " ".join(capsys.readouterr().out.split())                     # argparse wraps the lines
        assert text.startswith(f"usage: python -m bench {part}") and " ".join(description.split()) in text
        if part == "train":                                                   # the choices of the comma lists
            for choices in ("--models trar,mcan,mmnasnet", "--sizes demo,default", "--backends torch,paddle"):
                assert choices in text


@pytest.mark.parametrize("argv", [["data", "--models", "trar"], ["floor", "--gpu", "0"],
                                  ["convert", "--backends", "torch"], ["report", "--steps", "2", "a.json"], ["report"]])
def test_a_part_takes_only_its_own_options(argv):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2


def test_results_go_outside_the_tracked_tree_by_default(tmp_path, monkeypatch):
    """results/bench/<date>.json, which .gitignore covers; without --docs the report goes beside the JSON."""
    from bench import __main__ as bench_cli
    out = bench_cli.default_out()
    assert os.path.dirname(out) == os.path.join(bench_cli.REPO, "results", "bench")
    ignored = subprocess.run(["git", "check-ignore", "-q", out], cwd=bench_cli.REPO)
    assert ignored.returncode == 0                                            # 1: git would track it

    def child(module, spec, threads, timeout, max_others=0.5):
        if module != "bench.train_step":
            return {"error": "not measured in this test"}
        return {**spec, "batch_size": 32, "times_s": [0.1], "median_s": 0.1, "peak_rss_mib": 100.0}

    monkeypatch.setattr(bench_cli, "run_child", child)
    monkeypatch.setattr(bench_cli, "running_now", lambda seconds=3.0: 0.0)
    monkeypatch.setattr(bench_cli, "RESULTS_DIR", str(tmp_path / "results" / "bench"))
    with pytest.raises(SystemExit, match="floor"):                            # the floor 'failed': reported, listed
        bench_main(["train", "--models", "mcan", "--sizes", "demo", "--rounds", "1", "--backends", "torch"])
    (json_out,) = (tmp_path / "results" / "bench").glob("*.json")
    assert json_out.name == f"{datetime.date.today().isoformat()}.json"
    text = json_out.with_suffix(".md").read_text()
    assert report.BEGIN in text and "| mcan | demo |" in text


# ---- report -------------------------------------------------------------------------------------------------------

def _run(kind, backend, model, size, median, peak, batch=64):
    return {"kind": kind, "backend": backend, "model": model, "size": size, "device": "cpu", "batch_size": batch,
            "median_s": median, "samples_per_s": batch / median, "peak_rss_mib": peak, "load_avg": [0.1, 0.2, 0.3],
            "framework": {"threads": 2}}


def _results():
    return {"meta": {"date": "2026-01-01", "machine": {"cpu": "X", "cores": 2, "memory_gib": 4}, "quiet": True},
            "runs": [_run("train", "torch", "trar", "default", 6.16, 2000.0),
                     _run("train", "paddle", "trar", "default", 9.24, 2500.0),
                     _run("train", "torch", "mcan", "default", 4.0, 1500.0),
                     _run("train", "paddle", "mcan", "default", 4.2, 1600.0)],
            "data": {"grid": {"samples": 10, "file_bytes": 2e6, "per_file_samples_per_s": 415.6,
                              "store_samples_per_s": 1000.0, "store_build_s": 0.5},
                     "region": {"samples": 10, "file_bytes": 4e6, "per_file_samples_per_s": 200.0,
                                "store_build_s": 0.5, "from_disk_samples": 2,
                                "per_file_from_disk_samples_per_s": 150.0, "per_file_from_disk_resident": 0.0,
                                "store_from_disk_samples_per_s": None, "store_from_disk_resident": 1.0}},
            "floor": {"best_gflops_per_s": 350.0, "threads": 2,
                      "floors": {"trar/default": {"gflop": 700.0, "floor_s": 2.0, "matmul_s": 5.0,
                                                  "matmul_calls": 473}}}}


def _anchor_dir(tmp_path, step_s=8.8):
    """A results folder whose one file holds the original's TRAR default train step (report.original_anchor)."""
    folder = tmp_path / "anchor"
    folder.mkdir()
    run = {**_run("train", "original", "trar", "default", step_s, 1000.0)}
    (folder / "2026-01-01-original.json").write_text(json.dumps({"meta": {"date": "2026-01-01"}, "runs": [run]}))
    return str(folder)


def test_report_ratios_and_goals(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_results()))
    merged = report.load_results([str(path)])
    table = report.model_table(merged["runs"], "train")
    assert "| trar | default | cpu | 64 | 6.16 | 9.24 | 1.5 |" in table              # 9.24 / 6.16
    assert "| mcan | default | cpu | 64 | 4 | 4.2 | 1.05 |" in table
    goals = report.goal_lines(merged, anchor_dir=_anchor_dir(tmp_path))
    assert "0.70x the original's 8.8 s (goal <= 0.75x: no verdict, the original was measured 2026-01-01 in " \
        "another run" in goals                                                          # 6.16 / 8.8
    assert isinstance(goals, str) and "the floor measured in the same run: below" in goals
    assert "arithmetic floor" not in goals   # no fixed floor from another machine: the one measured in the run
    assert "6.16 s = **3.08x the floor measured here**, 2 s (700 GFLOP" in goals     # 6.16 / 2.0
    # the step's own products timed alone: 5.0 / 2.0 = 2.5x the floor; 6.16 - 5.0 = 1.16 s for the rest
    assert ("own 473 matmuls, timed one by one outside it at their shapes: 5 s = 2.50x the floor, leaving 1.16 s"
            in goals)
    assert "trar default: **1.50x** (goal <= 1.1x: NOT met)" in goals
    assert "mcan default: **1.05x** (goal <= 1.1x: met)" in goals
    # consumption 64 / 6.16 = 10.39 samples/s; 415.6 / 10.39 = 40x; region: 64 / 4.0 = 16 -> 200 / 16 = 12x
    assert "= **40x** the 10.4 samples/s" in goals and "(goal >= 20x: met)" in goals
    assert "= **12x** the 16.0 samples/s" in goals and "(goal >= 20x: NOT met)" in goals
    assert "region feature loading (per-file from disk, one process): 150 samples/s = **9x**" in goals
    assert "store from disk" not in goals                                          # not measured: no goal line


def test_data_table_from_disk_rows_and_note():
    data = _results()["data"]
    table = report.data_table(data)
    assert "| region | 2 | 4 | per file from disk | 150 |" in table                 # the first reads only
    assert "store from disk" not in table                                          # not measured: no row
    assert "at most 0.0% of their pages still resident" in table
    for entry in (data["region"],):
        entry["per_file_from_disk_samples_per_s"], entry["per_file_from_disk_resident"] = None, 1.0
    data["disk"] = "tmpfs on tmpfs"
    assert "No 'from disk' rows: the feature files (tmpfs on tmpfs) could not be dropped" in report.data_table(data)


def test_report_names_the_cpu_kernels():
    runs = _results()["runs"]
    assert report.kernel_line(runs) == ""                                          # not recorded: no line
    runs[0]["framework"]["cpu_linear"] = "oneDNN"
    runs[1]["framework"]["cpu_linear"] = "MKL, MKL_DEBUG_CPU_TYPE=7"
    assert report.kernel_line(runs).endswith("paddle: MKL, MKL_DEBUG_CPU_TYPE=7; torch: oneDNN")


def test_step_time_uses_clean_steps_only_when_most_are_clean():
    run = dict(_run("train", "torch", "trar", "demo", 0.04, 1.0), steps=10, clean_median_s=0.03)
    assert report.step_time(dict(run, clean_steps=5)) == 0.03
    assert report.step_time(dict(run, clean_steps=4)) == 0.04
    assert report.step_time(dict(run, clean_steps=0)) == 0.04
    assert report.step_time(_run("train", "torch", "trar", "demo", 0.04, 1.0)) == 0.04     # no load samples


def test_report_merges_files_later_wins(tmp_path):
    first, second = _results(), {"meta": {"date": "later"}, "runs": [_run("train", "torch", "trar", "default",
                                                                          5.0, 1.0)]}
    (tmp_path / "a.json").write_text(json.dumps(first))
    (tmp_path / "b.json").write_text(json.dumps(second))
    merged = report.load_results([str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert len(merged["runs"]) == 4 and merged["meta"]["date"] == "later" and merged["data"]
    torch_trar = report._find(merged["runs"], "train", "torch", "trar", "default")
    assert torch_trar["median_s"] == 5.0


def test_failed_runs_are_listed_and_never_replace_a_measurement(tmp_path):
    error = "exit 1: RuntimeError: --gpu 0: paddle sees no CUDA device"
    failed = [{"kind": "train", "backend": "torch", "model": "trar", "size": "default", "error": "exit -9: killed"},
              {"kind": "train", "backend": "paddle", "model": "trar", "size": "default", "gpu": "0", "error": error}]
    (tmp_path / "a.json").write_text(json.dumps(_results()))
    (tmp_path / "b.json").write_text(json.dumps({"meta": {"date": "later"}, "runs": failed}))
    merged = report.load_results([str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert report._find(merged["runs"], "train", "torch", "trar", "default")["median_s"] == 6.16   # kept
    text = report.render(merged)
    assert f"- train paddle trar default (gpu:0): {error}" in text
    assert "exit -9" not in text                                         # superseded by the measurement it failed
    assert "| trar | default | cpu | 64 | 6.16 | 9.24 | 1.5 |" in text   # the CPU row is untouched by the GPU failure


def test_goals_from_runs_under_load_are_not_conclusive(tmp_path):
    res = _results()
    res["runs"][1].update(steps=4, clean_steps=1, clean_median_s=9.0)               # paddle trar: 1 of 4 clean
    res["runs"][2].update(steps=4, clean_steps=2, clean_median_s=4.0)               # torch mcan: half clean
    res["runs"].append(_run("train", "original", "trar", "default", 8.8, 1000.0))   # the original, same run
    (tmp_path / "r.json").write_text(json.dumps(res))
    goals = report.goal_lines(report.load_results([str(tmp_path / "r.json")]))
    assert "trar default: **1.50x** (goal <= 1.1x: NOT met, but measured under load: not conclusive)" in goals
    assert "mcan default: **1.05x** (goal <= 1.1x: met)" in goals
    assert "(goal <= 0.75x: met);" in goals                                         # torch trar has no samples


def test_report_no_docs_prints_the_block_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "a.json").write_text(json.dumps(_results()))
    (tmp_path / "b.json").write_text(json.dumps({"meta": {"date": "later", "command": "python -m bench eval"},
                                                 "runs": []}))
    docs = tmp_path / "docs" / "benchmarks.md"
    bench_main(["report", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--docs", str(docs), "--no-docs"])
    out = capsys.readouterr().out
    assert out.startswith("### Run\n") and "| trar | default | cpu | 64 | 6.16 | 9.24 | 1.5 |" in out
    assert f"then `python -m bench report {tmp_path / 'a.json'} {tmp_path / 'b.json'}`" in out
    assert not docs.parent.exists()


@pytest.mark.parametrize("argv,message", [(["train", "--amp"], "add --gpu N"),
                                          (["eval", "--gpu", "0", "--amp"], "always runs in float32"),
                                          (["train", "--warmup", "-1"], "--warmup and --default-warmup")])
def test_cli_refuses_measurements_it_cannot_label(argv, message):
    with pytest.raises(SystemExit, match=message):
        bench_main(argv + ["--no-docs"])


def test_chart_skips_gpu_only_results(tmp_path):
    runs = [dict(_run("train", "torch", "trar", "demo", 0.01, 100.0), device="cuda:0")]
    assert report.chart({"runs": runs}, str(tmp_path / "c.png")) is None
    assert not (tmp_path / "c.png").exists()


def test_write_docs_replaces_only_the_generated_block(tmp_path):
    docs = tmp_path / "b.md"
    docs.write_text(f"# B\n\nbefore\n\n{report.BEGIN}\nold numbers\n{report.END}\n\nafter\n")
    merged = {"meta": {}, "runs": _results()["runs"], "data": None, "convert": None}
    report.write_docs(merged, str(docs), str(tmp_path / "c.png"))
    text = docs.read_text()
    assert "old numbers" not in text and text.count(report.BEGIN) == 1
    assert text.startswith("# B\n\nbefore\n\n") and text.endswith("\n\nafter\n") and "| 6.16 | 9.24 |" in text
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


# ---- data loading -------------------------------------------------------------------------------------------------

def test_data_loading_measure_tiny(tmp_path, backend):
    res = measure_data({"images": 3, "backends": [backend.name], "workers": 0, "grid_size": [16, 8],
                        "region_size": [12, 8], "batch_size": 4, "root": str(tmp_path)})
    for source in ("grid", "region"):
        entry = res[source]
        assert entry["samples"] == 15
        loaders = sorted(k for k in entry if "_loader_" in k)                 # workers 0 only: no fork here
        assert loaders == [f"{backend.name}_loader_w0_samples_per_s", f"{backend.name}_loader_w0_store_samples_per_s"]
        assert all(entry[k] > 0 for k in loaders)
        assert entry["per_file_samples_per_s"] > 0 and entry["store_samples_per_s"] > 0
        assert entry["store_bytes"] > 0
        assert entry["from_disk_samples"] == 3                                # one first read per image
        for reader in ("per_file", "store"):                                  # a rate only where the files left
            rate, resident = entry[f"{reader}_from_disk_samples_per_s"], entry[f"{reader}_from_disk_resident"]
            assert (rate > 0 and resident <= 0.05) if _droppable(tmp_path) else rate is None
    assert os.listdir(tmp_path) == []                                         # the temporary data are removed


def _droppable(folder):
    """Whether files in ``folder`` can leave the page cache: Linux, and a file system on a disk (not tmpfs)."""
    disk = page_cache.describe_disk(str(folder))
    return hasattr(os, "posix_fadvise") and disk is not None and not disk.startswith(("tmpfs", "ramfs"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="not Linux (page_cache asks mincore(2))")
def test_page_cache_drop_and_residency(tmp_path):
    paths = []
    for k in range(3):
        path = tmp_path / f"{k}.npy"
        np.save(path, np.arange(100_000 * (k + 1), dtype=np.float32))
        np.load(path)
        paths.append(str(path))
    assert page_cache.resident_fraction(paths) == 1.0                         # just written and read (None: failed)
    page_cache.drop(paths)
    dropped = page_cache.resident_fraction(paths)
    assert dropped <= 0.05 if _droppable(tmp_path) else dropped == 1.0
    np.load(paths[2])                                                         # 3 of the 6 parts read again
    assert page_cache.resident_fraction(paths[2:]) == 1.0
    if _droppable(tmp_path):
        assert 0.45 <= page_cache.resident_fraction(paths) <= 0.55


@pytest.mark.skipif(not os.path.exists("/proc/mounts"), reason="no /proc/mounts (not Linux)")
def test_describe_disk_names_the_file_system():
    assert page_cache.describe_disk("/proc/self") == "proc on proc"           # the longest mount point wins
    assert page_cache.describe_disk("/").split(" on ")[0] != "proc"


def test_before_after_table():
    before = [_run("train", "paddle", "trar", "default", 20.0, 1.0),
              _run("train", "torch", "trar", "default", 9.0, 1.0)]
    after = [_run("train", "paddle", "trar", "default", 15.0, 1.0)]
    table = report.before_after_table(before, after)
    assert "| paddle | trar | default | 20 | 15 | 0.75 |" in table and "torch" not in table
    assert report.before_after_table(before, []) == ""


def test_gpu_rows_pair_the_backends_and_keep_amp_apart():
    """torch names its GPU cuda:0 and paddle gpu:0; fp32 and AMP runs of one model are separate rows."""
    runs = []
    for amp, (t, p) in ((False, (0.30, 0.36)), (True, (0.20, 0.30))):
        for backend, median, device in (("torch", t, "cuda:0"), ("paddle", p, "gpu:0")):
            run = _run("train", backend, "trar", "default", median, 1000.0)
            run.update(device=device, amp=amp, gpu_peak_mib=8000.0 if amp else 12000.0)
            runs.append(run)
    runs.append(_run("train", "torch", "trar", "default", 3.0, 4000.0))             # the CPU row, torch only
    devices = ["cpu", "gpu:0", "gpu:0 amp"]
    table = report.model_table(runs, "train", devices)
    assert "| trar | default | gpu:0 | 64 | 0.3 | 0.36 | 1.2 | 12000 | 12000 |" in table    # GPU memory, not RSS
    assert "| trar | default | gpu:0 amp | 64 | 0.2 | 0.3 | 1.5 | 8000 | 8000 |" in table
    assert "| trar | default | cpu | 64 | 3 | – | – | 4000 | – |" in table


# ---- rounds: the backends alternate, the ratio is paired ------------------------------------------------------------

def test_model_runs_alternate_the_backends_and_combine_the_rounds(monkeypatch):
    from bench import __main__ as bench_cli
    calls = []
    times = {"torch": [[0.10, 0.11], [0.30, 0.31], [0.20, 0.20]], "paddle": [[0.12, 0.12], [0.30, 0.30],
                                                                           [0.30, 0.31]]}

    def fake_child(module, spec, threads, timeout, max_others=0.5):
        calls.append(spec["backend"])
        steps = times[spec["backend"]][calls.count(spec["backend"]) - 1]
        return {**spec, "batch_size": 32, "times_s": steps, "median_s": float(np.median(steps)),
                "others_running_per_step": [0.0, 1.0], "peak_rss_mib": 100.0 + len(calls)}

    monkeypatch.setattr(bench_cli, "run_child", fake_child)
    monkeypatch.setattr(bench_cli, "running_now", lambda seconds=3.0: 0.0)
    args = build_parser().parse_args(["train", "--models", "mcan", "--sizes", "demo", "--rounds", "3", "--steps", "2"])
    torch_run, paddle_run = bench_cli.model_runs(args, ["train"], {"quiet": True})
    assert calls == ["torch", "paddle", "paddle", "torch", "torch", "paddle"]
    assert torch_run["times_s"] == [0.10, 0.11, 0.30, 0.31, 0.20, 0.20] and torch_run["steps"] == 6
    assert torch_run["clean_steps"] == 3 and torch_run["clean_median_s"] == 0.2     # the first step of each round
    assert torch_run["round_times_s"] == pytest.approx([0.105, 0.305, 0.2]) and torch_run["rounds"] == 3
    assert paddle_run["peak_rss_mib"] == 106.0                                         # the highest of its rounds
    # per round 0.12 / 0.105, 0.30 / 0.305, 0.305 / 0.2: median 1.143; the clean medians give 0.3 / 0.2 = 1.5
    assert report.ratio(torch_run, paddle_run) == pytest.approx(0.12 / 0.105)
    row = report.model_table([torch_run, paddle_run], "train")
    assert "| 1.14 (0.98 to 1.52 over 3 rounds) |" in row
    assert "mcan demo: **1.14x** (0.98 to 1.52 over 3 rounds) (goal <= 1.2x: met)" in report.goal_lines(
        {"runs": [torch_run, paddle_run]})


def test_a_failed_round_fails_the_measurement():
    from bench.__main__ import combine_rounds
    ok = {"kind": "train", "backend": "torch", "model": "mcan", "size": "demo", "steps": 1, "times_s": [0.1],
          "median_s": 0.1, "batch_size": 2}
    combined = combine_rounds([ok, {**ok, "error": "exit -9: killed"}, ok], 0.5)
    assert combined["error"] == "1 of 3 rounds failed; first: exit -9: killed"
    assert combine_rounds([ok], 0.5) is ok


def test_ratio_without_rounds_is_the_ratio_of_step_times():
    t, p = _run("train", "torch", "trar", "demo", 0.04, 1.0), _run("train", "paddle", "trar", "demo", 0.05, 1.0)
    assert report.ratio(t, p) == pytest.approx(1.25) and report.paired_ratios(t, p) is None
    t["round_times_s"], p["round_times_s"] = [0.04, 0.04], [0.05]                      # not the same rounds
    assert report.paired_ratios(t, p) is None


def test_report_names_a_missing_or_foreign_file(tmp_path):
    (tmp_path / "notes.md").write_text("# not JSON\n")
    (tmp_path / "list.json").write_text("[1, 2]")
    for name, message in (("absent.json", "no such result file"), ("notes.md", "not a bench result JSON"),
                          ("list.json", r"not a bench result JSON \(expected an object with 'meta'")):
        with pytest.raises(SystemExit, match=f"^python -m bench report: .*{name}: {message}"):
            bench_main(["report", str(tmp_path / name), "--docs", str(tmp_path / "b.md")])
    assert not (tmp_path / "b.md").exists()


# ---- GPU runs: loss scaling, TF32, a run cut off ---------------------------------------------------------------------

class _Scaler:
    """A GradScaler as the trainers hold it: torch's get_scale(), or Paddle's state_dict()['scale']."""

    def __init__(self, scales, paddle_style=False):
        self.scales, self.now = list(scales), None
        if paddle_style:
            self.state_dict = lambda: {"scale": np.array([self.now], np.float32), "incr_ratio": 2.0}
        else:
            self.get_scale = lambda: self.now

    def step(self):
        self.now = self.scales.pop(0) if len(self.scales) > 1 else self.scales[0]


@pytest.mark.parametrize("paddle_style", [False, True], ids=["torch", "paddle"])
def test_amp_steps_run_until_the_loss_scale_settles(paddle_style):
    scaler = _Scaler([65536.0, 32768.0, 16384.0, 8192.0, 8192.0, 8192.0, 8192.0], paddle_style)
    scaler.step()
    trainer = type("Trainer", (), {"scaler": scaler})()
    assert ts.loss_scale(trainer) == 65536.0
    assert ts.settle_loss_scale(scaler.step, trainer, stable=3) == (6, True)   # 3 halvings, 3 steps at one scale
    assert ts.loss_scale(trainer) == 8192.0
    assert ts.settle_loss_scale(scaler.step, type("Trainer", (), {"scaler": None})()) == (0, True)   # no AMP
    falling = _Scaler([2.0 ** -k for k in range(100)], paddle_style)
    falling.step()
    assert ts.settle_loss_scale(falling.step, type("Trainer", (), {"scaler": falling})(), limit=10) == (10, False)


def test_report_says_what_gpu_rows_ran_with():
    run = {**_run("train", "torch", "trar", "default", 0.2, 900.0), "device": "cuda:0", "amp": True,
           "framework": {"threads": 2, "tf32_matmul": False, "tf32_cudnn": True},
           "loss_scale": {"settle_steps": 14, "after_each_step": [4096.0, 4096.0, 2048.0], "fell": 1}}
    lines = report.gpu_lines([_run("train", "torch", "trar", "demo", 0.1, 500.0), run])
    assert "- GPU float32 (TF32 allowed): torch: matmul off, cuDNN on" in lines
    assert "train torch trar default: 14 steps to settle, scale 2048, 1 timed step(s) skipped Adam" in lines
    assert report.gpu_lines([_run("train", "torch", "trar", "demo", 0.1, 500.0)]) == ""      # CPU rows: nothing
    run["loss_scale"].update(settle_steps=64, settled=False)
    assert "train torch trar default: not settled after 64 steps, scale 2048" in report.gpu_lines([run])


def test_rounds_of_amp_runs_keep_every_rounds_loss_scaling():
    from bench.__main__ import combine_rounds
    rounds = [{**_run("train", "torch", "mcan", "demo", 0.1, 100.0), "steps": 2, "times_s": [0.1, 0.1],
               "loss_scale": {"settle_steps": n, "settled": True, "after_each_step": [s, s / 2 if fell else s],
                              "fell": fell}}
              for n, s, fell in ((14, 4096.0, 0), (3, 4096.0, 1), (5, 2048.0, 1))]
    combined = combine_rounds(rounds, 0.5)["loss_scale"]
    assert combined == {"settle_steps": 14, "settled": True, "fell": 2,
                        "after_each_step": [4096.0, 4096.0, 4096.0, 2048.0, 2048.0, 1024.0]}


def test_a_run_cut_off_keeps_what_it_measured(tmp_path, monkeypatch):
    """The result JSON is rewritten after every measurement: a run killed midway (here the second measurement never
    returns) leaves the first in a file marked partial, which the report says."""
    from bench import __main__ as bench_cli
    calls = []

    def child(module, spec, threads, timeout, max_others=0.5):
        calls.append(spec.get("backend", module))
        if len(calls) == 2:
            raise KeyboardInterrupt     # what a kill looks like from here: nothing after this runs
        return {**spec, "batch_size": 32, "times_s": [0.1], "median_s": 0.1, "peak_rss_mib": 100.0}

    monkeypatch.setattr(bench_cli, "run_child", child)
    monkeypatch.setattr(bench_cli, "running_now", lambda seconds=3.0: 0.0)
    out = tmp_path / "r.json"
    out.write_text('{"meta": {"command": "an earlier, complete run"}, "runs": []}')
    with pytest.raises(KeyboardInterrupt):
        bench_main(["train", "--models", "mcan", "--sizes", "demo", "--rounds", "1", "--out", str(out), "--no-docs"])
    assert json.loads(out.read_text())["meta"]["command"] == "an earlier, complete run"      # left alone
    partial = tmp_path / "r.partial.json"
    saved = json.loads(partial.read_text())
    assert saved["meta"]["partial"] is True
    assert [(r["backend"], r["median_s"]) for r in saved["runs"]] == [("torch", 0.1)]
    assert "**partial**: `python -m bench train" in report.render(report.load_results([str(partial)]))
    calls.append("past the cut")     # the next run ends: its result replaces the partial file
    bench_main(["train", "--models", "mcan", "--sizes", "demo", "--rounds", "1", "--out", str(out), "--no-docs"])
    assert not partial.exists() and "partial" not in json.loads(out.read_text())["meta"]
