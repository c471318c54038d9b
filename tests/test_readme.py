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


def test_the_readme_campaign_spec_is_valid():
    from bitrobust.campaign.spec import parse_spec

    text = README.read_text()
    campaigns = text[text.index("### Campaigns") :]
    spec = parse_spec(re.search(r"```toml\n(.*?)```", campaigns, re.S).group(1), "README")
    assert spec.models[0].training_seeds == [0, 1, 2] and spec.adaptive is not None
