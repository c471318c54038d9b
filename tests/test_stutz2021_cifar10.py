"""The CIFAR-10 Stutz study: its spec is its generator, and its committed numbers re-run."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("quick", [False, True])
def test_the_cifar10_spec_is_its_generator(quick):
    from bitrobust.experiments.campaigns import SPECS, packaged_spec
    from bitrobust.experiments.stutz2021_cifar10 import spec_text

    name = "stutz2021-cifar10" + ("-quick" if quick else "")
    assert (SPECS / f"{name}.toml").read_text() == spec_text(quick)
    spec, _ = packaged_spec(name)
    assert len(spec.models) == 7 and all(
        len(m.training_seeds) == (2 if quick else 3) for m in spec.models
    )
