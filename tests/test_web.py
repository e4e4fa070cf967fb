"""`photoscribe serve` as a real process over a real index (a scan with the tiny CLIP),
tried over HTTP and in headless Chromium (Debian's chromium + chromedriver, via Selenium)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from PIL import Image

from photoscribe.cli import main
from photoscribe.store import open_store

from conftest import tiny_config_dict
from fixtures.synthetic import draw_shape

ARTIFACTS = Path(  # screenshots; .gitignore'd
    os.environ.get("PHOTOSCRIBE_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts")
)
CAPTIONS = {  # name → the caption the index gets (as if from the LLM)
    "ball1.jpg": "A red ball on the beach.",
    "ball2.jpg": "海边的红色皮球。",
    "ball3.jpg": "Another red ball, near the sea.",
    "box1.jpg": "A blue box on the sofa.",
    "box2.jpg": "沙发上的蓝色盒子。",
    "box3.jpg": "猫在沙发上睡觉。",
}


def photo(path: Path, name: str, seed: int, orientation: int | None = None) -> None:
    colour, shape = ("red", "circle") if name.startswith("ball") else ("blue", "square")
    img = draw_shape(colour, shape, size=(320, 240), seed=seed)
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    img.save(path / name, quality=90, exif=exif)


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> tuple[Path, dict]:
    """A scanned library (keywords + embeddings from the tiny CLIP), captions set, plus a
    scanned photo outside the served folder."""
    tmp = tmp_path_factory.mktemp("web")
    photos, elsewhere = tmp / "照片", tmp / "elsewhere"
    photos.mkdir()
    elsewhere.mkdir()
    for seed, name in enumerate(CAPTIONS):
        photo(photos, name, seed, orientation=6 if name == "ball1.jpg" else None)
    photo(elsewhere, "ball9.jpg", 9)
    raw = tiny_config_dict(tmp)
    raw["llm"] = {"enabled": False}
    raw["web"] = {"roots": [str(photos)]}
    # The tiny CLIP's text→image cosines are all low and close: at this threshold the text
    # tower runs (kept warm) but only full-text matches are results, so each query has one
    # right answer. "More like this" (image→image) has no threshold.
    raw["search"] = {"min_similarity": 0.99}
    config_file = tmp / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    assert main(["--config", str(config_file), "scan", str(photos), str(elsewhere)]) == 0
    store = open_store(Path(raw["index_path"]))
    for name, caption in CAPTIONS.items():
        row = store.by_path(photos / name)
        store.save_caption(row.id, caption, None)
    store.close()
    return config_file, raw


@pytest.fixture(scope="module")
def server(library) -> Iterator[str]:
    config_file, _ = library
    proc = subprocess.Popen(
        [sys.executable, "-m", "photoscribe", "--config", str(config_file), "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline().strip()
    if not line.startswith("serving http://"):
        proc.kill()
        pytest.fail(f"serve did not start: {line!r} {proc.stderr.read()}")
    try:
        yield line.removeprefix("serving ").rstrip("/")
    finally:
        proc.terminate()
        assert proc.wait(20) == 0, proc.stderr.read()


def get(base: str, path: str, host: str | None = None, method: str = "GET"):
    """(status, headers, body) — http.client, so that the Host header and a raw path with
    ../ travel exactly as given."""
    parts = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Host": host} if host else {}
    conn.request(method, path, headers=headers)
    reply = conn.getresponse()
    body = reply.read()
    conn.close()
    return reply.status, {k.lower(): v for k, v in reply.getheaders()}, body


def search_json(base: str, query: str) -> list[dict]:
    status, _, body = get(base, "/?format=json&q=" + urllib.parse.quote(query))
    assert status == 200, body
    return json.loads(body)["results"]


def names(results: list[dict]) -> set[str]:
    return {r["name"] for r in results}


def test_text_search_in_english_and_chinese(server: str) -> None:
    assert names(search_json(server, "beach")) == {"ball1.jpg"}
    assert names(search_json(server, "海边")) == {"ball2.jpg"}
    assert names(search_json(server, "沙发")) == {"box2.jpg", "box3.jpg"}
    assert names(search_json(server, "red ball")) == {"ball1.jpg", "ball3.jpg"}


def test_more_like_this_ranks_by_the_image(server: str) -> None:
    (ball,) = search_json(server, "beach")
    status, _, body = get(server, ball["page"] + "/similar?format=json")
    alike = [r["name"] for r in json.loads(body)["results"]]
    assert status == 200 and "ball1.jpg" not in alike  # itself left out
    assert set(alike[:2]) == {"ball2.jpg", "ball3.jpg"}, alike  # red circles before squares
    assert "ball9.jpg" not in alike  # indexed, but outside web.roots


def test_thumbnails_are_small_upright_webp(server: str, library) -> None:
    (hit,) = search_json(server, "beach")  # ball1: 320×240 stored, EXIF orientation 6
    status, headers, body = get(server, hit["thumbnail"])
    assert status == 200 and headers["content-type"] == "image/webp"
    cache = Path(library[1]["cache_dir"]) / "thumbs"
    (thumb,) = [p for p in cache.rglob("*-256.webp")]
    assert thumb.read_bytes() == body  # made once, then served from the cache
    with Image.open(thumb) as img:
        assert img.format == "WEBP" and img.size == (192, 256)  # turned upright, long side 256


def test_refuses_foreign_hosts_paths_and_state_changes(server: str, library) -> None:
    assert get(server, "/", host="evil.example:80")[0] == 400  # DNS rebinding
    for path in ("/thumb/1/../../../../etc/passwd", "/static/../../../etc/passwd", "/etc/passwd"):
        status, _, body = get(server, path)
        assert status == 404 and b"root:" not in body, path
    assert get(server, "/", method="POST")[0] == 405
    headers = get(server, "/")[1]
    assert "default-src 'self'" in headers["content-security-policy"]
    store = open_store(Path(library[1]["index_path"]), readonly=True)
    outside = store.by_path(Path(library[1]["index_path"]).parent.parent / "elsewhere/ball9.jpg")
    store.close()
    for path in (f"/thumb/{outside.id}/small", f"/original/{outside.id}", f"/photo/{outside.id}"):
        assert get(server, path)[0] == 404, path  # indexed, but outside web.roots
    assert get(server, "/photo/999999")[0] == 404


def test_status_page_lists_the_index(server: str) -> None:
    status, _, body = get(server, "/status?format=json")
    report = json.loads(body)
    assert status == 200 and report["report"]["counts"]["done"] == len(CAPTIONS)


def chromium():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver must be installed (.ci/run installs them)")
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def test_in_a_real_browser(server: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser = chromium()
    wait = WebDriverWait(browser, 30)

    def shown() -> list[str]:
        wait.until(ec.presence_of_element_located((By.ID, "results")))
        hits = browser.find_elements(By.CSS_SELECTOR, "#results .hit img")
        wait.until(
            lambda _: all(
                browser.execute_script(
                    "return arguments[0].complete && arguments[0].naturalWidth > 0", i
                )
                for i in hits
            )
        )
        return [h.get_attribute("alt") for h in hits]

    try:
        browser.get(server + "/")
        box = browser.find_element(By.ID, "q")
        box.send_keys("沙发", Keys.ENTER)
        assert set(shown()) == {CAPTIONS["box2.jpg"], CAPTIONS["box3.jpg"]}
        box = browser.find_element(By.ID, "q")
        box.clear()
        box.send_keys("red ball", Keys.ENTER)
        assert set(shown()) == {CAPTIONS["ball1.jpg"], CAPTIONS["ball3.jpg"]}
        browser.find_element(
            By.CSS_SELECTOR, f'#results img[alt="{CAPTIONS["ball1.jpg"]}"]'
        ).click()
        wait.until(ec.presence_of_element_located((By.ID, "more-like-this")))
        assert browser.find_element(By.ID, "caption").text == CAPTIONS["ball1.jpg"]
        browser.find_element(By.ID, "more-like-this").click()
        alike = shown()  # the other red circles first, then the blue squares
        assert set(alike[:2]) == {CAPTIONS["ball2.jpg"], CAPTIONS["ball3.jpg"]}, alike
        assert len(alike) == len(CAPTIONS) - 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "test-web-more-like-this.png"))
        browser.get(server + "/status")
        assert "not running" in browser.find_element(By.ID, "daemon").text
    finally:
        browser.quit()
