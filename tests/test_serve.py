"""`vidmamba serve`: input checks, and the app in headless Chromium (Debian's chromium + chromedriver, selenium):
a query on a generated video shows ranked moments, clicking one seeks the player, two sessions stay apart."""
import shutil
import socket
import time

import pytest
import torch

from vidmamba.serve import check_result, moments_html, parse_queries, resolve_server_video

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000"]


def test_parse_queries_and_result_contract():
    assert parse_queries(" a dog runs \n\n  a cat sleeps ") == ["a dog runs", "a cat sleeps"]
    with pytest.raises(ValueError, match="at least one query"):
        parse_queries(" \n ")
    good = {"duration": 8.0, "clip_length": 2.0, "results": [{"query": "q", "windows": [], "saliency": [0] * 4}]}
    assert check_result(good, ["q"]) is good
    with pytest.raises(ValueError, match=r"results are for queries \['q'\], expected \['other'\]"):
        check_result(good, ["other"])
    with pytest.raises(ValueError, match=r"duration = 0, expected a positive"):
        check_result({**good, "duration": 0}, ["q"])
    with pytest.raises(ValueError, match=r"results\[0\] lacks 'windows'"):
        check_result({**good, "results": [{"query": "q", "saliency": []}]}, ["q"])


def test_server_paths_stay_inside_the_video_dir(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(b"x")
    (tmp_path / "secret.mp4").write_bytes(b"x")
    assert resolve_server_video("a.mp4", tmp_path / "videos") == (tmp_path / "videos" / "a.mp4").resolve()
    with pytest.raises(ValueError, match="outside the allowed video folder"):
        resolve_server_video("../secret.mp4", tmp_path / "videos")
    with pytest.raises(ValueError, match="outside the allowed video folder"):
        resolve_server_video(str(tmp_path / "secret.mp4"), tmp_path / "videos")
    with pytest.raises(ValueError, match="no video file 'b.mp4'"):
        resolve_server_video("b.mp4", tmp_path / "videos")
    with pytest.raises(ValueError, match="server-side paths are disabled"):
        resolve_server_video("a.mp4", None)


def test_moments_html_escapes_the_query():
    text = moments_html("<img src=x onerror=alert(1)>", [[2.0, 6.0, 0.9]], 2.0)
    assert "<img" not in text and "&lt;img" in text and 'data-seek="2.000"' in text


# ---------------------------------------------------------------------------------------------------------- browser
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    pytest.importorskip("gradio", reason="gradio not installed (pip install 'vidmamba[demo]')")
    pytest.importorskip("selenium", reason="selenium not installed (pip install 'vidmamba[dev]')")
    pytest.importorskip("av", reason="PyAV not installed (pip install 'vidmamba[video]')")
    pytest.importorskip("transformers", reason="transformers not installed")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install chromium "
                    "chromium-driver)")
    from vidmamba.engine.checkpoint import save_checkpoint
    from vidmamba.tasks import export_pretrained
    from vidmamba.models import create_model
    from vidmamba.serve import make_predictor, serve
    from vidmamba.video.encoders import save_tiny_clip
    from vidmamba.video.synthetic import write_video

    tmp = tmp_path_factory.mktemp("serve")
    clip = save_tiny_clip(tmp / "clip", image_dim=16, text_dim=16)
    torch.manual_seed(0)
    model = create_model("mlvtg", video_dim=16, text_dim=16, hidden_dim=16, num_layers=1)
    experiment = {"task": "qvhighlights", "model": {"name": "mlvtg", "video_dim": 16, "text_dim": 16,
                                                    "hidden_dim": 16, "num_layers": 1, "clip_length": 2.0},
                  "data": {"dataset": "qvhighlight", "feature_root": ".", "video_features": ["clip_features"],
                           "video_dims": [16], "text_features": "clip_text_features", "text_dim": 16},
                  "train": {}}
    save_checkpoint(tmp / "run" / "best", model, config={"model": experiment})
    export_pretrained(tmp / "run", tmp / "pretrained")  # what a user is given
    # 24 s, 12 clips; VP8 webm, which Chromium plays (so seeking is real, not on an unloaded element)
    video = write_video(tmp / "video.webm", [i / 4 for i in range(96)], height=64, width=96, codec="libvpx")
    predict_fn = make_predictor(tmp / "pretrained", clip, cache_dir=tmp / "cache")
    app = serve(predict_fn, port=_free_port(), prevent_thread_lock=True, quiet=True)
    yield app.local_url, video
    app.close()


def _browser(tmp_path, name):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={tmp_path / name}"]:
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def _ask(driver, url, video, query):
    """Open the app, upload ``video``, submit ``query``; returns the moment buttons once they appear."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 60)
    driver.get(url)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#vm-player input[type=file]"))
    driver.find_element(By.CSS_SELECTOR, "#vm-player input[type=file]").send_keys(str(video))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#vm-player video"))
    driver.find_element(By.CSS_SELECTOR, "#vm-queries textarea").send_keys(query)
    driver.find_element(By.CSS_SELECTOR, "#vm-run").click()
    return wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#vm-moments button.vm-moment"))


def _shown_query(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, "#vm-moments .vm-moments b").text


@pytest.mark.slow
def test_browser_query_seek_and_separate_sessions(app_url, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, video = app_url
    a = _browser(tmp_path, "a")
    b = None
    try:
        buttons = _ask(a, url, video, "a person opens the door")
        assert _shown_query(a) == "a person opens the door"
        starts = [float(x.get_attribute("data-seek")) for x in buttons]
        assert 1 <= len(starts) <= 10 and all(0 <= s < 24 for s in starts)
        # the saliency plot came back as an image
        WebDriverWait(a, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#vm-plot img"))
        # clicking a moment seeks the player to its start (pick one away from 0 so the check can fail)
        target = max(range(len(starts)), key=lambda k: starts[k])
        assert starts[target] > 0
        player = "let v = document.querySelector('#vm-player video'); return [v.readyState, v.duration, v.currentTime]"
        WebDriverWait(a, 30).until(lambda d: d.execute_script(player)[0] >= 1)  # metadata loaded: a playable video
        assert abs(a.execute_script(player)[1] - 24.0) < 0.5
        buttons[target].click()
        WebDriverWait(a, 10).until(lambda d: abs(d.execute_script(player)[2] - starts[target]) < 0.3)

        b = _browser(tmp_path, "b")
        b.get(url)
        WebDriverWait(b, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#vm-moments"))
        time.sleep(1.0)
        assert not b.find_elements(By.CSS_SELECTOR, "#vm-moments button.vm-moment")  # A's answer is not B's
        _ask(b, url, video, "someone pours water\na dog barks")
        assert _shown_query(b) == "someone pours water"
        # B picks its second query: rendered from B's own stored result
        b.find_element(By.CSS_SELECTOR, "#vm-choice input").click()
        option = "li[data-testid='dropdown-option'][aria-label='a dog barks']"
        WebDriverWait(b, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, option))[0].click()
        WebDriverWait(b, 30).until(lambda d: _shown_query(d) == "a dog barks")
        assert _shown_query(a) == "a person opens the door"  # B's answers did not reach A
    finally:
        a.quit()
        if b is not None:
            b.quit()
