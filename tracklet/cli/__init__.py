"""The ``tracklet`` command line (``tracklet.cli.main:main``): list, inspect and export recorded runs,
and record a demo run. ``python -m tracklet`` runs it too."""
