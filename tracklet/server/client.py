"""Moved to ``tracklet.client.sync`` (the client package); these names stay importable from here."""

from tracklet.client.sync import LocalDamage, SyncClient, SyncError, SyncResult, local_damage, local_runs

__all__ = ["LocalDamage", "SyncClient", "SyncError", "SyncResult", "local_damage", "local_runs"]
