"""Prebuilt connector programs. Each module is a self-contained script using only the public
API: run it with ``python -m wallaroo.connectors.NAME``, ``wallaroo connector NAME``, the
``connectors/NAME`` executable of the repository, or copy the file into your own tree."""
