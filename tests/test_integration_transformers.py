"""TrackerCallback with a real transformers Trainer on a tiny randomly initialised BERT
(no downloads): params, logged and evaluation metrics, finished and failed runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers", reason="needs the transformers extra "
                    "(pip install 'tracker[transformers]')")
torch = pytest.importorskip("torch", reason="the transformers Trainer needs torch")

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

import tracker_client  # noqa: E402
from tests.client_support import fast  # noqa: E402
from tests.support import ServerThread  # noqa: E402
from tracker_client.integrations.transformers import TrackerCallback  # noqa: E402

pytestmark = pytest.mark.timeout(240)
SAMPLES, BATCH, EPOCHS = 32, 8, 2
STEPS = SAMPLES // BATCH * EPOCHS


class Synthetic(torch.utils.data.Dataset):  # type: ignore[misc]
    """Random token ids; the label is whether the first token is even."""

    def __init__(self, n: int) -> None:
        gen = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, 100, (n, 8), generator=gen)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __getitem__(self, i: int) -> dict[str, Any]:
        ids = self.ids[i]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                "labels": int(ids[0]) % 2}


def tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32,
                        max_position_embeddings=16, num_labels=2)
    return BertForSequenceClassification(config)


def arguments(tmp_path: Path, **changes: Any) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=BATCH, num_train_epochs=EPOCHS, learning_rate=1e-3,
        logging_steps=2, eval_strategy="steps", eval_steps=4,
        report_to=[], use_cpu=True, disable_tqdm=True, seed=7, dataloader_num_workers=0,
        **{"save_strategy": "no", **changes})


def test_trainer_logs_params_metrics_and_finishes(server: ServerThread, tmp_path: Path
                                                  ) -> None:
    callback = TrackerCallback(experiment="hf", server=server.address,
                               options=fast(tmp_path / "spool"))
    trainer = Trainer(model=tiny_bert(), args=arguments(tmp_path, run_name="tiny-bert"),
                      train_dataset=Synthetic(SAMPLES), eval_dataset=Synthetic(16),
                      callbacks=[callback])
    trainer.train()
    assert callback.run is None  # finished at train end

    with tracker_client.Api(server=server.address) as api:
        (run,) = list(api.runs("hf"))
        assert run.status == "finished" and run.name == "tiny-bert" and run.seed == 7
        assert run.params["learning_rate"] == "0.001"
        assert run.params["per_device_train_batch_size"] == str(BATCH)
        assert run.params["model.hidden_size"] == "16"
        assert run.params["model.num_hidden_layers"] == "1"
        hist = run.history(["loss", "eval_loss", "learning_rate", "train_runtime"])
        by_key = hist.groupby("key", observed=True)["step"].apply(list).to_dict()
        assert by_key["loss"] == list(range(2, STEPS + 1, 2))
        assert by_key["eval_loss"] == list(range(4, STEPS + 1, 4))  # logged once per step
        assert by_key["learning_rate"] == by_key["loss"]
        assert by_key["train_runtime"] == [STEPS]


class Explode(TrainerCallback):  # type: ignore[misc]
    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 3:
            raise RuntimeError("boom")


def test_exception_in_train_fails_the_run(server: ServerThread, tmp_path: Path) -> None:
    callback = TrackerCallback(experiment="hf-fail", server=server.address,
                               options=fast(tmp_path / "spool"))
    trainer = Trainer(model=tiny_bert(), args=arguments(tmp_path), callbacks=[callback, Explode()],
                      train_dataset=Synthetic(SAMPLES), eval_dataset=Synthetic(16))
    with pytest.raises(RuntimeError, match="boom"):
        trainer.train()
    with tracker_client.Api(server=server.address) as api:
        (run,) = list(api.runs("hf-fail"))
        assert run.status == "failed"
        assert run.history("loss")["step"].tolist() == [2]
