"""Observability of a running worker: pull-based, read from every component's ``statistics()``.

* :mod:`~wallaroo.engine.histogram`: 65-bin power-of-two latency histograms (the engine
  records into them when it runs with ``metrics=True``).
* :mod:`~wallaroo.metrics.collector`: samples the worker's statistics and derives rates and
  per-interval percentiles; :mod:`~wallaroo.metrics.report` shapes them as JSON.
* :mod:`~wallaroo.metrics.prometheus`: the Prometheus text format.
* :mod:`~wallaroo.metrics.hub`: the original's metrics hub protocol (``--metrics``).
* :mod:`~wallaroo.metrics.http` and :mod:`~wallaroo.metrics.service`: the worker's HTTP
  endpoint (``--metrics-http``) with the dashboard in ``static/``.

The engine owns its histograms (:mod:`wallaroo.engine.histogram`); this package reads them.
"""
