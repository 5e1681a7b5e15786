"""Scraping ``GET /metrics`` in tests: the text parsed by prometheus_client's own parser."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def scrape(url: str, **headers: str) -> list[Sample]:
    """Every sample of one scrape of ``url`` (``http://host:port``)."""
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return [s for family in text_string_to_metric_families(response.text)
            for s in family.samples]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    found = [s for s in samples if s.name == name and _has(s.labels, labels)]
    assert found, f"no sample {name}{labels} in the scrape"
    return sum(s.value for s in found)


def by_worker(samples: list[Sample], name: str) -> dict[str, float]:
    """Values of ``name`` per ``worker`` label."""
    out: dict[str, float] = {}
    for s in samples:
        if s.name == name:
            out[s.labels["worker"]] = out.get(s.labels["worker"], 0.0) + s.value
    return out


def names(samples: list[Sample]) -> set[str]:
    """The sample names of a scrape (``_bucket``/``_count``/``_sum`` included)."""
    return {s.name for s in samples}


def _has(labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in wanted.items())
