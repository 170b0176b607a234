"""`python -m mlmrun` runs the CLI."""

from mlmrun.cli import main

raise SystemExit(main())
