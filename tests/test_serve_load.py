"""``vidmamba serve`` under load, through the public ``serve`` and a real HTTP client on 127.0.0.1: concurrent
requests run in parallel up to ``workers`` (never more), and the server keeps the state of at most ``SESSIONS``
sessions however many sessions come (gradio keeps a copy of the page config per session: the memory that grew)."""
import socket
import threading
import time
import uuid

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_requests_run_in_parallel_up_to_the_workers_and_sessions_are_bounded(tmp_path, monkeypatch):
    pytest.importorskip("gradio", reason="gradio not installed (pip install 'vidmamba[demo]')")
    gradio_client = pytest.importorskip("gradio_client")
    pytest.importorskip("av", reason="PyAV not installed (pip install 'vidmamba[video]')")
    import vidmamba.serve as serve_module
    from vidmamba.video.synthetic import write_video

    video = write_video(tmp_path / "v.mp4", [i / 4 for i in range(32)], height=32, width=48)  # 8 s
    monkeypatch.setattr(serve_module, "SESSIONS", 3)
    lock, running, peak = threading.Lock(), [0], [0]

    def predict_fn(path, queries):  # holds its request for 1 s and records how many run at once
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(1.0)
        with lock:
            running[0] -= 1
        return {"duration": 8.0, "clip_length": 2.0,
                "results": [{"query": q, "windows": [[2.0, 4.0, 0.9]], "saliency": [0.1, 0.9, 0.2, 0.1]}
                            for q in queries]}

    app = serve_module.serve(predict_fn, host="127.0.0.1", port=_free_port(), workers=2, prevent_thread_lock=True,
                             quiet=True)
    try:
        answers, errors = [], []

        def ask():
            try:
                client = gradio_client.Client(app.local_url, verbose=False, download_files=False)
                client.session_hash = uuid.uuid4().hex  # a new session, as a new browser tab
                out = client.predict(gradio_client.handle_file(str(video)), "", "a dog", api_name="/analyse")
                answers.append(out[-2])
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(repr(exc))

        t0 = time.perf_counter()
        threads = [threading.Thread(target=ask) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        wall = time.perf_counter() - t0
        assert not errors and len(answers) == 6, errors
        assert all('data-seek="2.000"' in a for a in answers)
        assert peak[0] == 2  # two at once (the workers), never more
        assert wall < 6 * 1.0 + 20  # sanity bound on a busy machine; the overlap itself is checked by peak
        assert len(app.state_holder.session_data) <= 3  # 6 sessions came, 3 are kept
    finally:
        app.close()
