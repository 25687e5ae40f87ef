"""``python -m gateway`` is the ``arouter`` command."""

from gateway.cli import main

raise SystemExit(main())
