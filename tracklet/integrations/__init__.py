"""Framework integrations. Each module imports its framework, so import only the one you use:

- ``tracklet.integrations.lightning``: ``TrackletLogger``, ``TrackletFabricLogger``
- ``tracklet.integrations.huggingface``: ``TrackletCallback`` for ``transformers.Trainer``
- ``tracklet.integrations.keras``: ``TrackletCallback`` for ``keras.Model.fit``
- ``tracklet.integrations.jax``: ``track_step``, ``watch_compilation``
- ``tracklet.integrations.autolog``: ``autolog()`` attaches all of the above with no code changes
  (also ``tracklet.autolog()`` and ``tracklet run -- COMMAND``)

Contract shared by all: the integration logs into the run passed as ``run=``, else the active
``tracklet.run``, else one it starts (and only then finishes); a failure inside tracklet becomes
one ``TrackletWarning`` and training goes on; only the main process of a distributed job logs.
See docs/integrations/.
"""
