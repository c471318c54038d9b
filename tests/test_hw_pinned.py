"""Emulated accelerator outputs pinned bit for bit (recorded before the fault-contract redesign):
LeNet-5 on exact, Mitchell and truncated multipliers, TPU- and GPU-like arrays, product and
accumulator faults, a layer-restricted fault."""

from __future__ import annotations

import hashlib

import pytest
import torch

from bitrobust.faults import FaultPattern
from bitrobust.hw.accelerator import GPUArray, PEFaults, SystolicArray
from bitrobust.hw.deploy import deploy
from bitrobust.models import build_model

ARRAYS = {"tpu8": SystolicArray(8), "gpu64": GPUArray(64)}

PINNED = [
    ("exact8u", "tpu8", None, "ac821ca1ae2e198a"),
    ("exact8u", "tpu8", PEFaults(0.3, 12, 1, "product", None), "5a42847f246bd056"),
    ("exact8u", "tpu8", PEFaults(0.3, 14, 0, "product", None), "fbf49ed03cc846c8"),
    ("exact8u", "tpu8", PEFaults(0.2, 20, 1, "accumulator", None), "ce8e44c482f94880"),
    ("exact8u", "tpu8", PEFaults(0.5, 3, 1, "product", "features.0"), "ecdc199a2c3ddc37"),
    ("exact8u", "gpu64", None, "ac821ca1ae2e198a"),
    ("exact8u", "gpu64", PEFaults(0.3, 12, 1, "product", None), "bd496c13416c7653"),
    ("exact8u", "gpu64", PEFaults(0.3, 14, 0, "product", None), "a6af0b0149e094a6"),
    ("exact8u", "gpu64", PEFaults(0.2, 20, 1, "accumulator", None), "080059e0f5139bfd"),
    ("exact8u", "gpu64", PEFaults(0.5, 3, 1, "product", "features.0"), "13dc02753acd28a2"),
    ("exact8s", "tpu8", None, "23ef9b752e35e662"),
    ("exact8s", "tpu8", PEFaults(0.3, 12, 1, "product", None), "399b14880e22602d"),
    ("exact8s", "tpu8", PEFaults(0.3, 14, 0, "product", None), "e041bbc9fd62e51c"),
    ("exact8s", "tpu8", PEFaults(0.2, 20, 1, "accumulator", None), "c68c285504859df4"),
    ("exact8s", "tpu8", PEFaults(0.5, 3, 1, "product", "features.0"), "e00d9384cd507c1c"),
    ("exact8s", "gpu64", None, "23ef9b752e35e662"),
    ("exact8s", "gpu64", PEFaults(0.3, 12, 1, "product", None), "5f6823c13bb59594"),
    ("exact8s", "gpu64", PEFaults(0.3, 14, 0, "product", None), "4cd1bd718a3e7115"),
    ("exact8s", "gpu64", PEFaults(0.2, 20, 1, "accumulator", None), "cf6f865a9dcf8132"),
    ("exact8s", "gpu64", PEFaults(0.5, 3, 1, "product", "features.0"), "31db78d55a881f7a"),
    ("mitchell8u", "tpu8", None, "94db5683f6a42b76"),
    ("mitchell8u", "tpu8", PEFaults(0.3, 12, 1, "product", None), "fd54c277fc387bb0"),
    ("mitchell8u", "tpu8", PEFaults(0.3, 14, 0, "product", None), "3355d8a82a491dce"),
    ("mitchell8u", "tpu8", PEFaults(0.2, 20, 1, "accumulator", None), "c36d5e225d16e5e2"),
    ("mitchell8u", "tpu8", PEFaults(0.5, 3, 1, "product", "features.0"), "8968f6b9742a45c5"),
    ("mitchell8u", "gpu64", None, "94db5683f6a42b76"),
    ("mitchell8u", "gpu64", PEFaults(0.3, 12, 1, "product", None), "7d0286fd89a6a021"),
    ("mitchell8u", "gpu64", PEFaults(0.3, 14, 0, "product", None), "88503ccfebe9253d"),
    ("mitchell8u", "gpu64", PEFaults(0.2, 20, 1, "accumulator", None), "35fd7e57e0fef4b3"),
    ("mitchell8u", "gpu64", PEFaults(0.5, 3, 1, "product", "features.0"), "2970213e7d2c38f6"),
    ("trunc8u_k2", "tpu8", None, "3d1a0628c8f83f89"),
    ("trunc8u_k2", "tpu8", PEFaults(0.3, 12, 1, "product", None), "02fc390cc4b910df"),
    ("trunc8u_k2", "tpu8", PEFaults(0.3, 14, 0, "product", None), "0e2843e7312d53d0"),
    ("trunc8u_k2", "tpu8", PEFaults(0.2, 20, 1, "accumulator", None), "2ddfbfdf6b48fe47"),
    ("trunc8u_k2", "tpu8", PEFaults(0.5, 3, 1, "product", "features.0"), "5c2404f3bf0a92dd"),
    ("trunc8u_k2", "gpu64", None, "3d1a0628c8f83f89"),
    ("trunc8u_k2", "gpu64", PEFaults(0.3, 12, 1, "product", None), "66042fe7dfbec3b8"),
    ("trunc8u_k2", "gpu64", PEFaults(0.3, 14, 0, "product", None), "9b953bbd90125b56"),
    ("trunc8u_k2", "gpu64", PEFaults(0.2, 20, 1, "accumulator", None), "9f6ece47bfcf2ee9"),
    ("trunc8u_k2", "gpu64", PEFaults(0.5, 3, 1, "product", "features.0"), "d66c7ebf926fa5df"),
]


@pytest.fixture(scope="module")
def lenet_and_images():
    torch.manual_seed(0)
    model = build_model("lenet5", in_channels=1, image_size=28, num_classes=10).eval()
    images = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    return model, images


@pytest.mark.parametrize(("multiplier", "array", "faults", "digest"), PINNED)
def test_emulated_outputs_are_pinned(lenet_and_images, multiplier, array, faults, digest):
    """The PE fault pattern of a seed and the faulty outputs are the same as before faults
    became patterns activated per forward pass."""
    model, images = lenet_and_images
    deployment = deploy(model, multiplier, ARRAYS[array], calibration=images[:32])
    pattern = FaultPattern() if faults is None else faults.sample(deployment.target, seed=5)
    with torch.no_grad():
        outputs = deployment.faulty_module(pattern)(images)
    assert hashlib.sha256(outputs.numpy().tobytes()).hexdigest()[:16] == digest
