"""``python -m meta_sandbox``: run the Meta sandbox in the foreground (options: ``--help``)."""

from .cli import main

main()
