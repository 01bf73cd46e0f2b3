"""Face tracks and identities.

- :mod:`facecli.identity.tracking`: ``FaceTracker`` (per video, per frame batch) -> track ids.
- :mod:`facecli.identity.tracks`: ``TrackAccumulator`` + ``track_identities`` -> ``Person_<k>`` per track.
- :mod:`facecli.identity.cluster`: ``cluster_items`` (linkage / leader) and the default thresholds.
- :mod:`facecli.identity.relabel`: ``relabel_dataset`` behind ``facecli cluster-identities``.
"""
