"""The README's library example runs as written (on a tiny model and data)."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_library_example_runs(data_dir, capsys):
    text = README.read_text()
    library = text[text.index("## Library") :]
    code = re.search(r"```python\n(.*?)```", library, re.S).group(1)
    torch.manual_seed(0)
    images = torch.rand(64, 1, 8, 8)
    labels = torch.randint(0, 10, (64,))
    namespace = {
        "model": nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)),
        "images": images,
        "labels": labels,
        "train_images": images,
        "test_loader": DataLoader(TensorDataset(images, labels), batch_size=16),
    }
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102
    assert namespace["trial"].flips > 0 and namespace["trial"].faulty_macs > 0
    assert len(namespace["report"].results) == 2
    assert isinstance(namespace["faulty"], nn.Module)
