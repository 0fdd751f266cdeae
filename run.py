"""TwinVQA command line: the openvqa flags plus --backend=paddle|torch.

    python run.py --RUN=train --MODEL=trar --DATASET=demo --backend=paddle
    python run.py --RUN=val --MODEL=trar --DATASET=vqa --CKPT_V=<version> --CKPT_E=13 --backend=torch
"""
import sys

from backends import BackendUnavailable
from core.cli import overrides_from_args, parse_args
from core.config import load_config
from core.errors import USER_ERRORS, error_line
from core.logs import configure as configure_logging


def main(argv=None):
    """The run's summary dict; a config, data, backend or checkpoint error ends the program with one line."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return _run(args)
    except (*USER_ERRORS, BackendUnavailable) as exc:   # a bad input or a failing disk: one line, exit status 1
        sys.exit(error_line(exc))


def _run(args):
    cfg = load_config(args.MODEL, args.DATASET, overrides=overrides_from_args(args), run_mode=args.RUN_MODE)
    configure_logging()   # VERBOSE: the engine's per-step progress bar only

    from core.distributed import check_launch, one_process_at_a_time, world
    check_launch(cfg, world())   # --GPU=0,1 without a launcher: the launch commands, before any framework loads

    from core.data import ensure_generated
    with one_process_at_a_time(cfg.DATA_ROOT, world()):   # a launcher's processes: one generates, the others read
        ensure_generated(cfg)   # the demo datasets: generated into a missing or empty DATA_ROOT

    from backends import get_backend
    be = get_backend(cfg.BACKEND)

    if cfg.RUN_MODE == "export":
        from deploy.export import export_from_config
        return export_from_config(cfg, be)

    from core.engine import run
    return run(cfg, be)


if __name__ == "__main__":
    main()
