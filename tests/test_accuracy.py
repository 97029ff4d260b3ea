"""The shipped defaults reach the published mnist1d accuracies (MLP ~68%, CNN ~94%)."""

from __future__ import annotations

import pytest

from conftest import train_run


@pytest.mark.slow
@pytest.mark.parametrize("model,floor", [("mlp", 0.62), ("cnn1d", 0.90)])
def test_published_accuracy(model, floor, tmp_path):
    s = train_run([f"model={model}", "trainer.progress=false"], tmp_path / model)
    assert s["status"] == "completed"
    assert s["test/acc"] >= floor, s
