"""python -m convert: checkpoints between PyTorch and PaddlePaddle (weights and Adam state), and the parity check.

    python -m convert torch2paddle SRC.pkl DST.pdparams --MODEL trar --DATASET vqa [--config extra.yml] [--SET K=V]
    python -m convert paddle2torch SRC.pdparams DST.pkl --MODEL trar --DATASET vqa
    python -m convert torch2paddle mmnas.pkl DST.pdparams --MODEL mmnasnet_small --DATASET vqa --from-layout mmnas \
        [--mmnas-answers mmnas_answers.json] [--answers answer_dict.json]
    python -m convert parity --MODEL trar --DATASET demo [--ckpt FILE] [--steps N] [--report out.json]
    python -m convert parity --MODEL trar --DATASET demo [--ckpt FILE] --dump torch.npz | --compare torch.npz
    python -m convert torch2paddle ViT-B_16.npz vit.pdparams --MODEL vit_trar --DATASET imagenet   # Google's npz:
    python -m convert paddle2torch ViT-B_16.npz vit.pkl --MODEL vit_trar --DATASET imagenet        # either target

The conversion itself is convert/checkpoints.py, the parity check convert/parity.py; this module only parses
the command line, calls them and prints.
"""
import argparse
import json
import os
import sys

from convert import parity
from convert.checkpoints import DIRECTIONS, LAYOUTS, config_overrides, convert_file
from convert.manifest import NoFramework
from core.cli import key_value
from core.config import DATASETS, MODELS, load_config
from core.data.answers import ANSWER_DICT_PATH
from core.errors import USER_ERRORS, one_line
from core.logs import configure as configure_logging

# ---- config flags, shared by the three commands -----------------------------------------------------------------

def add_config_arguments(parser):
    parser.add_argument("--MODEL", required=True, choices=tuple(MODELS), help="model: configs/<DATASET>/<MODEL>.yml")
    parser.add_argument("--DATASET", required=True, choices=tuple(DATASETS), help="dataset of the config")
    parser.add_argument("--config", "--CONFIG", metavar="PATH", dest="config",
                        help="extra yml merged over the model config (as run.py --CONFIG)")
    parser.add_argument("--SET", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                        help="any config key, value read as YAML (repeatable)")


# ---- the summary ----------------------------------------------------------------------------------------------

def format_summary(s):
    lines = [f"{s['direction']}: {s['source']} -> {', '.join(s['outputs'])}",
             f"  tensors {s['tensors']} (transposed {s['transposed']}, renamed {s['renamed']}"
             + (f", zero biases added {s['zero_biases_added']}" if s["zero_biases_added"] else "")
             + f"), parameters {s['parameters']:,}; " + ", ".join(f"{k} {v}" for k, v in s["facts"].items()),
             f"  optimizer state: {s['optimizer']}" + (f" (Adam step {s['optimizer_step']})"
                                                       if s["optimizer_step"] is not None else "")
             + (f"; .pdopt layout: {s['pdopt_layout']}" if s.get("pdopt_layout") else ""),
             f"  epoch {s['epoch']}, lr_base {s['lr_base']}; layer types from the {s['layer_types_from']} model; "
             f"{s['seconds']:.2f} s"]
    lines += [f"  note: {n}" for n in s["notes"]]
    return "\n".join(lines)


# ---- parity -----------------------------------------------------------------------------------------------------

PARITY_EPILOG = """verdicts and exit status:
  weights/forward  the two nets' weights and every module's eval output: what a converted checkpoint needs
  gradients        every parameter's gradient after one backward, element by element within
                   grad-tol x (largest gradient of the net + |torch gradient|)
  training         the losses of --steps optimizer steps and the logits after them
  The last line names each verdict. Exit status: 0 all passed; 1 weights/forward failed; 2 only gradients or
  training failed; 3 bad input (one-line error).

one framework per machine:
  --dump torch.npz on a machine with one framework writes its half (weights, module outputs, gradients, inputs,
  losses; a plain npz); --compare torch.npz on a machine with the other runs the same check against it, with the
  dump's inputs, steps, batch size, seed and dropout. --ckpt is each machine's own file (default on --compare: the
  dump's weights). A dump from another config is refused."""


def add_parity_arguments(parser):
    add_config_arguments(parser)
    parser.add_argument("--ckpt", metavar="FILE", help="weights for both nets (either framework's checkpoint); "
                                                       "default: a random torch init copied to paddle")
    parser.add_argument("--paddle-ckpt", metavar="FILE", help="other weights for the paddle net (e.g. a converted "
                                                              "copy of --ckpt)")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps in the training check (default 3)")
    parser.add_argument("--batch-size", type=int, default=4, help="samples per batch (default 4)")
    parser.add_argument("--tol", type=float, default=parity.DEFAULT_TOL,
                        help=f"weights and forward tolerance (default {parity.DEFAULT_TOL:g})")
    parser.add_argument("--grad-tol", type=float, default=parity.DEFAULT_GRAD_TOL,
                        help="gradient rtol: every element within rtol * (largest gradient of the net + |torch "
                             f"gradient|) (default {parity.DEFAULT_GRAD_TOL:g}, see convert/tolerances.py)")
    parser.add_argument("--dropout", action="store_true",
                        help="keep the config's DROPOUT_R in the gradient and training checks (default: 0); both "
                             "frameworks then drop the same elements (core.dropout_masks, CPU)")
    parser.add_argument("--train-tol", type=float, default=parity.DEFAULT_TRAIN_TOL,
                        help=f"training-loss tolerance (default {parity.DEFAULT_TRAIN_TOL:g})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", metavar="PATH", help="write the report as json (atomically)")
    one_side = parser.add_mutually_exclusive_group()
    one_side.add_argument("--dump", metavar="NPZ", help="run one framework only and write its half of the check "
                                                        "there (atomically)")
    one_side.add_argument("--compare", metavar="NPZ", help="run the other framework against a --dump file")
    parser.add_argument("--framework", choices=("torch", "paddle"),
                        help="with --dump/--compare: the framework to run (default: --dump the installed one, torch "
                             "if both are; --compare the one the dump is not from)")


def run_parity_command(args):
    """Check, print the report (and write it with --report); returns the exit code (parity.EXIT_*). A bad flag,
    file or config raises (main() turns it into one line)."""
    cfg = load_config(args.MODEL, args.DATASET, config_overrides(args.config, args.SET))
    if args.batch_size < 1 or args.steps < 1:
        raise ValueError(f"--batch-size and --steps must be >= 1, got {args.batch_size} and {args.steps}")
    for flag, tol in (("--tol", args.tol), ("--grad-tol", args.grad_tol), ("--train-tol", args.train_tol)):
        if tol is not None and not tol > 0:
            raise ValueError(f"{flag} must be a positive tolerance, got {tol:g}")
    for flag, path in (("--ckpt", args.ckpt), ("--paddle-ckpt", args.paddle_ckpt if args.ckpt else None)):
        if path is not None and not os.path.isfile(path):
            raise FileNotFoundError(f"{flag}: {path} is a folder; expected a checkpoint file in it"
                                    if os.path.isdir(path) else f"{flag}: no such file {path}")
    if args.framework and not (args.dump or args.compare):
        raise ValueError("--framework needs --dump or --compare (without them both frameworks run)")
    report = parity.run_parity(cfg, args.ckpt, args.paddle_ckpt, args.steps, args.batch_size, args.tol,
                               args.train_tol, args.seed, args.grad_tol, args.dropout, args.dump, args.compare,
                               args.framework)
    print(parity.format_report(report))
    if args.report:
        parity.write_report(args.report, report)
    return 0 if args.dump else report["exit_status"]


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with the exit status of a usage error chosen per command (parity's is 3, its 2 meaning
    "gradients or training failed")."""

    def __init__(self, *args, usage_error_status=2, **kwargs):
        super().__init__(*args, **kwargs)
        self.usage_error_status = usage_error_status

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(self.usage_error_status, f"{self.prog}: error: {message}\n")


# ---- command line ----------------------------------------------------------------------------------------------

def build_parser():
    parser = ArgumentParser(prog="python -m convert", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="{torch2paddle,paddle2torch,parity}",
                                     parser_class=ArgumentParser)
    for direction, (source, target) in DIRECTIONS.items():
        p = commands.add_parser(direction, help=f"convert a {source} checkpoint (and its Adam state) to {target}")
        p.add_argument("src", help=f"the {source} checkpoint, or a Google ViT .npz (either direction)")
        p.add_argument("dst", help="the output" + (" (<stem>.pdparams; <stem>.pdopt beside it)"
                                                    if target == "paddle" else " (.pkl)"))
        add_config_arguments(p)
        p.add_argument("--from-layout", choices=LAYOUTS, default="openvqa",
                       help="key names of the source: openvqa / TRAR (default) or the official mmnas code")
        p.add_argument("--mmnas-answers", metavar="JSON",
                       help="the answer list of the mmnas run (list, {answer: index} or [ans_to_ix, ix_to_ans]); "
                            "proj rows are re-indexed by answer string")
        p.add_argument("--answers", metavar="JSON",
                       help=f"the answer list to re-index to (default {os.path.relpath(ANSWER_DICT_PATH)})")
        p.add_argument("--weights-only", action="store_true", help="leave the optimizer state out")
        p.add_argument("--json", action="store_true", help="print the summary as json")
    add_parity_arguments(commands.add_parser("parity", help="compare the torch and paddle nets layer by layer",
                                             description=parity.__doc__.splitlines()[0], epilog=PARITY_EPILOG,
                                             formatter_class=argparse.RawDescriptionHelpFormatter,
                                             usage_error_status=parity.EXIT_BAD_INPUT))
    return parser


def main(argv=None):
    """The exit code: 0 done (parity: passed); parity 1 weights/forward failed, 2 gradients or training only, 3 bad
    input; conversion 2 an error. Errors are printed here as one line."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if argv[:1] == ["parity"]:        # its unknown flags are reported by this parser, not the subcommand's
        parser.usage_error_status = parity.EXIT_BAD_INPUT
    args = parser.parse_args(argv)
    configure_logging()
    try:
        if args.command == "parity":
            return run_parity_command(args)
        summary = convert_file(args.command, args.src, args.dst, args.MODEL, args.DATASET, args.config, args.SET,
                               args.from_layout, args.mmnas_answers, args.answers, args.weights_only)
    except (*USER_ERRORS, NoFramework, ImportError) as exc:   # a bad input or a failing disk: one line naming the file
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return parity.EXIT_BAD_INPUT if args.command == "parity" else 2
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(format_summary(summary))
    return 0
