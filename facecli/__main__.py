"""``python -m facecli`` runs the command line."""

from facecli.cli import main

main()
