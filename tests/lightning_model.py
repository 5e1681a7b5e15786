"""A tiny Lightning model and data for the integration tests (CPU, seconds per epoch).

Imported by tests/test_integration_lightning.py and by the DDP script it launches.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

BATCHES_PER_EPOCH = 8


class TinyModel(pl.LightningModule):
    """Linear regression; logs ``train_loss`` per step and ``val_loss`` per epoch."""

    def __init__(self, optim: dict[str, Any] | None = None, width: int = 4,
                 fail_at_step: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(width, 1)
        self.lr = float((optim or {}).get("lr", 0.05))
        self.fail_at_step = fail_at_step

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.fail_at_step is not None and self.global_step == self.fail_at_step:
            raise RuntimeError("boom")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y), on_epoch=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("test_loss", torch.nn.functional.mse_loss(self.layer(x), y), on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def loaders(batch: int = 8, width: int = 4) -> tuple[DataLoader[Any], DataLoader[Any]]:
    """Train and validation loaders over a fixed synthetic regression set."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch * BATCHES_PER_EPOCH, width, generator=gen)
    y = x.sum(dim=1, keepdim=True)
    data = TensorDataset(x, y)
    return (DataLoader(data, batch_size=batch, num_workers=0),
            DataLoader(data, batch_size=batch * 2, num_workers=0))
