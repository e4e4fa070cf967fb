"""The daemon's Prometheus endpoint, scraped over real HTTP while the daemon tags photos."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from photoscribe.errors import ConfigError
from photoscribe.records import State

from fixtures.daemon import running_daemon, wait_until, write_photo

FAST = {"settle_seconds": 0.3, "batch_wait": 0.2, "caption_retry_seconds": 0.5}


def config(make_config, folder: Path, base_url: str, port: int = 0):
    return make_config(
        base_url,
        watch={"folders": [str(folder)], **FAST},
        llm={"timeout": 3, "retries": 0, "cooldown": 0.5},
        metrics={"enabled": True, "port": port},
    )


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_follow_the_daemon_while_it_works(make_config, tmp_path: Path, fake_llm) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    with running_daemon(config(make_config, photos, fake_llm.base_url)) as daemon:
        port = daemon._metrics_server.port
        assert daemon._metrics_server._server.server_address[0] == "127.0.0.1"
        first = scrape(port)
        assert first[("photoscribe_model_loaded", ())] == 1
        assert ("photoscribe_photos_total", (("outcome", "tagged+caption"),)) not in first
        info = next(k for k in first if k[0] == "photoscribe_build_info")
        assert dict(info[1])["clip_model"] == daemon.tagger.encoder.model_id
        for i in range(3):
            write_photo(photos / f"照片{i}.jpg", i)

        def all_done() -> bool:
            done = [r for r in daemon.store.rows_under(photos) if r.state is State.DONE]
            return len(done) == 3 and daemon.queue.depth() == 0

        wait_until(all_done, what="3 photos done")
        wait_until(  # the gauges follow on the next housekeeping pass
            lambda: (
                scrape(port)[("photoscribe_queue_depth", ())] == 0
                and scrape(port)[("photoscribe_photos_in_progress", ())] == 0
            ),
            what="queue gauges at zero",
        )
        after = scrape(port)
    assert after[("photoscribe_photos_total", (("outcome", "tagged+caption"),))] == 3
    for stage in ("decode", "tag", "caption", "write"):  # every photo went through each
        count = after[("photoscribe_stage_duration_seconds_count", (("stage", stage),))]
        assert count >= 3, (stage, count)
    assert after[("photoscribe_llm_up", ())] == 1
    assert after[("photoscribe_captions_waiting", ())] == 0


def test_a_taken_port_stops_the_start_and_names_the_key(
    make_config, tmp_path: Path, fake_llm
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with (
            pytest.raises(ConfigError, match=r"metrics\.port"),
            running_daemon(config(make_config, photos, fake_llm.base_url, port)),
        ):
            pass


def test_metrics_are_off_by_default(make_config, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    cfg = make_config(watch={"folders": [str(photos)], **FAST}, llm={"enabled": False})
    assert not cfg.metrics.enabled
    with running_daemon(cfg) as daemon:
        assert daemon._metrics_server is None
        assert not daemon.metrics.enabled
