"""Campaigns: an experiment stated in one TOML file, run resumably into a SQLite store.

    spec.toml ──spec──▶ CampaignSpec ──plan──▶ training jobs, trials (content-addressed ids)
        ──runner + executors (this process, a process pool, Ray)──▶ worker ──▶ store (one row
        per trial) ──statistics──▶ cells with confidence intervals ──report──▶ report.html/.md

- :mod:`~bitrobust.campaign.spec`: the TOML schema (pydantic); errors name the key.
- :mod:`~bitrobust.campaign.plan`: training jobs and trials, each id a hash of what produced it.
- :mod:`~bitrobust.campaign.worker`: what a worker runs (plain data in, plain data out).
- :mod:`~bitrobust.campaign.executors`: in-process, local process pool, Ray.
- :mod:`~bitrobust.campaign.store`: the SQLite (WAL) store of finished trials.
- :mod:`~bitrobust.campaign.runner`: train what is missing, run what is not recorded, adaptive
  stopping.
- :mod:`~bitrobust.campaign.statistics`: per-cell means, spreads and confidence intervals.
- :mod:`~bitrobust.campaign.report`: the self-contained HTML and Markdown report.

The command line is ``bitrobust campaign run|status|export|report``.
"""
