"""The text `vidmamba predict` prints: ranked moments and the clips of highest saliency, on hand-made answers."""
from vidmamba.video.predict import SCORE_NOTE, format_table


def test_video_answer_table():
    answer = {"video": "my_video.mp4", "duration": 7.0, "clip_length": 2.0, "num_clips": 4, "cached": False,
              "results": [{"query": "a door opens", "windows": [[2.0, 6.0, 1.25], [0.0, 2.0, 0.5]],
                           "saliency": [0.1, 0.9, -0.2, 0.95]}]}
    lines = format_table(answer, top_clips=2).splitlines()
    assert lines[0] == "my_video.mp4: 7.00 s, 4 clips of 2 s"
    assert lines[2] == "query: a door opens"
    assert lines[3].split() == ["rank", "start", "end", "score"]
    assert lines[4].split() == ["1", "2.00", "6.00", "1.2500"] and lines[5].split() == ["2", "0.00", "2.00", "0.5000"]
    # clip 3 (6-8 s) ends at the video's end, 7 s; then clip 1 (2-4 s)
    assert lines[6] == "top clips by saliency: 6.00-7.00 s (0.95), 2.00-4.00 s (0.90)"
    assert lines[-1] == SCORE_NOTE and "--json" in SCORE_NOTE


def test_feature_file_answer_table_has_one_query_and_no_video_line():
    answer = {"query": "q", "windows": [[1.0, 3.0, 0.7]], "saliency": [0.3, 0.2], "clip_length": 1.0,
              "duration": None}
    lines = format_table(answer, top=1).splitlines()
    assert lines[:3] == ["", "query: q", lines[2]] and lines[3].split() == ["1", "1.00", "3.00", "0.7000"]
    assert lines[4] == "top clips by saliency: 0.00-1.00 s (0.30), 1.00-2.00 s (0.20)"
