"""core/ must import neither torch nor paddle: import every core module with both frameworks blocked."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def core_modules():
    for path in sorted((ROOT / "core").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        yield ".".join(parts)


def test_core_imports_without_frameworks():
    modules = list(core_modules())
    assert "core.engine" in modules and "core.config" in modules
    code = (
        "import sys\n"
        "for blocked in ('torch', 'paddle'):\n"
        "    sys.modules[blocked] = None\n"
        f"for name in {modules!r}:\n"
        "    __import__(name)\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "print('ok', len(sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok")


def test_the_check_would_catch_a_framework_import():
    # The same mechanism must fail when a module does import a blocked framework.
    code = "import sys\nsys.modules['torch'] = None\nimport torch\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr
