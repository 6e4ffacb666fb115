"""An app that imports a package this environment lacks (as a Space's app.py imports transformers)."""

import surge_no_such_dependency  # noqa: F401

demo = None
