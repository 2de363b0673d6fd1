"""``python -m automel`` is the ``automel`` command."""

from automel.cli import main

main()
