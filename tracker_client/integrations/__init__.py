"""Trainer integrations, each behind an optional extra so the core install stays small.

- :mod:`tracker_client.integrations.lightning` — ``TrackerLogger`` for Lightning
  (``pip install 'tracker[lightning]'``; :mod:`~tracker_client.integrations.pytorch_lightning`
  for the standalone ``pytorch_lightning`` package).
- :mod:`tracker_client.integrations.transformers` — ``TrackerCallback`` for the Hugging
  Face ``Trainer`` (``tracker[transformers]``).
- :mod:`tracker_client.integrations.tensorboard` — ``SummaryWriter``, a drop-in for
  ``torch.utils.tensorboard.SummaryWriter`` scalars (``tracker[tensorboard]``).

Importing a module whose framework is missing raises ``ImportError`` naming the extra.
"""
