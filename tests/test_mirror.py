"""The twin files of backends/torch and backends/paddle keep one structure (a source-level check in the spirit of
transformers' utils/check_copies.py; no framework is imported).

For every file present in both backend folders (models/ listed from the folders, so a new model is covered, and a
model file on one side only fails), both sources are parsed with ``ast`` and reduced to an outline: the top-level
names in order; for each class its bases, class attributes and methods in order, each method's argument names and
the ``self.x = ...`` attributes it assigns (and buffers it registers) in order. The outlines must be equal after the
framework idioms below are spelled alike and the allowlisted differences are taken out. Bodies are not compared:
dim / axis, ModuleList / LayerList and the like differ inside them. The runtime module trees (parameter names and
shapes per model) are compared in tests/test_models.py (test_state_dict_equals_the_original).
"""
import ast
import difflib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TORCH, PADDLE = ROOT / "backends" / "torch", ROOT / "backends" / "paddle"

# Files in both folders that are not twins, and files on one side only; each with its reason.
NOT_MIRRORED = {
    "__init__.py": "each framework's import-time settings (paddle: thread and MKL defaults before import)",
    "checkpoint.py": "each framework's own file format (torch: one .pkl container; paddle: .pdparams + .pdopt)",
    "cpu_ops.py": "each framework's own CPU speed kernels, called from the twins by the same names",
    "export.py": "each framework's own exporters (paddle: static program, paddle2onnx; torch: torch.onnx)",
}
ONE_SIDED = {
    "compat.py": "paddle only: LSTM names and initialisation made like torch's, which is the original",
}

# Framework idioms spelled alike before comparing (in bases and names).
IDIOMS = (("nn.Module", "nn.Layer"), ("torch.autograd.Function", "PyLayer"))
FRAMEWORK_PREFIX = re.compile(r"\b(Torch|Paddle)(?=[A-Z])")

# Framework-forced differences: (file, torch outline line or None, paddle outline line or None, reason).
ALLOWED = (
    ("layers.py", "NetBase bases: nn.Layer", "NetBase bases: compat.LSTMAliasLoading",
     "paddle's set_state_dict runs no state-dict hooks; the base fills in the LSTM aliases (compat.py)"),
    ("backend.py", "FWTrainer.__init__: self.adam", None,
     "torch re-applies the Adam settings to its param groups when it loads a paddle optimizer state"),
    ("backend.py", "FWTrainer.__init__: self.sgd", None,
     "torch re-applies the SGD settings to its param groups when it loads a saved SGD state"),
    ("backend.py", "FWTrainer.__init__: self.autocast", None,
     "torch.autocast takes device_type and dtype; paddle.amp.auto_cast needs neither"),
)


def _spell(text):
    for torch_word, paddle_word in IDIOMS:
        text = text.replace(torch_word, paddle_word)
    return FRAMEWORK_PREFIX.sub("FW", text)


def _args(fn):
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args]
    names += [f"*{a.vararg.arg}"] if a.vararg else (["*"] if a.kwonlyargs else [])
    names += [x.arg for x in a.kwonlyargs] + ([f"**{a.kwarg.arg}"] if a.kwarg else [])
    return ", ".join(names)


def _self_targets(target):
    if isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _self_targets(element)
    elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
        yield target.attr


def _attributes(method):
    """'self.x' for every attribute the method assigns, and 'self.x (buffer)' for register_buffer('x', ...), in
    source order."""
    found = []
    for node in ast.walk(method):
        if isinstance(node, ast.Assign):
            found += [(node.lineno, node.col_offset, f"self.{n}") for t in node.targets for n in _self_targets(t)]
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            found += [(node.lineno, node.col_offset, f"self.{n}") for n in _self_targets(node.target)]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "register_buffer" and node.args and isinstance(node.args[0], ast.Constant)):
            found.append((node.lineno, node.col_offset, f"self.{node.args[0].value} (buffer)"))
    return [text for _, _, text in sorted(found)]


def _targets(node):
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return ", ".join(ast.unparse(t) for t in targets)


def outline(source):
    """The comparable structure of one module's source, as lines (framework idioms spelled alike)."""
    lines = []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines.append(f"def {node.name}({_args(node)})")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            lines.append(f"{_targets(node)} =")
        elif isinstance(node, ast.ClassDef):
            lines.append(f"class {node.name}")
            lines.append(f"{node.name} bases: {', '.join(ast.unparse(b) for b in node.bases)}")
            for item in node.body:
                if isinstance(item, (ast.Assign, ast.AnnAssign)):
                    lines.append(f"{node.name}.{_targets(item)} =")
                elif isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines.append(f"{node.name}.{item.name}({_args(item)})")
                    lines += [f"{node.name}.{item.name}: {attr}" for attr in _attributes(item)]
    return [_spell(line) for line in lines]


def mirror_drift(rel, torch_source, paddle_source):
    """'' when the twins of ``rel`` agree, else a unified diff of their outlines (after the allowlist)."""
    torch_lines, paddle_lines = outline(torch_source), outline(paddle_source)
    for file, torch_line, paddle_line, _reason in ALLOWED:
        if file != rel:
            continue
        for lines, line, side in ((torch_lines, torch_line, "torch"), (paddle_lines, paddle_line, "paddle")):
            if line is not None:
                assert line in lines, f"tests/test_mirror.py ALLOWED: {rel} ({side}) has no line {line!r}; drop it"
                lines.remove(line)
    if torch_lines == paddle_lines:
        return ""
    return "\n".join(difflib.unified_diff(torch_lines, paddle_lines, f"backends/torch/{rel}",
                                          f"backends/paddle/{rel}", lineterm="", n=2))


def _python_files(folder):
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*.py") if "__pycache__" not in p.parts}


def twin_files():
    return sorted((_python_files(TORCH) & _python_files(PADDLE)) - set(NOT_MIRRORED))


def unlisted_one_sided(torch_folder, paddle_folder):
    """Files in one of the two folders only, and not listed in ONE_SIDED."""
    return sorted((_python_files(torch_folder) ^ _python_files(paddle_folder)) - set(ONE_SIDED))


def test_every_backend_file_is_a_twin_or_listed():
    one_sided = unlisted_one_sided(TORCH, PADDLE)
    assert not one_sided, (f"{one_sided}: in one backend folder only; write its twin (models/<name>.py needs both) "
                           "or list it in tests/test_mirror.py ONE_SIDED with the reason")
    present = _python_files(TORCH) | _python_files(PADDLE)
    for rel in list(NOT_MIRRORED) + list(ONE_SIDED):
        assert rel in present, f"tests/test_mirror.py lists {rel}, which no backend has"
    models = {rel for rel in twin_files() if rel.startswith("models/")}
    assert {"models/trar.py", "models/mcan.py", "models/mmnasnet.py"} <= models


@pytest.mark.parametrize("rel", twin_files())
def test_twins_have_one_structure(rel):
    drift = mirror_drift(rel, (TORCH / rel).read_text(), (PADDLE / rel).read_text())
    assert not drift, (f"backends/torch/{rel} and backends/paddle/{rel} have drifted apart (names, methods or "
                       f"self attributes, in order); make them agree or allow the difference in tests/test_mirror.py "
                       f"ALLOWED with its reason:\n{drift}")


def _swap_lines(source, first, second):
    """``source`` with the lines holding ``first`` and ``second`` exchanged."""
    lines = source.splitlines(keepends=True)
    i = next(n for n, line in enumerate(lines) if first in line)
    j = next(n for n, line in enumerate(lines) if second in line)
    lines[i], lines[j] = lines[j], lines[i]
    return "".join(lines)


@pytest.mark.parametrize("plant", ["attribute order", "method renamed", "extra function", "argument dropped"])
def test_a_planted_drift_is_reported(plant):
    torch_source, paddle_source = (TORCH / "layers.py").read_text(), (PADDLE / "layers.py").read_text()
    assert mirror_drift("layers.py", torch_source, paddle_source) == ""
    if plant == "attribute order":
        drifted = _swap_lines(paddle_source, "self.linear_k = Linear(", "self.linear_q = Linear(")
        expected = "MHAtt.__init__: self.linear_"
    elif plant == "method renamed":
        drifted = paddle_source.replace("def merge_heads(self, x):", "def join_heads(self, x):")
        expected = "MHAtt.join_heads(self, x)"
    elif plant == "extra function":
        drifted = paddle_source + "\n\ndef helper(x):\n    return x\n"
        expected = "+def helper(x)"
    else:
        drifted = paddle_source.replace("def glimpse_sums(att, x):", "def glimpse_sums(att):")
        expected = "+def glimpse_sums(att)"
    assert drifted != paddle_source
    drift = mirror_drift("layers.py", torch_source, drifted)
    assert expected in drift, drift


def test_model_file_on_one_side_fails(tmp_path):
    """A model written for one backend only is caught by the folder listing."""
    for side in ("torch", "paddle"):
        (tmp_path / side / "models").mkdir(parents=True)
        (tmp_path / side / "models" / "trar.py").write_text("class Net:\n    pass\n")
    (tmp_path / "torch" / "models" / "newnet.py").write_text("class Net:\n    pass\n")
    assert unlisted_one_sided(tmp_path / "torch", tmp_path / "paddle") == ["models/newnet.py"]
