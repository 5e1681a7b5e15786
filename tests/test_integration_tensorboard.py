"""The tracker SummaryWriter against torch's: the same script run with both imports
stores in tracker what torch writes to event files (scalars, steps, wall times)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch.utils.tensorboard", reason="needs torch and tensorboard "
                    "(pip install 'tracker[tensorboard]')")

import tracker_client
from tests.support import ServerThread
from tests.tensorboard_support import (
    STEPS,
    TORCH_IMPORT,
    TRACKER_IMPORT,
    event_scalars,
    expected_loss,
    run_script,
)
from tracker_client.integrations.tensorboard import SummaryWriter

pytestmark = pytest.mark.timeout(120)


def test_same_script_same_scalars(server: ServerThread, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_SERVER", server.address)
    monkeypatch.setenv("TRACKER_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("TRACKER_EXPERIMENT", "tb-dropin")
    run_script(TORCH_IMPORT, tmp_path / "torch" / "exp1")
    with pytest.warns(UserWarning, match="add_histogram"):
        run_script(TRACKER_IMPORT, tmp_path / "tracker" / "exp1")

    written = event_scalars(tmp_path / "torch" / "exp1")
    assert set(written) == {"loss", "lr/a", "lr/b", "no_step", "hparam/acc"}
    with tracker_client.Api(server=server.address) as api:
        (run,) = list(api.runs("tb-dropin"))
        assert run.name == "exp1" and run.status == "finished"
        assert run.params == {"lr": "0.1", "optim": "adam"}
        hist = run.history(list(written), as_frame=False)
        for key, points in written.items():
            mine = hist["key"] == key
            steps, values = hist["step"][mine], hist["value"][mine]
            wall = hist["wall_time_ns"][mine]
            assert steps.tolist() == [p[0] for p in points], key
            # TensorBoard stores float32 simple values; tracker keeps the float64.
            assert np.allclose(values, [p[1] for p in points], rtol=1e-6), key
            if key != "hparam/acc":  # add_hparams takes no walltime
                assert np.array_equal(wall, np.round(np.array([p[2] for p in points]) * 1e6)
                                      .astype(np.int64) * 1000), key
        loss = hist["value"][hist["key"] == "loss"]
        assert loss.tolist() == [expected_loss(s) for s in range(STEPS)]  # exact float64


def test_unsupported_methods_warn_once_and_context_manager_fails_the_run(
        server: ServerThread, tmp_path: Path) -> None:
    from tests.client_support import fast

    with pytest.raises(RuntimeError, match="boom"), SummaryWriter(
            tmp_path / "w", experiment="tb-fail", server=server.address,
            options=fast(tmp_path / "spool")) as writer:
        with pytest.warns(UserWarning, match="add_image"):
            writer.add_image("img", None)
        writer.add_image("img", None)  # second call: silent (no warning filter error)
        writer.add_scalar("x", np.float32(1.5), global_step=3)
        with pytest.raises(TypeError, match="not a number"):
            writer.add_scalar("x", "text")
        with pytest.raises(AttributeError):
            writer.not_a_method  # noqa: B018
        raise RuntimeError("boom")
    with tracker_client.Api(server=server.address) as api:
        (run,) = list(api.runs("tb-fail"))
        assert run.status == "failed" and run.summary == {"x": 1.5}
        assert run.tags["tensorboard.log_dir"] == str(tmp_path / "w")
        assert not math.isnan(run.metrics["x"].last)
