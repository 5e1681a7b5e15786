"""Request and response bodies of the REST API (pydantic; this is the OpenAPI schema).

Responses are written by ``http/convert.py`` straight to JSON (numpy columns included);
the response models here describe them for the schema and are not run per request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, WithJsonSchema

from tracker_server.http.encoding import ENCODING_DOC, INT64_MAX, INT64_MIN

_INT_TEXT = r"^-?[0-9]{1,20}$"
_INT_SCHEMA = {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": _INT_TEXT}],
               "description": "int64: a JSON number when |v| <= 2^53, else a decimal string"}
_FLOAT_SCHEMA = {"anyOf": [{"type": "number"}, {"enum": ["NaN", "Infinity", "-Infinity"]}],
                 "description": "float64; NaN and infinities as strings"}


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


def _int_schema(low: int, high: int) -> WithJsonSchema:
    return WithJsonSchema({**_INT_SCHEMA, "minimum": low, "maximum": high})


Int64In = Annotated[int, BeforeValidator(_no_bool), Field(ge=INT64_MIN, le=INT64_MAX),
                    _int_schema(INT64_MIN, INT64_MAX)]
"""A scalar int64 of a request: a number or a decimal string."""
Int32In = Annotated[int, BeforeValidator(_no_bool), Field(ge=-(2**31), le=2**31 - 1),
                    _int_schema(-(2**31), 2**31 - 1)]
SeqIn = Annotated[int, BeforeValidator(_no_bool), Field(ge=0, le=INT64_MAX),
                  _int_schema(0, INT64_MAX)]

_StrictInt64 = Annotated[int, Strict(), Field(ge=INT64_MIN, le=INT64_MAX)]
_Int64Text = Annotated[str, Field(pattern=_INT_TEXT)]
Int64Item = Annotated[_StrictInt64 | _Int64Text, WithJsonSchema(_INT_SCHEMA)]
"""One element of an int64 column (strict: no booleans, no floats)."""
FloatItem = Annotated[Annotated[float, Strict()] | Literal["NaN", "Infinity", "-Infinity"],
                      WithJsonSchema(_FLOAT_SCHEMA)]
"""One element of a float64 column."""
KeyIndexItem = Annotated[int, Strict(), Field(ge=0, le=2**32 - 1)]

WireInt = Annotated[int | str, WithJsonSchema(_INT_SCHEMA)]
"""An int64 of a response."""
WireFloat = Annotated[float | str, WithJsonSchema(_FLOAT_SCHEMA)]
"""A float64 of a response."""

ExperimentStatusName = Literal["created", "active", "archived"]
RunStatusName = Literal["running", "finished", "failed", "killed"]
GoalName = Literal["min", "max"]
"""A metric goal: min (smaller is better) or max."""


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Requests ---------------------------------------------------------------------------
class ExperimentCreate(_In):
    """A new experiment."""

    name: str
    owner: str = ""
    description: str = ""
    get_if_exists: bool = Field(False, description="answer 200 with the existing experiment "
                                "of this owner and name instead of 409")


class ExperimentPatch(_In):
    """Fields to change (absent: unchanged)."""

    description: str | None = None
    status: ExperimentStatusName | None = None


class RunCreate(_In):
    """A new run, or the existing one with this ``run_key`` (then 200)."""

    experiment_id: str
    name: str = ""
    run_key: str = ""
    params: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    seed: Int64In | None = None
    slurm_job_id: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    resume: bool = Field(False, description="start attempt n+1 of an existing run_key")
    resume_token: str = ""


class RunFinish(_In):
    """How the run ended."""

    status: RunStatusName
    ended_at: datetime | None = Field(None, description="RFC 3339; absent: now")


class ParamsAdd(_In):
    """Params to add (immutable: another value for an existing key is 409)."""

    params: dict[str, str]


class TagsPatch(_In):
    """Tags to delete, then to set."""

    set: dict[str, str] = Field(default_factory=dict)
    delete: list[str] = Field(default_factory=list)


class PointIn(_In):
    """One point of the row form."""

    key: str
    step: Int64Item
    value: FloatItem
    wall_time_ns: Int64Item | None = None


class MetricsIn(_In):
    """One batch: columnar (``keys``, ``key_index``, ``steps``, ``values``,
    ``wall_time_ns?``) or rows (``points``). ``writer_id`` + ``seq`` (1, 2, 3, ...) make
    retries exactly-once: a repeated seq is acknowledged without writing. Without
    ``wall_time_ns`` the server's clock is used."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"description": ENCODING_DOC})

    writer_id: str = Field("", description="a writer's name; required with seq")
    seq: SeqIn = 0
    rank: Int32In = 0
    attempt: Int32In = 0
    keys: list[str] | None = None
    key_index: list[KeyIndexItem] | None = None
    steps: list[Int64Item] | None = None
    values: list[FloatItem] | None = None
    wall_time_ns: list[Int64Item] | None = None
    points: list[PointIn] | None = None


class SessionLogin(_In):
    """Log in with an API key (sent in the body, never in a URL)."""

    api_key: str


# Responses --------------------------------------------------------------------------
class Experiment(BaseModel):
    """An experiment."""

    experiment_id: str
    name: str
    owner: str
    description: str
    status: ExperimentStatusName
    created_at: datetime


class Summary(BaseModel):
    """Summary of one metric key of a run (maintained at ingest)."""

    key: str
    count: int
    first_step: WireInt
    last_step: WireInt
    last_value: WireFloat
    last_wall_time_ns: WireInt
    min_value: WireFloat | None
    min_step: WireInt | None
    max_value: WireFloat | None
    max_step: WireInt | None


class Run(BaseModel):
    """A run; ``summaries`` (one per metric key) on GET /runs and GET /runs/{run_id}."""

    run_id: str
    experiment_id: str
    name: str
    run_key: str
    status: RunStatusName
    attempt: int
    seed: WireInt | None
    slurm_job_id: str
    metadata: dict[str, Any]
    created_at: datetime
    ended_at: datetime | None
    params: dict[str, str]
    tags: dict[str, str]
    metric_goals: dict[str, GoalName] = Field(
        description="goal per metric key the run defined (define_metric): min or max")
    user_summary: dict[str, WireFloat] = Field(
        description="user summary values (run.summary[key] = value, SetSummary), by key; "
        "NaN and infinities as strings")
    summaries: list[Summary] | None = None


class ExperimentList(BaseModel):
    """A page of experiments, newest first."""

    experiments: list[Experiment]
    next_page_token: str


class ExperimentDetail(BaseModel):
    """An experiment and a page of its runs."""

    experiment: Experiment
    runs: list[Run]
    next_runs_page_token: str


class RunList(BaseModel):
    """A page of runs."""

    runs: list[Run]
    next_page_token: str


class RankedRun(BaseModel):
    """One run of a ranking."""

    run_id: str
    run_name: str
    status: RunStatusName
    value: WireFloat
    step: WireInt


class BestRuns(BaseModel):
    """The best runs, best first, and the goal that ranked them."""

    runs: list[RankedRun]
    mode: GoalName = Field(
        description="the goal in effect: the request's mode, else the one the runs defined")
    mode_source: Literal["request", "runs"] = Field(
        description="request: the mode asked for; runs: the goal the runs defined for the "
        "metric (define_metric)")


class ParamRow(BaseModel):
    """One param across the compared runs (null: the run lacks it)."""

    key: str
    values: list[str | None]
    differs: bool


class MetricRow(BaseModel):
    """One key across the compared runs (null: the run never logged it)."""

    key: str
    summaries: list[Summary | None]
    differs: bool
    goal: GoalName | None = Field(
        description="the goal the runs defined for the key (define_metric); null when none "
        "did or they disagree")
    best_cell: int | None = Field(
        description="with a goal: index (in summaries and runs) of the run whose last value "
        "is best, the first on ties; null without a goal or a comparable (non-NaN) value")


class Comparison(BaseModel):
    """Runs side by side."""

    runs: list[Run]
    params: list[ParamRow]
    metrics: list[MetricRow]


class MetricKey(BaseModel):
    """A key of a run."""

    key: str
    summary: Summary
    ranks: list[int]


class MetricKeys(BaseModel):
    """The keys of a run, by name."""

    keys: list[MetricKey]


class SeriesOut(BaseModel):
    """One series: a rank's, or (``rank`` null) an aggregate across ranks."""

    model_config = ConfigDict(json_schema_extra={"description": ENCODING_DOC})

    rank: int | None
    aggregate: Literal["per_rank", "mean", "min", "max"]
    steps: list[WireInt]
    values: list[WireFloat]
    wall_time_ns: list[WireInt]
    min_values: list[WireFloat] | None = Field(
        None, description="lower edge of the band, one per point (absent: no band): for "
        "aggregate=mean the minimum across ranks at that step; for a downsampled series "
        "the minimum of the bucket the point stands for (of the band, for a mean)")
    max_values: list[WireFloat] | None = Field(
        None, description="upper edge of the band (see min_values)")
    downsampled: bool
    total_points: int


class SeriesList(BaseModel):
    """Series of one key of a run."""

    series: list[SeriesOut]


class LogResult(BaseModel):
    """What a metrics write did (answered after commit)."""

    committed_through_seq: int
    points_written: int


class SessionInfo(BaseModel):
    """Who the session (or the key of the request) is."""

    role: Literal["viewer", "operator", "admin"]
    key_id: str | None
    csrf_token: str | None
    auth: bool


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"]


class Ready(BaseModel):
    """Readiness: the database answers and every migration is applied."""

    status: Literal["ready", "not ready"]
    detail: str
    schema_version: int | None


class ProblemField(BaseModel):
    """One invalid field."""

    field: str
    message: str
    position: int | None = None


class Problem(BaseModel):
    """An error (RFC 9457 problem details)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None
    code: str
    request_id: str | None = None
    errors: list[ProblemField] | None = None


ArtifactKindName = Literal["checkpoint", "model", "dataset", "other"]
VerifyStateName = Literal["unverified", "ok", "missing", "size_mismatch", "hash_mismatch",
                          "unchecked"]


class Artifact(BaseModel):
    """A recorded artifact: a reference to a file on shared storage, never the file."""

    run_id: str
    uri: str
    kind: ArtifactKindName
    step: WireInt | None
    size_bytes: WireInt | None
    sha256: str
    metadata: dict[str, str]
    rank: int
    created_at: datetime
    verify_state: VerifyStateName
    verify_detail: str
    verified_at: datetime | None


class ArtifactList(BaseModel):
    """A page of a run's artifacts, by step (none first), then uri."""

    artifacts: list[Artifact]
    next_page_token: str


class ArtifactIn(BaseModel):
    """One artifact to record."""

    model_config = ConfigDict(extra="forbid")

    uri: str = Field(description="absolute path on shared storage or a URI, no credentials")
    kind: ArtifactKindName = "checkpoint"
    step: Int64In | None = None
    size_bytes: Int64In | None = None
    sha256: str = ""
    metadata: dict[str, str] = Field(default_factory=dict)
    rank: Int32In = 0
    created_at: datetime | None = None


class ArtifactsIn(BaseModel):
    """Artifacts to record, idempotently on (run, uri, step)."""

    model_config = ConfigDict(extra="forbid")

    artifacts: list[ArtifactIn]


class ArtifactsLogged(BaseModel):
    """How many of the artifacts were new."""

    created: int
