"""`python -m orthovision_cli`: the `orthovision` command, without the console script."""

from .cli import main

if __name__ == "__main__":
    main()
