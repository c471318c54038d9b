"""Ready-made studies: the demo and the reproductions of the papers' experiments.

Each study is a function of a settings object (with a ``quick`` and a full preset) that trains the
models it needs, evaluates them, and writes Markdown tables, plots and a JSON record to an output
folder. Trained checkpoints and per-model results are cached there, so an interrupted study
resumes where it stopped.
"""
