"""Answering questions with an exported folder: Paddle Inference (paddle.inference.Config + create_predictor), or
onnxruntime for a folder written by ``python -m deploy onnx``.

    predictor = Predictor('results/export/trar')                    # CPU; device='gpu' for a CUDA build of Paddle
    predictor.answer(['what color is the circle?'], ['feats/123.npy'], k=5)
    predictor.answer_file('questions.json', 'feats/test2015', 'result.json')   # EvalAI json (CLEVR: text lines)

Questions and features are encoded by deploy.bundle with the training pipeline's functions.
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from core.data import features
from core.data.paths import load_json
from core.data.records import check_records
from core.data.tokenizer import tokenize
from core.evaluation.results import write_clevr_results, write_vqa_results
from deploy import c_output
from deploy.bundle import Bundle, BundleError

# Paddle Inference CPU settings (docs/aistudio.md, "Speed"). enable_memory_optim() fails on Paddle 3.3.1 with a
# PIR program at the first run ("Not find predictor_id 0 and pass_name memory_optimize_pass"), so it stays off.
CPU_DEFAULTS = {"mkldnn": True, "ir_optim": True, "memory_optim": False}
GPU_MEMORY_POOL_MB = 256


def default_threads() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


class PaddleRunner:
    """One paddle.inference predictor: run({input name: array}) -> float32 logits."""

    def __init__(self, model_file: str, params_file: str, device: str = "cpu", gpu_id: int = 0,
                 threads: int | None = None, mkldnn: bool = True, ir_optim: bool = True, memory_optim: bool = False):
        from paddle import inference

        import backends.paddle  # noqa: F401  (thread defaults, set before paddle is imported)
        config = inference.Config(model_file, params_file)
        config.disable_glog_info()
        self.device = "cpu"
        if device == "gpu":
            import paddle
            if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
                config.enable_use_gpu(GPU_MEMORY_POOL_MB, int(gpu_id))
                self.device = f"gpu:{int(gpu_id)}"
            else:
                warnings.warn("device 'gpu': this Paddle build sees no CUDA device; predicting on the CPU",
                              RuntimeWarning, stacklevel=2)
        if self.device == "cpu":
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(int(threads or default_threads()))
            if mkldnn:
                config.enable_mkldnn()
            else:
                config.disable_mkldnn()
        config.switch_ir_optim(bool(ir_optim))
        if memory_optim:
            config.enable_memory_optim()
        self.predictor = inference.create_predictor(config)
        self.input_names = list(self.predictor.get_input_names())
        self.output_names = list(self.predictor.get_output_names())
        self._ran = False

    def run(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        for name in self.input_names:
            handle = self.predictor.get_input_handle(name)
            array = np.ascontiguousarray(batch[name])
            handle.reshape(list(array.shape))
            handle.copy_from_cpu(array)
        if self._ran:
            self.predictor.run()
        else:
            with c_output.filtered(1, c_output.STDOUT_NOISE):   # stdout is kept for the answers
                self.predictor.run()
            self._ran = True
        return self.predictor.get_output_handle(self.output_names[0]).copy_to_cpu().astype(np.float32, copy=False)


class OnnxRunner:
    """An onnxruntime session with the same run() as PaddleRunner."""

    def __init__(self, model_file: str, device: str = "cpu", threads: int | None = None, **_cpu_knobs: Any):
        try:
            import onnxruntime
        except ImportError:
            raise BundleError(f"{model_file}: an ONNX model needs onnxruntime (pip install onnxruntime)") from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(threads or default_threads())
        providers = ["CPUExecutionProvider"]
        if device == "gpu" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = onnxruntime.InferenceSession(model_file, options, providers=providers)
        self.device = "gpu" if providers[0].startswith("CUDA") else "cpu"
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        feed = {name: np.ascontiguousarray(batch[name]) for name in self.input_names}
        return self.session.run(self.output_names[:1], feed)[0].astype(np.float32, copy=False)


def make_runner(bundle: Bundle, device: str = "cpu", gpu_id: int = 0, threads: int | None = None,
                **cpu_knobs: Any) -> PaddleRunner | OnnxRunner:
    knobs = dict(CPU_DEFAULTS, **cpu_knobs)
    if bundle.runtime == "onnx":
        runner = OnnxRunner(bundle.file("model"), device=device, threads=threads)
    else:
        runner = PaddleRunner(bundle.file("model"), bundle.file("params"), device=device, gpu_id=gpu_id,
                              threads=threads, **knobs)
    if sorted(runner.input_names) != sorted(bundle.input_names):
        raise BundleError(f"{bundle.file('model')}: the model takes inputs {runner.input_names}, but "
                          f"{bundle.path('manifest.json')} lists {bundle.input_names}; export the folder again")
    return runner


class Predictor:
    """An exported folder, checked, with its runtime: logits, top-k answers and result files."""

    def __init__(self, model_dir: str, device: str = "cpu", gpu_id: int = 0, threads: int | None = None,
                 verify_hashes: bool = True, **cpu_knobs: Any):
        """verify_hashes: compare every file with the manifest's sha256 (about a second per GB)."""
        self.bundle = Bundle(model_dir, verify_hashes=verify_hashes)
        self.runner = make_runner(self.bundle, device=device, gpu_id=gpu_id, threads=threads, **cpu_knobs)

    def logits(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        """float32 (B, answers) for a dict of batched input arrays (checked against the manifest)."""
        self.bundle.check_batch(batch)
        return self.runner.run(batch)

    def answer(self, questions: Sequence[str], feature_paths: Sequence[str], k: int = 5) -> list[dict[str, Any]]:
        """[{'question', 'unknown_words', 'words_not_read', 'answers': [(answer, score)]}] for parallel lists of
        questions and files; words_not_read: those past the max_token the model reads (as in training)."""
        logits = self.logits(self.bundle.make_batch(questions, feature_paths))
        max_token = self.bundle.max_token
        return [{"question": q, "unknown_words": self.bundle.encode(q)[1], "words_not_read": tokenize(q)[max_token:],
                 "answers": top} for q, top in zip(questions, self.bundle.top_answers(logits, k))]

    def answer_file(self, questions_path: str, features_dir: str, out_path: str, batch_size: int = 64) -> int:
        """Answer every question of a question file; write the EvalAI json (VQA) or answer lines (CLEVR)."""
        check_result_path(questions_path, out_path)
        items = read_questions(questions_path, self.bundle.manifest["data_format"])
        index = feature_index(features_dir, self.bundle.feature["ext"])
        paths = []
        for qid, iid, _ in items:
            if iid not in index:
                raise BundleError(f"{features_dir}: no {self.bundle.feature['ext']} feature file for image {iid} "
                                  f"(question {qid} of {questions_path})")
            paths.append(index[iid])
        answers = []
        for start in range(0, len(items), int(batch_size)):
            chunk = items[start:start + int(batch_size)]
            batch = self.bundle.make_batch([q for _, _, q in chunk], paths[start:start + len(chunk)])
            answers += self.bundle.best_answers(self.logits(batch))
        if self.bundle.manifest["data_format"] == "clevr":
            write_clevr_results(out_path, answers)
        else:
            write_vqa_results(out_path, [qid for qid, _, _ in items], answers)
        return len(answers)


def check_result_path(questions_path: str, out_path: str) -> None:
    """BundleError when the result file ``out_path`` is the question file, under any name (a link, '..')."""
    same = os.path.realpath(out_path) == os.path.realpath(questions_path)
    if not same and os.path.exists(out_path) and os.path.exists(questions_path):
        same = os.path.samefile(out_path, questions_path)
    if same:
        raise BundleError(f"--out {out_path} is the --questions file {questions_path}; writing the answers there "
                          "would replace the questions: give another --out")


def read_questions(path: str, data_format: str) -> list[tuple[Any, int, str]]:
    """[(question id, image id, text)] from a VQA or CLEVR question file (a {'questions': [...]} object or a list)."""
    if not os.path.isfile(path):
        raise BundleError(f"{path}: no such question file")
    try:
        data = load_json(path)
    except ValueError as exc:
        raise BundleError(str(exc)) from None
    questions = data.get("questions") if isinstance(data, dict) else data
    if not isinstance(questions, list):
        raise BundleError(f"{path}: expected a json object with a 'questions' list, or a list of questions")
    keys = ("question_index", "image_index") if data_format == "clevr" else ("question_id", "image_id")
    try:
        check_records(path, questions, {keys[0]: "int" if data_format == "clevr" else "id", keys[1]: "int",
                                        "question": "text"}, "question")
    except ValueError as exc:
        raise BundleError(str(exc)) from None
    return [(q[keys[0]], int(q[keys[1]]), q["question"]) for q in questions]


def feature_index(folder: str, ext: str) -> dict[int, str]:
    if not os.path.isdir(folder):
        raise BundleError(f"{folder}: no such feature folder")
    index = features.index_features([folder], ext)
    if not index:
        raise BundleError(f"{folder}: no {ext} feature files in it")
    return index


def format_answers(result: Mapping[str, Any], k: int) -> str:
    lines = [f"question: {result['question']}"]
    if result["unknown_words"]:
        lines.append(f"  (not in the vocabulary, read as UNK: {', '.join(result['unknown_words'])})")
    if result.get("words_not_read"):
        lines.append(f"  (the model reads the first {len(tokenize(result['question'])) - len(result['words_not_read'])}"
                     f" words; not read: {' '.join(result['words_not_read'])})")
    width = max(len(a) for a, _ in result["answers"])
    lines += [f"  {i + 1}. {a:<{width}}  {s:.4f}" for i, (a, s) in enumerate(result["answers"][:k])]
    return "\n".join(lines)


def result_json(results: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps([{"question": r["question"], "unknown_words": r["unknown_words"],
                        "words_not_read": r.get("words_not_read", []),
                        "answers": [{"answer": a, "score": s} for a, s in r["answers"]]} for r in results], indent=1)
