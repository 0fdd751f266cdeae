"""core/ must import neither torch nor paddle: import every core module while a finder records (and refuses) every
attempt to import a framework, guarded ones included."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Run in a fresh interpreter: records every import of torch / paddle (or a submodule) and makes it fail, so a
# module that swallows the ImportError is caught too.
_RECORDER = """
import sys
attempts = []

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'paddle'):
            attempts.append(name)
            raise ModuleNotFoundError(f"blocked: {name}", name=name)
        return None

sys.meta_path.insert(0, Refuse())
for name in MODULES:
    __import__(name)
print('attempts:', sorted(set(attempts)))
"""


def core_modules():
    for path in sorted((ROOT / "core").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        yield ".".join(parts)


def _attempts(modules, cwd=ROOT):
    code = f"MODULES = {list(modules)!r}\n" + _RECORDER
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)
    return proc


def test_core_imports_without_frameworks():
    modules = list(core_modules())
    assert "core.engine" in modules and "core.config" in modules
    proc = _attempts(modules)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("attempts: []"), proc.stdout


def test_the_check_would_catch_a_framework_import(tmp_path):
    # The same mechanism must see a guarded import and fail an unguarded one.
    (tmp_path / "guarded.py").write_text("try:\n    import torch\nexcept ImportError:\n    torch = None\n")
    (tmp_path / "plain.py").write_text("import paddle.nn\n")
    guarded = _attempts(["guarded"], cwd=tmp_path)
    assert guarded.returncode == 0 and "attempts: ['torch']" in guarded.stdout
    plain = _attempts(["plain"], cwd=tmp_path)
    assert plain.returncode != 0 and "blocked: paddle" in plain.stderr
