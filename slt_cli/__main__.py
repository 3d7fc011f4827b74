"""``python -m slt_cli`` runs the same application as the ``slt`` script."""

from slt_cli.cli import main

main()
