"""`python -m bnstat` runs the command-line interface."""

from bnstat.cli import main

main()
