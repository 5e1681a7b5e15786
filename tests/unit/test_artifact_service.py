"""ArtifactService against the in-memory fake: what is refused (and never echoed),
idempotence on (run, uri, step), filters, pages, verification outcomes."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.fakes.services import FakeServices
from tests.unit.test_experiment_service import fails
from tracker_server.domain.artifact_service import ArtifactIn, ArtifactService, VerificationIn
from tracker_server.domain.artifacts import ArtifactKind, ArtifactLimits, VerifyState
from tracker_server.domain.errors import Code

CKPT = int(ArtifactKind.CHECKPOINT)


@pytest.fixture
def fx() -> FakeServices:
    return FakeServices()


def _run(fx: FakeServices) -> str:
    eid = str(asyncio.run(fx.experiments.create_experiment("e"))[0].experiment_id)
    return str(asyncio.run(fx.runs.create_run(eid))[0].run_id)


def _uris(fx: FakeServices, run: str, **kw: object) -> list[tuple[int | None, str]]:
    page = asyncio.run(fx.artifacts.list_artifacts(run, **kw))  # type: ignore[arg-type]
    return [(a.step, a.uri) for a in page.items]


def test_log_is_idempotent_on_run_uri_step(fx: FakeServices) -> None:
    run = _run(fx)
    batch = [ArtifactIn("/shared/a.ckpt", CKPT, step=10, size_bytes=5),
             ArtifactIn("/shared/a.ckpt", CKPT, step=20, size_bytes=6),
             ArtifactIn("s3://bucket/model", int(ArtifactKind.MODEL))]
    assert asyncio.run(fx.artifacts.log_artifacts(run, batch)) == 3
    assert asyncio.run(fx.artifacts.log_artifacts(run, batch)) == 0
    assert _uris(fx, run) == [(None, "s3://bucket/model"), (10, "/shared/a.ckpt"),
                              (20, "/shared/a.ckpt")]


@pytest.mark.parametrize(("uri", "reason"), [
    ("", "empty"),
    ("/" + "x" * 2048, "too long"),
    ("ckpt/epoch=1.ckpt", "relative path"),
    ("/shared/a\nb", "control character"),
    ("s3://AKIAEXAMPLE:s3cr3tKEY@bucket/ckpt", "credentials"),
    ("https://host/ckpt?X-Amz-Signature=s3cr3tKEY&X-Amz-Credential=a", "credentials"),
    ("gs://tok3n@bucket/ckpt", "credentials"),
])
def test_bad_uris_are_refused_without_echo(fx: FakeServices, uri: str, reason: str) -> None:
    run = _run(fx)
    err = fails(fx.artifacts.log_artifacts(run, [ArtifactIn(uri, CKPT, step=1)]),
                Code.INVALID_ARGUMENT, "artifacts[0].uri")
    assert err.field_violations[0][1] == reason
    for secret in ("s3cr3tKEY", "AKIAEXAMPLE", "tok3n"):
        assert secret not in err.message
    assert _uris(fx, run) == []


@pytest.mark.parametrize(("artifact", "field"), [
    (ArtifactIn("/a", 0), "artifacts[0].kind"),
    (ArtifactIn("/a", 9), "artifacts[0].kind"),
    (ArtifactIn("/a", CKPT, size_bytes=-1), "artifacts[0].size_bytes"),
    (ArtifactIn("/a", CKPT, sha256="abc"), "artifacts[0].sha256"),
    (ArtifactIn("/a", CKPT, rank=-1), "artifacts[0].rank"),
    (ArtifactIn("/a", CKPT, metadata={f"k{i}": "v" for i in range(33)}), "artifacts[0].metadata"),
    (ArtifactIn("/a", CKPT, step=-(2**63)), "artifacts[0].step"),
])
def test_bad_fields_are_refused(fx: FakeServices, artifact: ArtifactIn, field: str) -> None:
    run = _run(fx)
    # A good artifact before the bad one: nothing of the call is written.
    fails(fx.artifacts.log_artifacts(run, [ArtifactIn("/ok", CKPT), artifact]),
          Code.INVALID_ARGUMENT, field.replace("[0]", "[1]"))
    assert _uris(fx, run) == []


def test_limits_are_configurable(fx: FakeServices) -> None:
    run = _run(fx)
    svc = ArtifactService(fx.artifact_store, ArtifactLimits(max_uri_bytes=10, max_per_call=2))
    asyncio.run(svc.log_artifacts(run, [ArtifactIn("/123456789", CKPT)]))
    fails(svc.log_artifacts(run, [ArtifactIn("/1234567890", CKPT)]), Code.INVALID_ARGUMENT,
          "artifacts[0].uri")
    fails(svc.log_artifacts(run, [ArtifactIn(f"/{i}", CKPT) for i in range(3)]),
          Code.INVALID_ARGUMENT, "artifacts")
    fails(svc.log_artifacts(run, []), Code.INVALID_ARGUMENT, "artifacts")


def test_filters_pages_and_unknown_run(fx: FakeServices) -> None:
    run = _run(fx)
    asyncio.run(fx.artifacts.log_artifacts(run, [
        *(ArtifactIn(f"/c/{s}.ckpt", CKPT, step=s) for s in range(0, 50, 10)),
        ArtifactIn("/d/set", int(ArtifactKind.DATASET))]))
    assert _uris(fx, run, kinds=[int(ArtifactKind.DATASET)]) == [(None, "/d/set")]
    assert _uris(fx, run, min_step=15, max_step=30) == [(20, "/c/20.ckpt"), (30, "/c/30.ckpt")]
    seen, token = [], ""
    while True:
        page = asyncio.run(fx.artifacts.list_artifacts(run, page_size=4, page_token=token))
        seen += [a.uri for a in page.items]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["/d/set", *(f"/c/{s}.ckpt" for s in range(0, 50, 10))]
    fails(fx.artifacts.list_artifacts(run, min_step=5, max_step=1), Code.INVALID_ARGUMENT,
          "min_step")
    fails(fx.artifacts.list_artifacts(run, kinds=[0]), Code.INVALID_ARGUMENT, "kinds")
    fails(fx.artifacts.list_artifacts(str(uuid.uuid4())), Code.NOT_FOUND)
    fails(fx.artifacts.list_artifacts("nope"), Code.INVALID_ARGUMENT, "run_id")


def test_verification_is_stored_and_reset_by_a_changed_file(fx: FakeServices) -> None:
    run = _run(fx)
    asyncio.run(fx.artifacts.log_artifacts(run, [ArtifactIn("/a", CKPT, step=1, size_bytes=3)]))
    asyncio.run(fx.artifacts.record_verification(run, [
        VerificationIn("/a", 1, int(VerifyState.MISSING), "no such file")]))
    (a,) = asyncio.run(fx.artifacts.list_artifacts(run)).items
    assert (a.verify_state, a.verify_detail) == (VerifyState.MISSING, "no such file")
    fails(fx.artifacts.record_verification(run, [VerificationIn("/a", 2, 1)]), Code.NOT_FOUND)
    fails(fx.artifacts.record_verification(run, [VerificationIn("/a", 1, 0)]),
          Code.INVALID_ARGUMENT, "results[0].state")
    # Same size again: the outcome stays; another size: it is gone.
    asyncio.run(fx.artifacts.log_artifacts(run, [ArtifactIn("/a", CKPT, step=1, size_bytes=3)]))
    assert asyncio.run(fx.artifacts.list_artifacts(run)).items[0].verify_state \
        == VerifyState.MISSING
    asyncio.run(fx.artifacts.log_artifacts(run, [ArtifactIn("/a", CKPT, step=1, size_bytes=4)]))
    assert asyncio.run(fx.artifacts.list_artifacts(run)).items[0].verify_state \
        == VerifyState.UNVERIFIED
