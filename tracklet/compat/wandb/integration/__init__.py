"""``wandb.integration``: framework callbacks (``wandb.integration.keras``)."""
