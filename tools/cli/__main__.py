"""`python -m mynaemu.tools.cli` runs the `mynaemu` command (the package became a folder in the
architecture step; `python -m mynaemu` is tools/cli/entry/__main__.py)."""
from mynaemu.tools.cli import main

if __name__ == "__main__":
    main()
