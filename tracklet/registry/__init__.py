"""The model registry (issue #18): registries hold collections, whose versions are links to
artifact versions (no bytes copied), with aliases whose every move is kept (who, when, from, to,
why), protected aliases moved only through approved promotion requests, and model cards.

    run.link_model("model.pt", registered_model_name="mnist-cnn", aliases=["staging"])
    tracklet.Api().artifact("model/mnist-cnn:staging")        # or "models:/mnist-cnn@staging"
    tracklet.Api().alias_history("model/mnist-cnn", alias="production")

Modules: ``refs`` (names and references), ``tables`` (the SQL schema), ``sql`` (``ModelRegistry``:
the rules, over a local SQLite file or a server's database), ``remote`` (a server's registry over
HTTP), ``service`` (linking and resolving for runs and ``tracklet.Api``), ``cards`` (model cards).
Layer 4, beside ``tracklet.media`` (docs/architecture.md); see docs/registry.md.
"""
