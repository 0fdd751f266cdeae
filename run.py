"""TwinVQA command line: the openvqa flags plus --backend=paddle|torch.

    python run.py --RUN=train --MODEL=trar --DATASET=demo --backend=paddle
    python run.py --RUN=val --MODEL=trar --DATASET=vqa --CKPT_V=<version> --CKPT_E=13 --backend=torch
"""
import sys

from core.cli import overrides_from_args, parse_args
from core.config import ConfigError, load_config


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = load_config(args.MODEL, args.DATASET, overrides=overrides_from_args(args), run_mode=args.RUN_MODE)
    except ConfigError as exc:
        sys.exit(f"config error: {exc}")

    from core.data import GeneratedDataError, ensure_generated
    try:
        ensure_generated(cfg)   # the demo datasets: generated into a missing or empty DATA_ROOT
    except GeneratedDataError as exc:
        sys.exit(f"error: {exc}")

    from backends import BackendUnavailable, get_backend
    try:
        be = get_backend(cfg.BACKEND)
    except BackendUnavailable as exc:
        sys.exit(f"error: {exc}")

    if cfg.RUN_MODE == "export":
        from deploy.export import export_from_config
        return export_from_config(cfg, be)

    from core.engine import run
    try:
        return run(cfg, be)
    except (FileNotFoundError, ValueError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
