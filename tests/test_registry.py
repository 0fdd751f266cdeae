"""core/registry.py is the one list: twin model files, configs, CLI choices and the neutral code all agree with it."""
import ast
import io
import os
import pathlib
import tokenize

import pytest
import yaml

from backends import BACKENDS
from core import cli, config, registry

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORIGINAL_MODELS = ("trar", "mcan_small", "mcan_large", "mmnasnet_small", "mmnasnet_large")
ORIGINAL_DATASETS = ("vqa", "clevr", "demo", "demo_clevr")


def _top_level_classes(path):
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    return {node.name for node in tree.body if isinstance(node, ast.ClassDef)}


@pytest.mark.parametrize("use", registry.model_uses())
@pytest.mark.parametrize("fw", list(BACKENDS))
def test_every_model_has_a_twin_file_defining_net(fw, use):
    path = os.path.join(REPO, "backends", fw, "models", f"{use}.py")
    assert os.path.isfile(path), f"{path}: missing (core/registry.py names MODEL_USE {use!r})"
    assert "Net" in _top_level_classes(path), f"{path}: defines no class Net"


def test_every_model_file_is_in_the_registry():
    assert tuple(BACKENDS) == tuple(config.BACKENDS)   # core.config keeps the names without importing backends
    for fw in BACKENDS:
        folder = os.path.join(REPO, "backends", fw, "models")
        files = {f[:-3] for f in os.listdir(folder) if f.endswith(".py") and f != "__init__.py"}
        assert files == set(registry.model_uses()), f"{folder}: model files and registry MODEL_USE names differ"


def test_configs_are_exactly_the_claimed_pairs():
    shipped = {(d, f[:-4]) for d in os.listdir(config.CONFIGS_DIR) if os.path.isdir(os.path.join(config.CONFIGS_DIR, d))
               for f in os.listdir(os.path.join(config.CONFIGS_DIR, d)) if f.endswith(".yml")}
    claimed = {(d, m.name) for m in registry.MODELS.values() for d in m.datasets}
    assert shipped == claimed


@pytest.mark.parametrize("model", list(registry.MODELS))
def test_each_claimed_yml_loads_and_fits_its_spec(model):
    spec = registry.MODELS[model]
    for dataset in spec.datasets:
        path = config.model_config_path(model, dataset)
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
        assert str(raw.get("MODEL_USE", spec.model_use)).lower() == spec.model_use, path
        cfg = config.load_config(model, dataset)
        assert (cfg.MODEL_USE, cfg.DATA_FORMAT) == (spec.model_use, registry.DATASETS[dataset].data_format)
        assert spec.task == registry.DATASETS[dataset].task
        if cfg.DATA_FORMAT == "vqa":
            assert cfg.FEAT_TYPE == spec.features, f"{path}: FEAT_TYPE {cfg.FEAT_TYPE} but the spec reads " \
                                                   f"{spec.features}"


def test_specs_are_consistent():
    for spec in registry.DATASETS.values():
        assert spec.data_format in registry.FORMATS and spec.task in registry.TASKS
        assert set(spec.loss_funcs) and set(spec.train_splits) >= {"train"}
    for spec in registry.FORMATS.values():
        assert spec.task in registry.TASKS
        registry.load(spec.loader)                      # the dataset class imports
    for spec in registry.MODELS.values():
        assert spec.task in registry.TASKS and set(spec.datasets) <= set(registry.DATASETS)
        assert callable(spec.settings.validate)


def test_every_config_holds_every_models_keys():
    cfg = config.load_config("mcan_small", "vqa")
    for spec in registry.MODELS.values():
        for key, default in getattr(spec.settings, "DEFAULTS", {}).items():
            assert key in cfg and key in config.DEFAULTS
    assert (cfg.ORDERS, cfg.REL_HBASE) == ([0, 1, 2, 3], 64)


def test_cli_choices_are_the_registry_names():
    choices = {a.dest: tuple(a.choices) for a in cli.build_parser()._actions if a.choices}
    assert choices["MODEL"] == tuple(registry.MODELS)
    assert choices["DATASET"] == tuple(registry.DATASETS)
    assert tuple(config.MODELS) == tuple(registry.MODELS) and tuple(config.DATASETS) == tuple(registry.DATASETS)


@pytest.mark.parametrize("model", ORIGINAL_MODELS)
def test_the_original_names_parse(model):
    for dataset in ORIGINAL_DATASETS:
        ns = cli.parse_args(["--RUN=train", f"--MODEL={model}", f"--DATASET={dataset}"])
        assert (ns.MODEL, ns.DATASET) == (model, dataset)


def test_capabilities():
    assert [m.name for m in registry.MODELS.values() if m.routes] == ["trar", "vit_trar"]
    assert {m.model_use for m in registry.MODELS.values() if m.needs_box_geometry} == {"mmnasnet"}
    assert [d.name for d in registry.DATASETS.values() if d.generated] == ["demo", "demo_clevr", "demo_images"]
    assert config.load_config("trar", "demo").DATA_ROOT == os.path.join("data", "demo")
    assert config.load_config("trar", "vqa").DATA_ROOT == "data"
    assert registry.model_of(config.load_config("mcan_large", "vqa")).name == "mcan_small"   # the Net's spec
    with pytest.raises(ValueError, match="MODEL_USE 'nope'"):
        registry.model_of(type("Cfg", (), {"MODEL_USE": "nope"})())


def _code_strings(path):
    """The string literals of a module's code (docstrings left out)."""
    with open(path, encoding="utf-8") as f:
        source = f.read()
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            docstrings.add(body[0].value.lineno)
    strings = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.STRING and tok.start[0] not in docstrings:
            strings.append((tok.start[0], ast.literal_eval(tok.string) if not tok.string[:2].lower().startswith(
                ("f'", 'f"', "rf", "fr")) else tok.string))
    return strings


# Neutral code: found by listing, so a new module is checked too (a format's own module, core/data/demo.py the
# generator and core/data/paths.py the two formats' layout, names its format by design).
_NEUTRAL_GLOBS = ("core/engine.py", "core/data/*.py", "convert/parity.py", "backends/base.py", "backends/*/backend.py",
                  "backends/*/models/__init__.py", "deploy/*.py", "bench/*.py", "tests/gpu/smoke.py", "run.py")
_NOT_NEUTRAL = {"core/data/demo.py", "core/data/demo_images.py"}
NEUTRAL = sorted({str(p.relative_to(REPO)) for pattern in _NEUTRAL_GLOBS for p in pathlib.Path(REPO).glob(pattern)}
                 - _NOT_NEUTRAL)


# Names that are not a model or dataset choice in code: bench's size label 'demo' (a key of its result files,
# docs/benchmarks.md), and the smoke run's default --model (a flag default, checked against the registry's choices).
ALLOWED = {("bench/train_step.py", "demo"), ("bench/report.py", "demo"), ("bench/__main__.py", "demo"),
           ("tests/gpu/smoke.py", "mcan_small")}


@pytest.mark.parametrize("module", NEUTRAL)
def test_neutral_code_names_no_model_and_no_generated_dataset(module):
    names = set(registry.MODELS) | set(registry.model_uses()) | \
        {d.name for d in registry.DATASETS.values() if d.generated}
    found = [(line, s) for line, s in _code_strings(os.path.join(REPO, module))
             if s in names and (module, s) not in ALLOWED]
    assert not found, f"{module}: names a model or generated dataset in its code (use a registry capability): {found}"
