"""Trial throughput: bitrobust's pattern-as-data trial vs the copy-and-edit approach, and the
dense (nested, for evaluation) vs sparse (for RandBET training) pattern samplers.

Most fault-injection tools deep-copy the model, overwrite its weights in place with faulty ones
and run it. bitrobust keeps the model untouched and runs it on substituted parameters
(``functional_call``), which makes a trial a pure function that can run anywhere. Both are
measured side by side in one run, on the same model, data and patterns, as a ratio; so are the
two samplers at p = 1 %.

    python benchmarks/bench_trials.py [--model mlp|lenet5|simplenet] [--trials 20]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from bitrobust.bits import sparse_flip_mask
from bitrobust.evaluate import QuantizedDeployment, clean_run, predict, run_trial
from bitrobust.faults import RandomBitErrors
from bitrobust.models import build_model
from bitrobust.quant import QuantizedModel, QuantScheme

SHAPES = {"mlp": (1, 28), "lenet5": (1, 28), "simplenet": (3, 32), "resnet20": (3, 32)}


def copy_and_edit_trial(model, qmodel, faults, seed, images, labels, clean):
    """The common approach: copy the model, write faulty weights in place, run the copy."""
    faulty_model = copy.deepcopy(model)
    faulty = faults.sample(qmodel, seed).apply(qmodel).dequantized()
    with torch.no_grad():
        for name, param in faulty_model.named_parameters():
            param.copy_(faulty[name])
        predictions = torch.cat(
            [faulty_model(images[i : i + 1000]).argmax(1) for i in range(0, len(images), 1000)]
        )
    return ((predictions != labels) | (clean != labels)).float().mean().item()


def timed(fn, repeats: int) -> float:
    start = time.perf_counter()
    for k in range(repeats):
        fn(k)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp", choices=sorted(SHAPES))
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--examples", type=int, default=2000)
    args = parser.parse_args()
    channels, size = SHAPES[args.model]
    torch.manual_seed(0)
    model = build_model(args.model, in_channels=channels, image_size=size, num_classes=10).eval()
    images = torch.rand(args.examples, channels, size, size)
    labels = torch.randint(0, 10, (args.examples,))
    scheme = QuantScheme.preset("rquant", bits=8)
    qmodel = QuantizedModel.from_module(model, scheme)
    clean = predict(model, qmodel.dequantized(), images)
    faults = RandomBitErrors(0.01)
    n_params = sum(p.numel() for p in model.parameters())

    deployment = QuantizedDeployment(model, scheme)
    data = (images, labels)
    clean_once = clean_run(deployment, data)
    ours = timed(lambda k: run_trial(deployment, faults, k, data, clean_once), args.trials)
    theirs = timed(
        lambda k: copy_and_edit_trial(model, qmodel, faults, k, images, labels, clean), args.trials
    )
    sample = timed(lambda k: faults.sample(qmodel, k), args.trials)
    generator = torch.Generator().manual_seed(0)
    sparse = timed(
        lambda k: [
            sparse_flip_mask(qt.shape, qt.scheme.bits, 0.01, generator)
            for qt in qmodel.tensors.values()
        ],
        args.trials,
    )
    quantize = timed(lambda k: QuantizedModel.from_module(model, scheme), args.trials)

    print(
        f"model {args.model}: {n_params:,} parameters, {args.examples} examples, "
        f"{args.trials} trials, {torch.get_num_threads()} threads"
    )
    print("| measurement | ms | ratio |")
    print("| --- | ---: | ---: |")
    print(f"| trial, copy-and-edit model | {1000 * theirs:.1f} | 1.00 |")
    print(f"| trial, bitrobust (pattern as data) | {1000 * ours:.1f} | {theirs / ours:.2f}x |")
    print(f"| sample one pattern, dense nested (evaluation) | {1000 * sample:.1f} | 1.00 |")
    print(
        f"| sample one pattern, sparse (training) | {1000 * sparse:.1f} | {sample / sparse:.1f}x |"
    )
    print(f"| quantize the model | {1000 * quantize:.1f} | |")


if __name__ == "__main__":
    main()
