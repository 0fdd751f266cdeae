"""python -m deploy export | predict | onnx | bench  (see deploy/__init__.py and docs/aistudio.md)."""
import argparse
import json
import sys

from backends import BackendUnavailable
from core.cli import overrides_from_args, parse_args
from core.config import load_config
from core.errors import USER_ERRORS, error_line
from core.logs import configure as configure_logging

USAGE = """python -m deploy COMMAND ...

  export   checkpoint -> Paddle inference folder (inference.json + .pdiparams, vocab, answers, config, manifest)
           python -m deploy export --MODEL trar --DATASET demo --CKPT_PATH FILE [--DATA_ROOT DIR] [--out DIR]
           (every run.py flag works: --CKPT_V/--CKPT_E, --SET KEY=VALUE, --CONFIG, ...)
  predict  answer questions with an exported folder (Paddle Inference; onnxruntime for an ONNX folder)
           python -m deploy predict --model DIR --question "what color is the circle?" --features FILE.npy [--topk 5]
           python -m deploy predict --model DIR --questions Q.json --features-dir DIR --out result.json
           an image classifier's folder: the top-k classes of image files
           python -m deploy predict --model DIR --image x.jpg [--image y.png] [--topk 5]
  onnx     checkpoint -> ONNX inference folder through torch.onnx (torch backend), checked with onnxruntime
           python -m deploy onnx --MODEL trar --DATASET demo --CKPT_PATH FILE [--out DIR] [--exporter dynamo|legacy]
           python -m deploy onnx --from-paddle EXPORT_DIR [--out DIR]   (paddle2onnx; see deploy/onnx.py)
  bench    dynamic graph vs Paddle Inference on CPU, random weights
           python -m deploy bench --MODEL trar --DATASET vqa [--batch-sizes 1 64] [--threads N]
"""


def _config(argv, run_mode):
    """Parse the run.py flags in ``argv`` (with --RUN set here) into a Config; exits on a bad flag, raises
    ConfigError on a bad value."""
    ns = parse_args(["--RUN", run_mode] + list(argv))
    return load_config(ns.MODEL, ns.DATASET, overrides=overrides_from_args(ns), run_mode=run_mode)


RUN_FLAGS = """
run.py flags (`python run.py --help` lists them all; --RUN is this command's):
  --MODEL, --DATASET, --backend, --CKPT_PATH or --CKPT_V/--CKPT_E, --DATA_ROOT, --CONFIG, --SET KEY=VALUE, ...
"""


def _own_flags(prog, description, argv, add_arguments):
    """This command's own flags, and the rest for run.py's parser; -h / --help prints both kinds and exits."""
    own = argparse.ArgumentParser(prog=prog, description=description, add_help=False,
                                  usage=f"{prog} [own flags] run.py flags")
    add_arguments(own)
    args, rest = own.parse_known_args(argv)
    if "-h" in rest or "--help" in rest:
        print(own.format_help().replace("options:", "own flags:", 1) + RUN_FLAGS, end="")
        own.exit()
    return args, rest


def _ensure_generated(cfg):
    from core.data import ensure_generated
    ensure_generated(cfg)


def cmd_export(argv):
    def flags(own):
        own.add_argument("--out", default=None, help="output folder (default <RESULTS_ROOT>/export/"
                                                     "<CKPT_VERSION>_epoch<CKPT_EPOCH>, or the checkpoint file's name)")
    args, rest = _own_flags("python -m deploy export", "Checkpoint -> Paddle inference folder.", argv, flags)
    cfg = _config(rest, "export")
    _ensure_generated(cfg)
    from backends import get_backend
    be = get_backend(cfg.BACKEND)
    from deploy.export import export_from_config
    export_from_config(cfg, be, out_dir=args.out)


def cmd_onnx(argv):
    def flags(own):
        own.add_argument("--out", default=None, help="output folder (default: the export's, + '_torch_onnx'; "
                                                     "--from-paddle DIR: DIR_onnx)")
        own.add_argument("--exporter", choices=("dynamo", "legacy"), default="dynamo",
                         help="torch.onnx exporter: dynamo (torch.export, the default) or legacy (TorchScript, "
                              "faster)")
        own.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
        own.add_argument("--from-paddle", metavar="DIR", default=None,
                         help="convert a Paddle export folder with paddle2onnx instead (see deploy/onnx.py)")
    args, rest = _own_flags("python -m deploy onnx", "Checkpoint -> ONNX inference folder through torch.onnx, "
                            "checked with onnxruntime.", argv, flags)
    if args.from_paddle:
        if rest:
            raise ValueError(f"--from-paddle takes only --out and --opset, not {' '.join(rest)}")
        from deploy.onnx import onnx_from_paddle_cli
        onnx_from_paddle_cli(args.from_paddle, out_dir=args.out, opset=args.opset)
        return
    cfg = _config(rest, "export")
    _ensure_generated(cfg)
    from deploy.onnx import onnx_from_config
    onnx_from_config(cfg, out_dir=args.out, exporter=args.exporter, opset=args.opset)


def cmd_predict(argv):
    p = argparse.ArgumentParser(prog="python -m deploy predict",
                                description="Answer questions with an exported folder.")
    p.add_argument("--model", required=True, metavar="DIR", help="folder written by python -m deploy export")
    p.add_argument("--question", action="append", help="a question (repeatable, one --features each)")
    p.add_argument("--features", action="append", metavar="FILE", help="its image feature file (.npy grid, .npz)")
    p.add_argument("--topk", type=int, default=5, help="answers to print per question (default 5)")
    p.add_argument("--json", action="store_true", help="print the answers as json")
    p.add_argument("--questions", metavar="FILE", help="batch mode: a VQA (or CLEVR) question json")
    p.add_argument("--features-dir", metavar="DIR", help="batch mode: the folder of the images' feature files")
    p.add_argument("--out", metavar="FILE", help="batch mode: the result file (EvalAI json; CLEVR: answer lines)")
    p.add_argument("--image", action="append", metavar="FILE",
                   help="an image classifier's folder: an image file to classify (repeatable)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--gpu", nargs="?", const=0, type=int, default=None, metavar="ID",
                   help="predict on this GPU (needs paddlepaddle-gpu); default CPU")
    p.add_argument("--threads", type=int, default=None, help="CPU math threads (default: cores, at most 8)")
    p.add_argument("--no-mkldnn", action="store_true", help="CPU: turn oneDNN (MKLDNN) kernels off")
    p.add_argument("--no-ir-optim", action="store_true", help="turn Paddle Inference's graph passes off")
    p.add_argument("--memory-optim", action="store_true",
                   help="turn Paddle Inference's memory reuse on (fails with Paddle 3.3.1 PIR programs)")
    a = p.parse_args(argv)
    if a.topk < 1:
        p.error(f"--topk must be >= 1, got {a.topk}")
    if a.image:
        _predict_images(a)
        return
    batch_mode = a.questions is not None
    if batch_mode and (a.question or a.features):
        p.error("give either --question/--features or --questions/--features-dir/--out")
    if batch_mode and not (a.features_dir and a.out):
        p.error("batch mode needs --questions, --features-dir and --out")
    if not batch_mode and (not a.question or not a.features or len(a.question) != len(a.features)):
        p.error("give --question TEXT and --features FILE (one --features per --question)")

    from deploy.predict import Predictor, check_result_path, format_answers, result_json
    if batch_mode:
        check_result_path(a.questions, a.out)        # before the model is loaded
    predictor = Predictor(a.model, device="cpu" if a.gpu is None else "gpu", gpu_id=a.gpu or 0,
                          threads=a.threads, mkldnn=not a.no_mkldnn, ir_optim=not a.no_ir_optim,
                          memory_optim=a.memory_optim)
    if batch_mode:
        n = predictor.answer_file(a.questions, a.features_dir, a.out, batch_size=a.batch_size)
        print(f"wrote {n} answers to {a.out}")
        return
    results = predictor.answer(a.question, a.features, k=a.topk)
    if a.json:
        print(result_json(results))
    else:
        print("\n".join(format_answers(r, a.topk) for r in results))


def _predict_images(a):
    """predict --image: the top-k classes of each image with a classifier's folder."""
    if a.question or a.features or a.questions:
        sys.exit("error: --image classifies images; --question/--features/--questions are for VQA folders")
    from deploy.bundle import BundleError
    from deploy.classifier import ImagePredictor, format_classes
    try:
        predictor = ImagePredictor(a.model, device="cpu" if a.gpu is None else "gpu", gpu_id=a.gpu or 0,
                                   threads=a.threads, mkldnn=not a.no_mkldnn, ir_optim=not a.no_ir_optim,
                                   memory_optim=a.memory_optim)
        results = predictor.classify(a.image, k=a.topk)
    except (BundleError, FileNotFoundError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    if a.json:
        print(json.dumps(results, indent=1))
    else:
        print("\n".join(format_classes(r, a.topk) for r in results))


def cmd_bench(argv):
    def flags(own):
        own.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64], help="default: 1 64")
        own.add_argument("--threads", type=int, default=None, help="CPU math threads (default: cores, at most 8)")
        own.add_argument("--repeats", type=int, default=10, help="timed batches per setting (default 10)")
        own.add_argument("--warmup", type=int, default=2, help="untimed batches first (default 2)")
        own.add_argument("--json-out", default=None, help="also write the rows to this json file")
    args, rest = _own_flags("python -m deploy bench", "Dynamic graph vs Paddle Inference on the CPU, random "
                            "weights.", argv, flags)
    cfg = _config(rest, "export")
    from deploy.timing import bench, speedups
    rows = bench(cfg, batch_sizes=args.batch_sizes, threads=args.threads, warmup=args.warmup, repeats=args.repeats)
    for batch_size, table in speedups(rows).items():
        best = max(table, key=table.get)
        print(f"batch {batch_size}: best {best}: {table[best]:.2f}x the dynamic graph")
    if args.json_out:
        from core.checkpoints import atomic_write
        with atomic_write(args.json_out, "w") as f:
            json.dump(rows, f, indent=1)


COMMANDS = {"export": cmd_export, "predict": cmd_predict, "onnx": cmd_onnx, "bench": cmd_bench}


def main(argv=None):
    """Run one command; its errors (a config, checkpoint, folder or package problem) end the program here, with one
    line."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(USAGE, end="")
        if argv and argv[0] not in ("-h", "--help"):
            sys.exit(f"error: unknown command {argv[0]!r}; expected one of {', '.join(COMMANDS)}")
        return
    configure_logging()
    try:
        COMMANDS[argv[0]](argv[1:])
    except (*USER_ERRORS, BackendUnavailable) as exc:   # a bad input or a failing disk: one line, exit status 1
        sys.exit(error_line(exc))


if __name__ == "__main__":
    main()
