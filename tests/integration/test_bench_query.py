"""``devtools.bench_query`` runs both modes end to end against the session's OpenSearch node: in the
remote mode every request the handler makes is answered from the node's recorded answers."""

from __future__ import annotations

from pathlib import Path

from devtools import bench_query


def test_both_modes_measure_every_path_and_the_remote_one_replays_every_request(
    model_dir: Path, opensearch_url: str
) -> None:
    report = bench_query.run(
        model_dir=model_dir,
        documents=50,
        repeats=3,
        url=opensearch_url,
        modes=bench_query.MODES,
        remote=bench_query.Remote(knn_ms=(0.0, 0.0), connect_ms=0.0),
    )

    paths = {row["path"] for row in report["rows"]}
    for mode in bench_query.MODES:
        assert {f"{mode}: {bench_query.HANDLER}", f"{mode}: {bench_query.INDEX}"} <= paths
        assert {f"{mode}", f"{mode}, {bench_query.FRESH}"} <= set(report["summary"])
    replayed = report["remote"]["replayed"]
    assert replayed["unmatched"] == []  # the handler asked the node nothing the recording lacks
    assert replayed["connections"] == 0  # the handler's connection stayed open while timed
