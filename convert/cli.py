"""python -m convert: checkpoints between PyTorch and PaddlePaddle (weights and Adam state), and the parity check.

    python -m convert torch2paddle SRC.pkl DST.pdparams --MODEL trar --DATASET vqa [--config extra.yml] [--SET K=V]
    python -m convert paddle2torch SRC.pdparams DST.pkl --MODEL trar --DATASET vqa
    python -m convert torch2paddle mmnas.pkl DST.pdparams --MODEL mmnasnet_small --DATASET vqa --from-layout mmnas \
        [--mmnas-answers mmnas_answers.json] [--answers answer_dict.json]
    python -m convert parity --MODEL trar --DATASET demo [--ckpt FILE] [--steps N] [--report out.json]
    python -m convert torch2paddle ViT-B_16.npz vit.pdparams --MODEL vit_trar --DATASET imagenet   # Google's npz:
    python -m convert paddle2torch ViT-B_16.npz vit.pkl --MODEL vit_trar --DATASET imagenet        # either target

The conversion itself is convert/checkpoints.py, the parity check convert/parity.py; this module only parses
the command line, calls them and prints.
"""
import argparse
import json
import os
import pickle
import sys

from convert import parity
from convert.checkpoints import DIRECTIONS, LAYOUTS, config_overrides, convert_file
from convert.manifest import NoFramework
from convert.tolerances import CANCELLING_GRAD_RTOL, GRAD_RTOL
from core.cli import key_value
from core.config import DATASETS, MODELS, ConfigError, load_config
from core.data.answers import ANSWER_DICT_PATH


# ---- config flags, shared by the three commands -----------------------------------------------------------------

def add_config_arguments(parser):
    parser.add_argument('--MODEL', required=True, choices=tuple(MODELS), help='model: configs/<DATASET>/<MODEL>.yml')
    parser.add_argument('--DATASET', required=True, choices=tuple(DATASETS), help='dataset of the config')
    parser.add_argument('--config', '--CONFIG', metavar='PATH', dest='config',
                        help='extra yml merged over the model config (as run.py --CONFIG)')
    parser.add_argument('--SET', action='append', type=key_value, default=[], metavar='KEY=VALUE',
                        help='any config key, value read as YAML (repeatable)')


# ---- the summary ----------------------------------------------------------------------------------------------

def format_summary(s):
    lines = [f"{s['direction']}: {s['source']} -> {', '.join(s['outputs'])}",
             f"  tensors {s['tensors']} (transposed {s['transposed']}, renamed {s['renamed']}"
             + (f", zero biases added {s['zero_biases_added']}" if s['zero_biases_added'] else '')
             + f"), parameters {s['parameters']:,}; " + ', '.join(f"{k} {v}" for k, v in s['facts'].items()),
             f"  optimizer state: {s['optimizer']}" + (f" (Adam step {s['optimizer_step']})"
                                                       if s['optimizer_step'] is not None else ''),
             f"  epoch {s['epoch']}, lr_base {s['lr_base']}; layer types from the {s['layer_types_from']} model; "
             f"{s['seconds']:.2f} s"]
    lines += [f"  note: {n}" for n in s['notes']]
    return '\n'.join(lines)


# ---- parity -----------------------------------------------------------------------------------------------------

def add_parity_arguments(parser):
    add_config_arguments(parser)
    parser.add_argument('--ckpt', metavar='FILE', help="weights for both nets (either framework's checkpoint); "
                                                       "default: a random torch init copied to paddle")
    parser.add_argument('--paddle-ckpt', metavar='FILE', help='other weights for the paddle net (e.g. a converted '
                                                              'copy of --ckpt)')
    parser.add_argument('--steps', type=int, default=3, help='optimizer steps in the training check (default 3)')
    parser.add_argument('--batch-size', type=int, default=4, help='samples per batch (default 4)')
    parser.add_argument('--tol', type=float, default=parity.DEFAULT_TOL,
                        help=f'forward tolerance (default {parity.DEFAULT_TOL:g})')
    parser.add_argument('--grad-tol', type=float, default=None,
                        help='gradient tolerance (default: --tol; the TRAR routing logits layer gets '
                             f'{CANCELLING_GRAD_RTOL / GRAD_RTOL:g}x this, see convert/tolerances.py)')
    parser.add_argument('--dropout', action='store_true',
                        help="keep the config's DROPOUT_R in the gradient and training checks (default: 0); both "
                             "frameworks then drop the same elements (core.dropout_masks, CPU)")
    parser.add_argument('--train-tol', type=float, default=parity.DEFAULT_TRAIN_TOL,
                        help=f'training-loss tolerance (default {parity.DEFAULT_TRAIN_TOL:g})')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--report', metavar='PATH', help='write the report as json (atomically)')


def run_parity_command(args):
    try:
        cfg = load_config(args.MODEL, args.DATASET, config_overrides(args.config, args.SET))
        if args.batch_size < 1 or args.steps < 1:
            raise ValueError(f"--batch-size and --steps must be >= 1, got {args.batch_size} and {args.steps}")
        for flag, tol in (('--tol', args.tol), ('--grad-tol', args.grad_tol), ('--train-tol', args.train_tol)):
            if tol is not None and not tol > 0:
                raise ValueError(f"{flag} must be a positive tolerance, got {tol:g}")
        for flag, path in (('--ckpt', args.ckpt), ('--paddle-ckpt', args.paddle_ckpt if args.ckpt else None)):
            if path is not None and not os.path.isfile(path):
                raise FileNotFoundError(f"{flag}: {path} is a folder; expected a checkpoint file in it"
                                        if os.path.isdir(path) else f"{flag}: no such file {path}")
        report = parity.run_parity(cfg, args.ckpt, args.paddle_ckpt, args.steps, args.batch_size, args.tol,
                                   args.train_tol, args.seed, args.grad_tol, args.dropout)
    except (ConfigError, FileNotFoundError, ValueError, ImportError, pickle.UnpicklingError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    print(parity.format_report(report))
    if args.report:
        parity.write_report(args.report, report)
    return 0 if report['passed'] else 1


# ---- command line ----------------------------------------------------------------------------------------------

def build_parser():
    parser = argparse.ArgumentParser(prog='python -m convert', description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest='command', required=True, metavar='{torch2paddle,paddle2torch,parity}')
    for direction, (source, target) in DIRECTIONS.items():
        p = commands.add_parser(direction, help=f'convert a {source} checkpoint (and its Adam state) to {target}')
        p.add_argument('src', help=f'the {source} checkpoint, or a Google ViT .npz (either direction)')
        p.add_argument('dst', help='the output' + (' (<stem>.pdparams; <stem>.pdopt beside it)'
                                                    if target == 'paddle' else ' (.pkl)'))
        add_config_arguments(p)
        p.add_argument('--from-layout', choices=LAYOUTS, default='openvqa',
                       help='key names of the source: openvqa / TRAR (default) or the official mmnas code')
        p.add_argument('--mmnas-answers', metavar='JSON',
                       help='the answer list of the mmnas run (list, {answer: index} or [ans_to_ix, ix_to_ans]); '
                            'proj rows are re-indexed by answer string')
        p.add_argument('--answers', metavar='JSON',
                       help=f'the answer list to re-index to (default {os.path.relpath(ANSWER_DICT_PATH)})')
        p.add_argument('--weights-only', action='store_true', help='leave the optimizer state out')
        p.add_argument('--json', action='store_true', help='print the summary as json')
    add_parity_arguments(commands.add_parser('parity', help='compare the torch and paddle nets layer by layer'))
    return parser


def one_line(exc):
    return ' '.join(str(exc).split()) or type(exc).__name__


def main(argv=None):
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == 'parity':
        return run_parity_command(args)
    try:
        summary = convert_file(args.command, args.src, args.dst, args.MODEL, args.DATASET, args.config, args.SET,
                               args.from_layout, args.mmnas_answers, args.answers, args.weights_only)
    except (ConfigError, FileNotFoundError, ValueError, pickle.UnpicklingError, NoFramework) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(format_summary(summary))
    return 0
