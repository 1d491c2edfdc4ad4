"""`python -m mynaemu` is the `mynaemu` command (tools/cli/__init__.py)."""
from mynaemu.tools.cli import main

if __name__ == "__main__":
    main(prog_name="mynaemu")
