"""``python -m harness``: the CLI without the console script (an offline node that has the
repository on PYTHONPATH and its dependencies from a wheel folder, not an installed package)."""

from harness.cli.app import main

main()
