"""A printer for the training loop's callbacks: on a terminal, a progress bar per epoch; one
line per epoch (``epoch 3/10  loss 0.4213  12.5 s``) whenever the stream is not a terminal
(logs, pipes), so that a long run shows how far it got."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from bitrobust.train.config import StepReport, TrainHistory


class TrainingPrinter:
    """``on_step`` and ``on_epoch`` callbacks that report to ``stream`` (default stderr).

    ``bar``: a tqdm bar per epoch (default: when the stream is a terminal); ``lines``: one line
    per epoch (default: when it is not), through ``write`` when given (e.g. a logger)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        bar: bool | None = None,
        lines: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        write: Callable[[str], None] | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.write = write or (lambda line: print(line, file=self.stream, flush=True))
        terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar = terminal if bar is None else bar
        self.lines = (not terminal) if lines is None else lines
        self.clock = clock
        self._progress: Any = None
        self._epochs: int | None = None
        self._started = clock()  # the epoch's start: construction, then each epoch's end

    def on_step(self, report: StepReport) -> None:
        self._epochs = report.epochs
        if not self.bar:
            return
        if self._progress is None:
            from tqdm.auto import tqdm

            self._progress = tqdm(
                total=report.batches,
                desc=f"epoch {report.epoch + 1}/{report.epochs}",
                leave=False,
                file=self.stream,
                dynamic_ncols=True,
            )
        self._progress.set_postfix(loss=f"{report.loss:.3f}", refresh=False)
        self._progress.update(1)

    def on_epoch(self, epoch: int, history: TrainHistory) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        now = self.clock()
        seconds, self._started = now - self._started, now
        if self.lines:
            of = f"/{self._epochs}" if self._epochs else ""
            line = f"epoch {epoch + 1}{of}  loss {history.loss[-1]:.4f}"
            if history.perturbed_fraction[-1] > 0:
                line += (
                    f"  perturbed loss {history.perturbed_loss[-1]:.4f}"
                    f" ({100 * history.perturbed_fraction[-1]:.0f} % of steps)"
                )
            self.write(f"{line}  {seconds:.1f} s")
