"""Checkpoints of real trainers recorded as artifacts: a tiny Lightning model with
ModelCheckpoint writing into a temporary "shared" directory, and a Hugging Face
Trainer saving ``checkpoint-<step>`` folders; each recorded at the step it was saved."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

pytest.importorskip("lightning",
                    reason="needs the lightning extra (pip install 'tracker[lightning]')")

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint

import tracker_client
from tests.client_support import fast
from tests.lightning_model import BATCHES_PER_EPOCH, TinyModel, loaders
from tests.support import ServerThread
from tracker_client.integrations.lightning import TrackerLogger

pytestmark = pytest.mark.timeout(240)
EPOCHS = 2
EVERY = 3


def test_lightning_checkpoints_are_recorded_with_their_steps(server: ServerThread,
                                                             tmp_path: Path) -> None:
    shared = tmp_path / "shared" / "ckpt"
    logger = TrackerLogger(experiment="lightning-ckpt", server=server.address,
                           hash_checkpoints=True, options=fast(tmp_path / "spool"))
    checkpoints = ModelCheckpoint(dirpath=shared, filename="{epoch}-{step}",
                                  every_n_train_steps=EVERY, save_top_k=-1,
                                  monitor="train_loss", save_last=True)
    trainer = pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=logger,
                         log_every_n_steps=1, callbacks=[checkpoints],
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=str(tmp_path))
    train, val = loaders()
    trainer.fit(TinyModel(), train, val)

    saved = sorted(p for p in shared.iterdir() if p.name != "last.ckpt")
    steps = [int(re.search(r"step=(\d+)", p.name)[1]) for p in saved]  # type: ignore[index]
    total = EPOCHS * BATCHES_PER_EPOCH
    assert sorted(steps) == list(range(EVERY, total + 1, EVERY))
    with tracker_client.Api(server=server.address) as api:
        (run,) = list(api.runs("lightning-ckpt"))
        found = run.artifacts(kind="checkpoint")
        by_uri = {a.uri: a for a in found}
        for path, step in zip(saved, steps, strict=True):
            a = by_uri[str(path)]
            assert a.step == step
            assert a.size_bytes == path.stat().st_size and len(a.sha256) == 64
            assert a.metadata["source"] == "lightning"
            assert a.metadata["monitor"] == "train_loss" and "score" in a.metadata
        # last.ckpt, rewritten at every save: one record without a step, last written
        # at the final step (so "nearest the best step" never picks it).
        (last,) = [a for a in found if a.uri == str(shared / "last.ckpt")]
        assert last.step is None and last.metadata["last"] == "true"
        assert last.metadata["step"] == str(max(steps))
        assert last.size_bytes == (shared / "last.ckpt").stat().st_size
        assert set(by_uri) == {str(p) for p in shared.iterdir()}
        assert run.tags["checkpoint.last"] == str(shared / "last.ckpt")


def test_lightning_checkpoint_recording_can_be_turned_off(server: ServerThread,
                                                          tmp_path: Path) -> None:
    logger = TrackerLogger(experiment="lightning-nockpt", server=server.address,
                           log_checkpoints=False, options=fast(tmp_path / "spool"))
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=logger,
                         callbacks=[ModelCheckpoint(dirpath=tmp_path / "c")],
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=str(tmp_path))
    train, val = loaders()
    trainer.fit(TinyModel(), train, val)
    assert list((tmp_path / "c").iterdir())
    with tracker_client.Api(server=server.address) as api:
        (run,) = list(api.runs("lightning-nockpt"))
        assert run.artifacts() == [] and "checkpoint.best" in run.tags  # tags stay


def test_transformers_on_save_records_each_checkpoint_folder(server: ServerThread,
                                                             tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="needs the transformers extra")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import Trainer

    from tests.test_integration_transformers import (
        SAMPLES,
        STEPS,
        Synthetic,
        arguments,
        tiny_bert,
    )
    from tracker_client.integrations.transformers import TrackerCallback

    callback = TrackerCallback(experiment="hf-ckpt", server=server.address,
                               options=fast(tmp_path / "spool"))
    args = arguments(tmp_path, save_strategy="steps", save_steps=4)
    Trainer(model=tiny_bert(), args=args, train_dataset=Synthetic(SAMPLES),
            eval_dataset=Synthetic(16), callbacks=[callback]).train()
    out = Path(args.output_dir)
    folders = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert [int(p.name.split("-")[1]) for p in folders] == list(range(4, STEPS + 1, 4))
    with tracker_client.Api(server=server.address) as api:
        (run,) = list(api.runs("hf-ckpt"))
        found = run.artifacts(kind="checkpoint")
        assert [(a.uri, a.step) for a in found] == [
            (str(p.resolve()), int(p.name.split("-")[1])) for p in folders]
        for a, folder in zip(found, folders, strict=True):
            assert a.size_bytes == sum(f.stat().st_size for f in folder.rglob("*")
                                       if f.is_file())
            assert a.metadata["source"] == "transformers"
