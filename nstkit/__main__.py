"""``python -m nstkit``: the command line."""

from nstkit.cli import main

main()
