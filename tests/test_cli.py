import pytest

from core.cli import config_from_argv, overrides_from_args, parse_args
from core.config import ConfigError

BASE = ["--RUN", "train", "--MODEL", "trar", "--DATASET", "demo"]


def _overrides(*flags):
    return overrides_from_args(parse_args(BASE + list(flags)))


def _argparse_error(argv, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


def test_unset_flags_stay_out_of_the_overrides():
    ns = parse_args(BASE)
    assert (ns.RUN_MODE, ns.MODEL, ns.DATASET) == ("train", "trar", "demo")
    assert overrides_from_args(ns) == {"RUN_MODE": "train"}


def test_every_flag_maps_to_its_config_key():
    got = _overrides("--SPLIT", "train+val", "--EVAL_EE", "False", "--SAVE_PRED", "True", "--BS", "32",
                     "--GPU", "0,1", "--SEED", "5", "--VERSION", "v", "--RESUME", "true", "--CKPT_V", "old",
                     "--CKPT_E", "3", "--CKPT_PATH", "a.pkl", "--ACCU", "2", "--NW", "0", "--PINM", "0",
                     "--VERB", "1", "--MAX_EPOCH", "4", "--backend", "torch", "--DATA_ROOT", "d", "--CONFIG", "x.yml",
                     "--SUBSET", "50", "--SUBSET_IIDS", "ids.txt", "--SUBSET_ANS_TYPES", "yes/no, number",
                     "--SKIP_MISSING", "True", "--AMP", "false")
    assert got == {
        "RUN_MODE": "train", "TRAIN_SPLIT": "train+val", "EVAL_EVERY_EPOCH": False, "TEST_SAVE_PRED": True,
        "BATCH_SIZE": 32, "GPU": "0,1", "SEED": 5, "VERSION": "v", "RESUME": True, "CKPT_VERSION": "old",
        "CKPT_EPOCH": 3, "CKPT_PATH": "a.pkl", "GRAD_ACCU_STEPS": 2, "NUM_WORKERS": 0, "PIN_MEM": False,
        "VERBOSE": True, "MAX_EPOCH": 4, "BACKEND": "torch", "DATA_ROOT": "d", "CONFIG": "x.yml", "SUBSET": 50,
        "SUBSET_IIDS": "ids.txt", "SUBSET_ANS_TYPES": ["yes/no", "number"], "SKIP_MISSING_FEATS": True,
        "AMP": False,
    }


@pytest.mark.parametrize("text, value", [
    ("True", True), ("False", False), ("true", True), ("false", False), ("1", True), ("0", False),
    ("'True'", True), ('"False"', False), (" TRUE ", True),
])
def test_bool_flags(text, value):
    assert _overrides("--EVAL_EE", text)["EVAL_EVERY_EPOCH"] is value


def test_bare_bool_flag_means_true():
    assert _overrides("--RESUME")["RESUME"] is True


@pytest.mark.parametrize("text", ["yes", "2", "", "__import__('os')"])
def test_bad_bool_is_an_error_naming_the_flag(text, capsys):
    err = _argparse_error(BASE + ["--RESUME", text], capsys)
    assert "--RESUME" in err and "True or False" in err


def test_bad_int_and_choice_name_the_flag(capsys):
    assert "--BS" in _argparse_error(BASE + ["--BS", "many"], capsys)
    assert "--MODEL" in _argparse_error(["--RUN", "train", "--MODEL", "vilbert", "--DATASET", "vqa"], capsys)
    assert "--backend" in _argparse_error(BASE + ["--backend", "jax"], capsys)


def test_required_flags(capsys):
    assert "--RUN" in _argparse_error(["--MODEL", "trar", "--DATASET", "vqa"], capsys)


def test_quoted_values_from_shells():
    ns = parse_args(["--RUN='train'", "--MODEL='trar'", '--DATASET="vqa"', "--SPLIT='train+val'"])
    assert (ns.RUN_MODE, ns.MODEL, ns.DATASET, ns.TRAIN_SPLIT) == ("train", "trar", "vqa", "train+val")


@pytest.mark.parametrize("model", ["trar", "mcan_small", "mcan_large", "mmnasnet_small", "mmnasnet_large",
                                   "lsat"])
@pytest.mark.parametrize("dataset", ["vqa", "clevr", "demo", "demo_clevr"])
def test_the_originals_model_and_dataset_names_parse(model, dataset):
    ns = parse_args(["--RUN", "val", "--MODEL", model, "--DATASET", dataset])
    assert (ns.MODEL, ns.DATASET) == (model, dataset)


def test_set_reads_yaml_values():
    got = _overrides("--SET", "LR_BASE=2.0e-5", "--SET", "ORDERS=[0, 1]", "--SET",
                     "FEAT_SIZE={vqa: {FRCN_FEAT_SIZE: [16, 64]}}")
    assert got["LR_BASE"] == 2e-5 and got["ORDERS"] == [0, 1]
    assert got["FEAT_SIZE"] == {"vqa": {"FRCN_FEAT_SIZE": [16, 64]}}


def test_explicit_flag_wins_over_set():
    assert _overrides("--SET", "BATCH_SIZE=8", "--BS", "16")["BATCH_SIZE"] == 16


def test_set_needs_key_equals_value(capsys):
    assert "--SET" in _argparse_error(BASE + ["--SET", "LR_BASE"], capsys)


def test_config_from_argv_end_to_end():
    cfg = config_from_argv(BASE + ["--BS", "16", "--SET", "LR_BASE=2e-5", "--SET", "IMG_SCALE=4", "--SET",
                                   "FEAT_SIZE={vqa: {FRCN_FEAT_SIZE: [16, 48]}}", "--backend", "torch"])
    assert (cfg.BATCH_SIZE, cfg.LR_BASE, cfg.BACKEND) == (16, 2e-5, "torch")
    assert cfg.FEAT_SIZE["vqa"]["FRCN_FEAT_SIZE"] == (16, 48)
    # the yml decides what no flag sets
    assert (cfg.MAX_EPOCH, cfg.HIDDEN_SIZE) == (12, 64)


def test_config_errors_pass_through():
    with pytest.raises(ConfigError, match="CKPT_EPOCH"):
        config_from_argv(["--RUN", "val", "--MODEL", "trar", "--DATASET", "vqa"])
    with pytest.raises(ConfigError, match="LAYR"):
        config_from_argv(BASE + ["--SET", "LAYR=3"])


def test_help_is_grouped(capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for title in ("what to run:", "training:", "run names and checkpoints:", "data and subsets:",
                  "devices and loading:"):
        assert title in out
    assert "--CKPT_V NAME" in out and "--EVAL_EE [BOOL]" in out


def test_verb_help_says_it_hides_the_per_step_output_only(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())                           # argparse wraps the lines
    assert "per-step progress bar" in text and "accuracies are always shown" in text
