"""``tracker import tensorboard`` on event files written by torch's SummaryWriter:
one run per event-file directory, every scalar, and nothing twice on a second import."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch.utils.tensorboard", reason="needs torch to write event files")
pytest.importorskip("tensorboard", reason="needs the tensorboard extra "
                    "(pip install 'tracker[tensorboard]')")

import tracker_client
from tests.support import ServerThread
from tests.tensorboard_support import TORCH_IMPORT, event_scalars, run_script
from tracker_client.cli import main

pytestmark = pytest.mark.timeout(120)


def import_json(server: ServerThread, capsys: pytest.CaptureFixture[str], *args: str
                ) -> dict[str, Any]:
    code = main(["--server", server.address, "import", "tensorboard", *args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def stored(api: tracker_client.Api, experiment: str) -> dict[str, dict[str, Any]]:
    """run name -> {key: (steps, values, wall ns)} of an experiment."""
    out: dict[str, dict[str, Any]] = {}
    for run in api.runs(experiment):
        hist = run.history(run.metric_keys(), as_frame=False)
        out[run.name] = {k: (hist["step"][hist["key"] == k], hist["value"][hist["key"] == k],
                             hist["wall_time_ns"][hist["key"] == k]) for k in run.metric_keys()}
    return out


def test_import_is_complete_and_idempotent(server: ServerThread, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    logdir = tmp_path / "runs"
    run_script(TORCH_IMPORT, logdir / "exp1")
    run_script(TORCH_IMPORT, logdir / "exp2")
    written = {d: event_scalars(logdir / d) for d in ("exp1", "exp2")}
    n_points = sum(len(p) for w in written.values() for p in w.values())
    dirs = sorted({p.parent.relative_to(logdir).as_posix() for p in logdir.rglob("*tfevents*")})
    # exp1, exp1/lr_a, exp1/lr_b, exp1/<hparams run>, and the same for exp2
    assert len(dirs) == 8

    first = import_json(server, capsys, str(logdir), "--experiment", "tb-import")
    assert first["runs"] == 8 and first["runs_created"] == 8
    assert first["points_sent"] == n_points and first["points_skipped"] == 0

    with tracker_client.Api(server=server.address) as api:
        runs = stored(api, "tb-import")
        assert sorted(runs) == dirs
        assert all(r.status == "finished" for r in api.runs("tb-import"))
        for exp in ("exp1", "exp2"):
            for key, points in written[exp].items():
                if "/" in key and key.split("/")[0] == "lr":
                    main_tag, tag = key.split("/")
                    steps, values, wall = runs[f"{exp}/{main_tag}_{tag}"][main_tag]
                elif key == "hparam/acc":
                    (hp_dir,) = [d for d in dirs if d.startswith(f"{exp}/")
                                 and not d.startswith(f"{exp}/lr_")]
                    steps, values, wall = runs[hp_dir][key]
                else:
                    steps, values, wall = runs[exp][key]
                assert steps.tolist() == [p[0] for p in points]
                # Event files hold float32; the importer reads those exact values.
                assert values.tolist() == [p[1] for p in points]
                assert np.array_equal(
                    wall, np.round(np.array([p[2] for p in points]) * 1e6).astype(np.int64) * 1000)

    again = import_json(server, capsys, str(logdir), "--experiment", "tb-import")
    assert again["runs_created"] == 0 and again["runs_skipped"] == 8
    assert again["points_sent"] == 0 and again["points_skipped"] == n_points

    # A resumed job appends a new event file: only its points are sent.
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(logdir / "exp1")) as writer:
        for step in range(50, 60):
            writer.add_scalar("loss", 0.01, global_step=step)
    third = import_json(server, capsys, str(logdir), "--experiment", "tb-import")
    assert third["points_sent"] == 10 and third["runs_updated"] == 1
    with tracker_client.Api(server=server.address) as api:
        (exp1,) = [r for r in api.runs("tb-import") if r.name == "exp1"]
        loss = exp1.history("loss")
        assert loss["step"].tolist() == list(range(60))
        assert exp1.metrics["loss"].count == 60  # nothing stored twice


def test_import_text_summary_and_errors(server: ServerThread, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run_script(TORCH_IMPORT, tmp_path / "logs")
    code = main(["--server", server.address, "import", "tensorboard", str(tmp_path / "logs")])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "4 run(s): 4 new, 0 updated, 0 skipped" in out
    with tracker_client.Api(server=server.address) as api:
        assert [e.name for e in api.experiments(name_prefix="logs")] == ["logs"]
    code = main(["--server", server.address, "import", "tensorboard", str(tmp_path / "nope")])
    _, err = capsys.readouterr()
    assert code == 2 and "is not a directory" in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal(server: ServerThread, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm", reason="the progress bar uses tqdm")
    run_script(TORCH_IMPORT, tmp_path / "bar")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["--server", server.address, "import", "tensorboard", str(tmp_path / "bar"),
                 "--json"]) == 0
    assert "pt/s" in terminal.getvalue()
    assert json.loads(capsys.readouterr().out)["runs"] == 4  # stdout stays clean JSON
    monkeypatch.undo()
    assert main(["--server", server.address, "import", "tensorboard", str(tmp_path / "bar"),
                 "--json"]) == 0
    assert capsys.readouterr().err == ""  # not a terminal: no bar
