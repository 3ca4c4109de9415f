"""``python -m hopline``: the same as the ``hopline`` command."""

from hopline.cli import main

main()
