"""TrackerLogger with a real Lightning Trainer: one process, a failing fit, and DDP on two
CPU processes (gloo), read back through the read API."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("lightning",
                    reason="needs the lightning extra (pip install 'tracker[lightning]')")

import lightning.pytorch as pl

import tracker_client
from tests.client_support import fast
from tests.lightning_model import BATCHES_PER_EPOCH, TinyModel, loaders
from tests.support import ServerThread
from tracker_client.integrations.lightning import TrackerLogger

pytestmark = pytest.mark.timeout(240)
ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 2


def trainer(logger: TrackerLogger, tmp_path: Path) -> pl.Trainer:
    return pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=logger,
                      log_every_n_steps=1, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=str(tmp_path))


def test_fit_logs_params_train_and_validation_metrics(server: ServerThread, tmp_path: Path
                                                      ) -> None:
    logger = TrackerLogger(experiment="lightning", name="tiny", server=server.address,
                           options=fast(tmp_path / "spool"))
    model = TinyModel(optim={"lr": 1e-3, "momentum": 0.0}, width=4)
    train, val = loaders()
    fitter = trainer(logger, tmp_path)
    fitter.fit(model, train, val)
    fitter.test(model, val)  # the same logger again, after finalize()

    with tracker_client.Api(server=server.address) as api:
        (run,) = list(api.runs("lightning"))
        assert run.run_id == logger.version and logger.name == "lightning"
        assert run.metrics["test_loss"].count == 1
        assert run.name == "tiny" and run.status == "finished"
        assert run.params["optim.lr"] == "0.001"  # nested hparams flattened with dots
        assert run.params["optim.momentum"] == "0.0" and run.params["width"] == "4"
        hist = run.history(["train_loss", "val_loss", "epoch"])
        train_loss = hist[hist["key"] == "train_loss"]
        assert train_loss["step"].tolist() == list(range(EPOCHS * BATCHES_PER_EPOCH))
        val_loss = hist[hist["key"] == "val_loss"]
        assert len(val_loss) == EPOCHS  # one per epoch, at the epoch's last step
        assert val_loss["step"].tolist() == [BATCHES_PER_EPOCH * (e + 1) - 1
                                             for e in range(EPOCHS)]
        # Lightning logs the epoch with every call; test() runs after epoch 1 ended.
        assert set(hist[hist["key"] == "epoch"]["value"]) == {0.0, 1.0, 2.0}


def test_failed_fit_marks_the_run_failed(server: ServerThread, tmp_path: Path) -> None:
    logger = TrackerLogger(experiment="lightning-fail", server=server.address,
                           options=fast(tmp_path / "spool"))
    train, val = loaders()
    with pytest.raises(RuntimeError, match="boom"):
        trainer(logger, tmp_path).fit(TinyModel(fail_at_step=3), train, val)
    with tracker_client.Api(server=server.address) as api:
        (run,) = list(api.runs("lightning-fail"))
        assert run.status == "failed"
        assert run.history("train_loss")["step"].tolist() == [0, 1, 2]


def test_logger_flattens_namespaces_and_dataclasses(server: ServerThread, tmp_path: Path
                                                    ) -> None:
    import argparse
    import dataclasses

    @dataclasses.dataclass
    class Optim:
        lr: float = 0.1
        betas: tuple[float, float] = (0.9, 0.99)

    logger = TrackerLogger(experiment="lightning-params", server=server.address,
                           options=fast(tmp_path / "spool"))
    logger.log_hyperparams(argparse.Namespace(optim=Optim(), layers=[64, 64], name="x"))
    logger.log_metrics({"loss": 0.5, "note": "text is skipped"}, step=3)
    run_key = logger.run_key
    logger.finalize("success")
    with tracker_client.Api(server=server.address) as api:
        (run,) = list(api.runs("lightning-params"))
        assert run.run_key == run_key and run.status == "finished"
        assert run.params == {"optim.lr": "0.1", "optim.betas": "[0.9, 0.99]",
                              "layers": "[64, 64]", "name": "x"}
        assert run.summary == {"loss": 0.5}


DDP_SCRIPT = textwrap.dedent("""
    import lightning.pytorch as pl
    from tracker_client import Options
    from tracker_client.integrations.lightning import TrackerLogger
    from tests.lightning_model import TinyModel, loaders

    logger = TrackerLogger(experiment="lightning-ddp", options=Options(
        flush_interval_s=0.02, system_metrics_interval_s=None, recover_orphans=False))
    train, val = loaders()
    trainer = pl.Trainer(strategy="ddp", accelerator="cpu", devices=2, max_epochs=2,
                         logger=logger, log_every_n_steps=1, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(TinyModel(optim={"lr": 0.01}), train, val)
    print("RANK", trainer.global_rank, "RUN", logger.version, flush=True)
""")


def test_ddp_two_cpu_processes_share_one_run(server: ServerThread, tmp_path: Path) -> None:
    script = tmp_path / "train_ddp.py"
    script.write_text(DDP_SCRIPT, encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if k not in {"RANK", "LOCAL_RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID",
                        "SLURM_JOB_ID", "TRACKER_LIGHTNING_RUN_KEY"}}
    env.update(TRACKER_SERVER=server.address, TRACKER_SPOOL_DIR=str(tmp_path / "spool"),
               PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", PL_DISABLE_FORK="1")
    proc = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    printed = [line.split() for line in proc.stdout.splitlines() if line.startswith("RANK")]
    assert {p[1] for p in printed} == {"0", "1"}  # both ranks ran
    assert len({p[3] for p in printed}) == 1  # ... into the same run

    with tracker_client.Api(server=server.address) as api:
        (run,) = list(api.runs("lightning-ddp"))
        assert run.status == "finished" and run.params["optim.lr"] == "0.01"
        assert run.run_key.startswith("lightning-")
        hist = run.history("train_loss")
        # DistributedSampler halves each rank's batches; every rank logs its own loss.
        per_rank = hist.groupby("rank")["step"].apply(list).to_dict()
        assert per_rank == {r: list(range(EPOCHS * BATCHES_PER_EPOCH // 2)) for r in (0, 1)}
        val = run.history("val_loss")
        assert sorted(set(val["rank"])) == [0, 1]


def test_pytorch_lightning_package_gets_the_same_logger(server: ServerThread, tmp_path: Path
                                                        ) -> None:
    pl_legacy = pytest.importorskip("pytorch_lightning", reason="pytorch_lightning not installed")
    from tracker_client.integrations.pytorch_lightning import TrackerLogger as LegacyLogger

    logger = LegacyLogger(experiment="pl-legacy", server=server.address,
                          options=fast(tmp_path / "spool"))
    assert isinstance(logger, pl_legacy.loggers.Logger)
    logger.log_hyperparams({"optim": {"lr": 0.5}})
    logger.log_metrics({"loss": 1.25}, step=0)
    logger.finalize("interrupted")
    with tracker_client.Api(server=server.address) as api:
        (run,) = list(api.runs("pl-legacy"))
        assert run.status == "killed" and run.params == {"optim.lr": "0.5"}
        assert run.summary == {"loss": 1.25}
