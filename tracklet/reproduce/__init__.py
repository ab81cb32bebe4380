"""Turn a recorded run back into a run, and compare two runs (docs/reproduce.md, issue #21).

``plan.make_plan`` reads what a run recorded (git commit, ``files/diff.patch``, the code snapshot in
``files/code/``, packages, the command, the config, the artifact versions it used) and says what
reproducing it will do and what stands in the way; ``execute.reproduce`` does it: a working tree at
the commit with the diff and snapshot applied, an environment (the current one, a venv or uv), and
the original command run again as a new run linked to the original (``RunStart.reproduces``).
``compare.compare`` lists what differs between two runs: config, environment, packages, code (a
unified diff), inputs and summary metrics.

Layer 5, beside ``api``: it reads runs through ``tracklet.core.api.RecordedRun`` and artifacts
through ``tracklet.artifacts``; the command line resolves run references and hands runs in.
"""
