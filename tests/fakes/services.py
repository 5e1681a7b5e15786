"""The domain services wired to the in-memory fakes, as ``server.build_services`` wires
them to PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.fakes.artifact_store import FakeArtifactStore
from tests.fakes.experiment_store import FakeExperimentStore
from tests.fakes.memory import InMemoryDatabase
from tests.fakes.metric_reader import FakeMetricReader
from tests.fakes.run_search import FakeRunSearch
from tests.fakes.run_store import FakeRunStore
from tests.fakes.user_summary_store import FakeUserSummaryStore
from tracker_server.domain.artifact_service import ArtifactService
from tracker_server.domain.experiment_service import ExperimentService
from tracker_server.domain.query_service import QueryService
from tracker_server.domain.run_service import RunService
from tracker_server.domain.series_query import SeriesQuery
from tracker_server.domain.user_summaries import UserSummaries


@dataclass
class FakeServices:
    """One in-memory database, its stores, and the services over them."""

    db: InMemoryDatabase = field(default_factory=InMemoryDatabase)

    def __post_init__(self) -> None:
        self.experiment_store = FakeExperimentStore(self.db)
        self.run_store = FakeRunStore(self.db)
        self.search = FakeRunSearch(self.db)
        self.reader = FakeMetricReader(self.db)
        self.experiments = ExperimentService(self.experiment_store, self.search)
        self.runs = RunService(self.run_store, self.search)
        self.summary_store = FakeUserSummaryStore(self.db)
        self.query = QueryService(self.reader, self.run_store, SeriesQuery(self.reader),
                                  goals=self.summary_store)
        self.summaries = UserSummaries(self.summary_store)
        self.artifact_store = FakeArtifactStore(self.db)
        self.artifacts = ArtifactService(self.artifact_store)
