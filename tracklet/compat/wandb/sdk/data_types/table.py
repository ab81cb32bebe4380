"""``wandb.sdk.data_types.table``: ``Table``, ``JoinedTable``, ``PartitionedTable``, as W&B's module has them."""

from tracklet.compat.wandb.data_types import Table, JoinedTable, PartitionedTable

__all__ = ["Table", "JoinedTable", "PartitionedTable"]
