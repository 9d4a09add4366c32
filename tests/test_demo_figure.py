"""The demo figure (demo.plot_examples): a title, a meaningful y axis and a legend, on hand-made predictions."""
import numpy as np
import pytest

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402

from vidmamba.demo import MODELS, plot_examples  # noqa: E402


def test_demo_figure_has_title_y_axis_and_legend(tmp_path):
    gt = [{"qid": q, "query": f"person opens door {q}", "duration": 20.0, "relevant_windows": [[4.0, 8.0]]}
          for q in (1, 2)]
    preds = {name: [{"qid": g["qid"], "pred_relevant_windows": [[2.0 + k, 9.0 + k, 0.9]],
                     "pred_saliency_scores": np.sin(np.arange(10) + k).tolist()} for g in gt]
             for k, name in enumerate(MODELS)}
    fig = plot_examples(tmp_path / "figure.png", gt, preds, n=2)
    assert fig._suptitle.get_text().startswith("Synthetic grounding benchmark (val): ground truth")
    for ax in fig.axes:
        assert ax.get_ylabel() == "saliency\n(scaled)" and list(ax.get_yticks()) == [0, 1]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["ground truth"] + [f"{label}: top-1" for label in MODELS.values()] + ["MLVTG saliency"]
    with Image.open(tmp_path / "figure.png") as im:
        assert im.format == "PNG" and im.size == (1000, 440)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png"]


def test_demo_table_fits_80_columns_with_readable_names():
    from vidmamba.demo import TABLE_METRICS, format_table
    brief = {key: 12.345 for key in TABLE_METRICS}
    table = format_table({"mlvtg": brief, "random": brief}).splitlines()
    assert table[0].split() == ["model", "R1@0.5", "R1@0.7", "mAP", "HL", "mAP", "HL", "Hit1"]
    assert table[1].startswith("MLVTG (Mamba aligner)") and table[1].split()[-5:] == ["12.35"] * 5
    assert table[2].startswith("random ")
    assert max(map(len, table)) <= 80
