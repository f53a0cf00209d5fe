"""The benchmark applications. Each one runs over TCP or over connectors, chosen by
``--bench-transport`` among its arguments (see :mod:`bench.apps.common`)."""
