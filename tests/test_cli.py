"""The ``tracker`` CLI against a real server, as a new user would try it."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.query_support import log_points, new_experiment, new_run
from tests.support import Api, ServerThread
from tracker_client.cli import main


@pytest.fixture
def seeded(api: Api) -> dict[str, str]:
    exp = new_experiment(api, "mnist", owner="ana")
    new_experiment(api, "cifar", owner="bob")
    ids = {"exp": exp}
    for i, lr in enumerate(["0.1", "0.01"]):
        run = new_run(api, exp, name=f"run{i}", params={"lr": lr, "bs": "32"})
        steps = np.arange(500)
        log_points(api, run, "loss", steps, np.exp(-steps / (100 * (i + 1))))
        log_points(api, run, "val_acc", [0, 499], [0.1, 0.8 + i / 10])
        ids[f"run{i}"] = run
    return ids


def run_cli(server: ServerThread, capsys: pytest.CaptureFixture[str], *args: str
            ) -> tuple[int, str, str]:
    code = main(["--server", server.address, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_experiments_and_runs(server: ServerThread, seeded: dict[str, str],
                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(server, capsys, "experiments", "ls")
    assert code == 0 and "mnist" in out and "cifar" in out and "NAME" in out
    code, out, _ = run_cli(server, capsys, "experiments", "ls", "--owner", "ana", "--json")
    assert [e["name"] for e in json.loads(out)] == ["mnist"]
    code, out, _ = run_cli(server, capsys, "runs", "ls", "mnist")
    assert code == 0 and "run0" in out and "run1" in out and "lr" in out
    code, out, _ = run_cli(server, capsys, "runs", "ls", seeded["exp"], "--json",
                           "--filter", "params.lr < 0.05")
    assert [r["name"] for r in json.loads(out)] == ["run1"]
    code, out, _ = run_cli(server, capsys, "runs", "show", seeded["run0"])
    assert code == 0 and "val_acc" in out and "0.8" in out and "bs" in out
    code, out, _ = run_cli(server, capsys, "runs", "show", seeded["run0"], "--json")
    assert json.loads(out)["run"]["params"]["lr"] == "0.1"


def test_best_compare_metrics(server: ServerThread, seeded: dict[str, str],
                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(server, capsys, "best", "mnist", "--metric", "val_acc", "--max")
    assert code == 0
    assert out.index("run1") < out.index("run0")
    code, out, _ = run_cli(server, capsys, "best", "mnist", "-m", "loss", "--min", "--json")
    assert json.loads(out)[0]["run_name"] == "run0"
    code, out, _ = run_cli(server, capsys, "compare", seeded["run0"], seeded["run1"])
    assert code == 0 and "* " in out and "lr" in out and "bs" in out
    code, out, _ = run_cli(server, capsys, "compare", seeded["run0"], seeded["run1"], "--json")
    rows = {p["key"]: p for p in json.loads(out)["params"]}
    assert rows["lr"]["differs"] and not rows["bs"].get("differs", False)
    code, out, _ = run_cli(server, capsys, "metrics", seeded["run0"])
    assert code == 0 and "loss" in out and "val_acc" in out
    code, out, _ = run_cli(server, capsys, "metrics", seeded["run0"], "--key", "loss")
    assert code == 0 and "STEP" in out and "of 500 points" in out
    code, out, _ = run_cli(server, capsys, "metrics", seeded["run0"], "-k", "loss",
                           "--sparkline")
    assert code == 0 and "▁" in out and "█" in out
    code, out, _ = run_cli(server, capsys, "metrics", seeded["run0"], "-k", "loss", "--json",
                           "--points", "4")
    [s] = json.loads(out)
    assert len(s["steps"]) <= 4 and math.isclose(s["values"][0], 1.0)


def test_plot_writes_png(server: ServerThread, seeded: dict[str, str], tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "loss.png"
    code, _out, err = run_cli(server, capsys, "plot", seeded["run0"], seeded["run1"],
                             "--key", "loss", "-o", str(png))
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    code, _, err = run_cli(server, capsys, "plot", seeded["run0"], "--key", "nope",
                           "-o", str(tmp_path / "x.png"))
    assert code == 2 and "nope" in err
    mean = tmp_path / "mean.png"
    code, out, err = run_cli(server, capsys, "plot", seeded["run0"], "--key", "loss",
                             "--aggregate", "mean", "-o", str(mean), "--json")
    assert code == 0, err
    assert json.loads(out) == {"output": str(mean), "series": 1}


def test_plot_without_matplotlib_names_the_extra(server: ServerThread, seeded: dict[str, str],
                                                 tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code, _, err = run_cli(server, capsys, "plot", seeded["run0"], "--key", "loss",
                           "-o", str(tmp_path / "x.png"))
    assert code == 2
    assert err.strip() == "tracker: plotting needs matplotlib: pip install 'tracker[plot]'"


def test_errors_are_readable(server: ServerThread, seeded: dict[str, str],
                             capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(server, capsys, "runs", "ls", "no-such-experiment")
    assert code == 2 and "no experiment named" in err
    code, _, err = run_cli(server, capsys, "runs", "ls", "mnist", "--filter", "params.lr <")
    assert code == 1 and "INVALID_ARGUMENT" in err and "position" in err
    code, _, err = run_cli(server, capsys, "runs", "show", "00000000-0000-0000-0000-000000000000")
    assert code == 1 and "NOT_FOUND" in err
    code = main(["--server", "127.0.0.1:1", "--timeout", "2", "experiments", "ls"])
    assert code == 1 and "cannot reach" in capsys.readouterr().err


def test_console_script_uses_environment(server: ServerThread, seeded: dict[str, str]) -> None:
    env = {"TRACKER_SERVER": server.address, "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", "from tracker_client.cli import main; raise SystemExit(main())",
         "experiments", "ls", "--json"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert {e["name"] for e in json.loads(proc.stdout)} == {"mnist", "cifar"}
