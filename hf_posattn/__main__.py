"""`python -m hf_posattn`: the `posattn` command line."""

from .cli import main

raise SystemExit(main())
