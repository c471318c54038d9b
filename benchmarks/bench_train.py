"""Cost of a RandBET training epoch relative to a normal (quantization-aware) epoch.

RandBET runs a second forward/backward pass per step on weights with a fresh random bit error
pattern, so its epoch costs at least about twice a normal one; everything above that is the
cost of producing the perturbed weights. Epochs of both methods are interleaved (same model,
data, batch size, one CPU thread) and the ratio of the medians is reported. The curriculum
threshold is set so high that the perturbed pass runs on every step (the worst case).

    python benchmarks/bench_train.py [--model mlp] [--examples 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bitrobust.data import load_splits, subset
from bitrobust.models import build_model
from bitrobust.quant import QuantScheme
from bitrobust.train import TrainConfig, train


def epoch_seconds(method: str, model_name: str, train_set, bits: int) -> float:
    torch.manual_seed(0)
    model = build_model(model_name, in_channels=1, image_size=28, num_classes=10)
    w_max = None if method == "normal" else 0.1
    scheme = QuantScheme.preset("rquant", bits=bits, w_max=w_max)
    options = {"w_max": 0.1, "curriculum_threshold": 1e9} if method == "randbet" else {}
    config = TrainConfig(method=method, epochs=1, progress=False, **options)
    start = time.perf_counter()
    history = train(model, scheme, train_set, config, device="cpu")
    seconds = time.perf_counter() - start
    if method == "randbet":
        assert history.perturbed_fraction[-1] > 0.95
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--examples", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bits", type=int, default=8)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train_set, _ = load_splits("mnist", args.data_dir)
    train_set = subset(train_set, args.examples)
    times: dict[str, list[float]] = {"normal": [], "randbet": []}
    epoch_seconds("normal", args.model, train_set, args.bits)  # warm up
    for _ in range(args.rounds):
        for method in times:
            times[method].append(epoch_seconds(method, args.model, train_set, args.bits))
    normal, randbet = (statistics.median(times[m]) for m in ("normal", "randbet"))
    print(
        f"{args.model}, {len(train_set)} examples, {args.bits}-bit, 1 thread, "
        f"median of {args.rounds}: normal {normal:.3f} s, randbet {randbet:.3f} s, "
        f"ratio {randbet / normal:.2f}x"
    )


if __name__ == "__main__":
    main()
