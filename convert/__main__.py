"""python -m convert {torch2paddle,paddle2torch,parity} ...: see convert/cli.py."""
import sys

from convert.cli import main

if __name__ == "__main__":
    sys.exit(main())
