from devmode.charts import SPLIT_COLOURS, label_distribution_figure


def test_label_distribution_stacks_splits_largest_label_on_top():
    counts = [
        {"label": "neutral", "split": "train", "count": 8},
        {"label": "neutral", "split": "test", "count": 1},
        {"label": "negative", "split": "train", "count": 3},
        {"label": "positive", "split": "validation", "count": 2},
    ]
    fig = label_distribution_figure(counts, "Labels")
    assert [t.name for t in fig.data] == list(SPLIT_COLOURS)
    assert list(fig.data[0].y) == ["positive", "negative", "neutral"]
    assert {t.name: list(t.x) for t in fig.data} == {
        "train": [0, 3, 8],
        "validation": [2, 0, 0],
        "test": [0, 0, 1],
    }
    assert fig.layout.barmode == "stack" and fig.layout.title.text == "Labels"
