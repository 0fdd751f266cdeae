"""formats.restricted_pickle: torch files read into numpy without torch, and pickles that would run code are refused."""
import collections
import io
import os
import pickle
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from formats.restricted_pickle import CheckpointReadError, read_pdparams, read_torch_checkpoint

torch = pytest.importorskip("torch")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _container():
    """The openvqa container with an Adam state, plus tensors that exercise strides, offsets and dtypes."""
    gen = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LSTM(4, 5, batch_first=True))
    opt = torch.optim.Adam(net.parameters(), lr=0, betas=(0.9, 0.98), eps=1e-9)
    net[0](torch.randn(2, 3, generator=gen)).sum().backward()
    opt.step()
    odd = {
        "transposed": torch.arange(12.0).reshape(3, 4).t(),
        "slice": torch.arange(10)[2:7],
        "half": torch.randn(4, generator=gen).half(),
        "bfloat16": torch.randn(4, generator=gen).bfloat16(),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5, dtype=torch.float64),
        "empty": torch.zeros(0, 3),
    }
    return {"state_dict": net.state_dict(), "optimizer": opt.state_dict(), "lr_base": 1e-4, "epoch": 3, "odd": odd}


def _assert_same(ours, ref, path="root"):
    """Structure and values of our numpy result equal torch.load's (bfloat16 compared after widening to float32)."""
    if isinstance(ref, torch.Tensor):
        assert isinstance(ours, np.ndarray), f"{path}: {type(ours).__name__} instead of an array"
        expected = ref.float().numpy() if ref.dtype == torch.bfloat16 else ref.numpy()
        assert ours.dtype == expected.dtype and ours.shape == expected.shape, f"{path}: {ours.dtype} {ours.shape}"
        np.testing.assert_array_equal(ours, expected, err_msg=path)
    elif isinstance(ref, dict):
        assert type(ours) is type(ref) and list(ours) == list(ref), path
        for key in ref:
            _assert_same(ours[key], ref[key], f"{path}.{key}")
    elif isinstance(ref, (list, tuple)):
        assert type(ours) is type(ref) and len(ours) == len(ref), path
        for i, (a, b) in enumerate(zip(ours, ref)):
            _assert_same(a, b, f"{path}[{i}]")
    else:
        assert ours == ref, f"{path}: {ours!r} != {ref!r}"


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("torch_files")
    obj = _container()
    paths = {"zip": str(folder / "zip.pkl"), "legacy": str(folder / "legacy.pkl")}
    torch.save(obj, paths["zip"], _use_new_zipfile_serialization=True)
    torch.save(obj, paths["legacy"], _use_new_zipfile_serialization=False)
    return paths


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_torch_formats_read_equal_to_torch_load(torch_files, fmt):
    path = torch_files[fmt]
    assert zipfile.is_zipfile(path) == (fmt == "zip")
    _assert_same(read_torch_checkpoint(path), torch.load(path, map_location="cpu", weights_only=True))


def _as_saved_on_a_gpu(path, out, fmt):
    """A copy of the torch file ``path`` as a CUDA machine writes it: storages located on 'cuda:0', and in the legacy
    format (torch < 1.6, the originals' checkpoints) typed torch.cuda.<Type>Storage. No GPU needed: only the pickled
    storage ids change."""
    cpu, cuda = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"   # BINUNICODE 'cpu' -> 'cuda:0'

    def patch(pickled):
        assert cpu in pickled
        pickled = pickled.replace(cpu, cuda)
        if fmt == "legacy":
            pickled, n = re.subn(rb"ctorch\n(\w+Storage)\n", rb"ctorch.cuda\n\1\n", pickled)
            assert n > 0
        return pickled

    if fmt == "legacy":
        with open(path, "rb") as f:
            raw = f.read()
        with open(out, "wb") as f:
            f.write(patch(raw))
        return
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, patch(data) if info.filename.endswith("data.pkl") else data)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_checkpoints_saved_on_a_gpu_read_onto_the_cpu(torch_files, fmt, tmp_path):
    path = str(tmp_path / f"gpu_{fmt}.pkl")
    _as_saved_on_a_gpu(torch_files[fmt], path, fmt)
    with open(path, "rb") as f:
        assert b"cuda:0" in f.read()
    _assert_same(read_torch_checkpoint(path), torch.load(path, map_location="cpu", weights_only=True))


def test_arrays_are_writable_numpy(torch_files):
    state = read_torch_checkpoint(torch_files["zip"])["state_dict"]
    weight = state["0.weight"]
    assert weight.flags.writeable and weight.flags.c_contiguous
    weight[0, 0] = 7.0  # usable as an ordinary array


def test_reads_without_torch(torch_files, tmp_path):
    """A subprocess where `import torch` fails reads both formats; the arrays match torch.load here."""
    out = str(tmp_path / "read.npz")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        f"sys.path.insert(0, {ROOT!r})\n"
        "import numpy as np\n"
        "from formats.restricted_pickle import read_torch_checkpoint\n"
        f"z = read_torch_checkpoint({torch_files['zip']!r})['state_dict']\n"
        f"l = read_torch_checkpoint({torch_files['legacy']!r})['state_dict']\n"
        "assert sys.modules['torch'] is None\n"
        f"np.savez({out!r}, **{{'zip/' + k: v for k, v in z.items()}}, **{{'legacy/' + k: v for k, v in l.items()}})\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = torch.load(torch_files["zip"], weights_only=True)["state_dict"]
    with np.load(out) as got:
        for fmt in ("zip", "legacy"):
            for key, tensor in expected.items():
                np.testing.assert_array_equal(got[f"{fmt}/{key}"], tensor.numpy(), err_msg=f"{fmt} {key}")


class _RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _Evaluates:
    def __reduce__(self):
        return eval, ("1 + 1",)


def _zip_with_data_pkl(path, payload):
    """A torch-style zip archive whose data.pkl is ``payload``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")


def _legacy_with_object(path, payload_obj):
    """Torch's legacy layout (magic, protocol, sys_info, object, keys) with ``payload_obj`` as the object."""
    with open(path, "wb") as f:
        for part in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(part, f, protocol=2)
        pickle.dump({"state_dict": payload_obj}, f, protocol=2)
        pickle.dump([], f, protocol=2)


@pytest.mark.parametrize("fmt", ["pdparams", "zip", "legacy"])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, fmt):
    marker = tmp_path / "pwned"
    evil = {"weight": _RunsCommand(f"touch {marker}")}
    path = str(tmp_path / f"evil.{fmt}")
    if fmt == "pdparams":
        with open(path, "wb") as f:
            pickle.dump(evil, f)
        reader = read_pdparams
    elif fmt == "zip":
        _zip_with_data_pkl(path, pickle.dumps(evil, protocol=2))
        reader = read_torch_checkpoint
    else:
        _legacy_with_object(path, evil)
        reader = read_torch_checkpoint
    with pytest.raises(pickle.UnpicklingError, match=r"refused global (posix|os|nt)\.system"):
        reader(path)
    assert not marker.exists()


def test_eval_is_refused(tmp_path):
    path = tmp_path / "eval.pdparams"
    path.write_bytes(pickle.dumps({"w": _Evaluates()}))
    with pytest.raises(pickle.UnpicklingError, match=r"builtins\.eval"):
        read_pdparams(str(path))


def test_tensor_reaching_past_its_storage_is_refused(tmp_path):
    """A crafted zip whose tensor claims 100 floats from a 4-float storage: no out-of-bounds read."""
    marker = object()

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if obj is marker:
                return ("storage", torch.FloatStorage, "0", "cpu", 4)
            return None

    class Tensor:
        def __reduce__(self):
            return torch._utils._rebuild_tensor_v2, (marker, 0, (100,), (1,), False, collections.OrderedDict())

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump({"w": Tensor()})
    path = str(tmp_path / "crafted.pkl")
    _zip_with_data_pkl(path, buf.getvalue())
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("archive/data/0", np.zeros(4, np.float32).tobytes())
    with pytest.raises(pickle.UnpicklingError, match="reaches past its storage"):
        read_torch_checkpoint(path)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_truncated_torch_file_gives_one_line_error(torch_files, tmp_path, fmt):
    data = open(torch_files[fmt], "rb").read()
    path = tmp_path / f"cut_{fmt}.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointReadError) as info:
        read_torch_checkpoint(str(path))
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_pdparams_reads_paddle_tensor_tuples(tmp_path):
    """paddle.save pickles a Tensor outside a state dict as (name, ndarray); the reader returns the array."""
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = tmp_path / "opt.pdopt"
    path.write_bytes(pickle.dumps({"epoch": 2, "opt": {"w_moment1_0": ("w_moment1_0", array)}}, protocol=4))
    got = read_pdparams(str(path))
    assert got["epoch"] == 2
    np.testing.assert_array_equal(got["opt"]["w_moment1_0"], array)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pdparams"
    path.write_text("just text\n")
    with pytest.raises(CheckpointReadError, match="notes.pdparams"):
        read_pdparams(str(path))
    with pytest.raises(CheckpointReadError, match="not a torch checkpoint"):
        read_torch_checkpoint(str(path))
