"""tracker_client.Api / AsyncApi against a real server: listings, filters, pages,
full-resolution and downsampled history, rankings, comparisons."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pandas", reason="the read API's DataFrames need pandas "
                    "(pip install 'tracker[pandas]')")

import tracker_client
from tests.client_support import fast
from tests.support import ServerThread

pytestmark = pytest.mark.timeout(120)


def log_runs(address: str, spool: Path) -> list[tracker_client.Run]:
    """Three runs in "read-api": lr 0.1 / 0.01 / 0.001, loss decaying with lr."""
    runs = []
    for i, lr in enumerate([0.1, 0.01, 0.001]):
        run = tracker_client.init(experiment="read-api", name=f"r{i}", server=address,
                                  config={"lr": lr, "optim": "adam"}, tags={"team": "nlp"},
                                  run_key=f"read-{i}", options=fast(spool))
        for step in range(200):
            run.log({"loss": (1 + i) / (step + 1), "acc": step / 200}, step=step,
                    wall_time=1_700_000_000 + step)
        assert run.finish(timeout=30).durable
        runs.append(run)
    return runs


def test_sync_api_lists_filters_and_reads(server: ServerThread, tmp_path: Path) -> None:
    log_runs(server.address, tmp_path)
    with tracker_client.Api(server=server.address) as api:
        exps = [e.name for e in api.experiments(name_prefix="read")]
        assert exps == ["read-api"]
        exp = api.experiment("read-api")
        assert api.experiment(exp.experiment_id) == exp
        with pytest.raises(LookupError):
            api.experiment("no-such-experiment")

        # page_size=1 forces three pages behind the iterator.
        runs = api.runs("read-api", order_by="params.lr", page_size=1)
        assert [r.name for r in runs] == ["r2", "r1", "r0"]
        first = runs[0]
        assert first.params == {"lr": "0.001", "optim": "adam"}
        assert first.tags["team"] == "nlp"
        assert first.status == "finished"
        assert first.summary["loss"] == pytest.approx(3 / 200)
        assert first.metrics["acc"].count == 200
        assert "python" in first.metadata
        frame = runs.to_pandas()
        assert list(frame["name"]) == ["r2", "r1", "r0"]
        assert list(frame["params.lr"]) == ["0.001", "0.01", "0.1"]
        assert frame["summary.acc"].iloc[0] == pytest.approx(199 / 200)

        small = api.runs(exp, filter="params.lr < 0.05", order_by=["params.lr desc"])
        assert [r.name for r in small] == ["r1", "r2"]
        assert len(api.runs("read-api", limit=2, page_size=1)) == 2

        # Full resolution: every point, exact values and the logged wall times.
        hist = first.history(["loss", "acc"])
        assert len(hist) == 400
        loss = hist[hist["key"] == "loss"]
        assert loss["step"].tolist() == list(range(200))
        assert np.allclose(loss["value"].to_numpy(), 3 / (np.arange(200) + 1))
        assert loss["wall_time"].iloc[5].timestamp() == 1_700_000_005
        assert set(hist["rank"]) == {0}
        part = first.history("loss", start=10, end=19)
        assert part["step"].tolist() == list(range(10, 20))

        arrays = api.history(first, "loss", as_frame=False)
        assert arrays["step"].dtype == np.int64 and arrays["value"].dtype == np.float64
        assert arrays["wall_time_ns"][0] == 1_700_000_000 * 10**9
        assert set(arrays["key"].tolist()) == {"loss"}

        # Downsampled: at most max_points, first/last/min/max kept.
        down = first.history("loss", max_points=10, as_frame=False)
        assert 4 <= len(down["step"]) <= 10
        assert down["step"][0] == 0 and down["step"][-1] == 199
        assert down["value"].max() == 3.0

        best = api.best("read-api", "loss", mode="min")
        assert [b.run_name for b in best] == ["r0", "r1", "r2"]  # final loss (1+i)/200
        assert best[0].value == pytest.approx(1 / 200) and best[0].step == 199
        top = api.best("read-api", "acc", mode="max", on="max", limit=1)
        assert len(top) == 1 and top[0].value == pytest.approx(199 / 200)

        cmp = api.compare(list(runs))
        assert cmp.params["lr"] == ["0.001", "0.01", "0.1"]
        assert cmp.differs["params.lr"] and not cmp.differs["params.optim"]
        table = cmp.to_pandas(only_differences=True)
        assert "params.lr" in table.index and "params.optim" not in table.index
        m = cmp.metrics["loss"]
        assert m[0] is not None and math.isclose(m[0].last, 3 / 200)


def test_history_of_several_ranks_and_aggregation(server: ServerThread, tmp_path: Path
                                                  ) -> None:
    for rank in (0, 1):
        run = tracker_client.init(experiment="ranks-api", run_key="job-1", rank=rank,
                                  server=server.address, options=fast(tmp_path))
        run.log_series("loss", np.arange(100), np.full(100, float(rank)))
        assert run.finish(timeout=30).durable
    with tracker_client.Api(server=server.address) as api:
        (run_view,) = list(api.runs("ranks-api"))
        hist = run_view.history("loss")
        assert hist.groupby("rank").size().to_dict() == {0: 100, 1: 100}
        only = run_view.history("loss", rank=1)
        assert set(only["rank"]) == {1}
        mean = run_view.history("loss", max_points=100, aggregation="mean")
        assert set(mean["rank"]) == {-1} and np.allclose(mean["value"], 0.5)
        with pytest.raises(ValueError, match="aggregation needs max_points"):
            run_view.history("loss", aggregation="mean")
        assert len(run_view.history("never-logged")) == 0


def test_async_api_matches_the_sync_one(server: ServerThread, tmp_path: Path) -> None:
    log_runs(server.address, tmp_path)

    async def main() -> None:
        async with tracker_client.AsyncApi(server=server.address) as api:
            names = [e.name async for e in api.experiments()]
            assert "read-api" in names
            runs = api.runs("read-api", filter='params.optim = "adam"', order_by="params.lr",
                            page_size=2)
            listed = await runs.to_list()
            assert [r.name for r in listed] == ["r2", "r1", "r0"]
            frame = await listed[1].history("loss")
            assert len(frame) == 200 and frame["step"].iloc[-1] == 199
            down = await listed[1].history("loss", max_points=8, as_frame=False)
            assert len(down["step"]) <= 8
            best = await api.best("read-api", "loss", mode="min", limit=1)
            assert best[0].run_id == listed[2].run_id
            cmp = await api.compare(listed)
            assert cmp.params["lr"] == ["0.001", "0.01", "0.1"]
            table = await api.runs("read-api", limit=1).to_pandas()
            assert len(table) == 1
            one = await api.run(listed[0].run_id)
            assert one.params == listed[0].params

    asyncio.run(main())


def test_history_without_pandas_gives_numpy_columns(server: ServerThread, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import tracker_client._history as history

    run = tracker_client.init(experiment="no-pandas", server=server.address,
                              options=fast(tmp_path))
    run.log_series("loss", np.arange(10), np.linspace(1, 0, 10))
    assert run.finish(timeout=30).durable
    monkeypatch.setattr(history, "have_pandas", lambda: False)
    with tracker_client.Api(server=server.address) as api:
        cols = api.history(run.run_id or "", "loss")
        assert isinstance(cols, dict)
        assert cols["step"].tolist() == list(range(10))
        assert cols["value"].tolist() == np.linspace(1, 0, 10).tolist()
        assert cols["rank"].dtype == np.int32 and cols["key"].tolist() == ["loss"] * 10
