"""``python -m tmws.pattern.client``: the ``tmws-pattern`` command line."""

from tmws.pattern.client._cli import main

raise SystemExit(main())
