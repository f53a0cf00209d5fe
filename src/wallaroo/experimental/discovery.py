"""Find a connector's settings in the application module the worker runs.

A connector program reads the same module, with the same arguments, as the worker, so the two
agree on the address, the cookie, the credits and the codecs without repeating them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wallaroo.configs import SinkConnectorConfig, SourceConnectorConfig
from wallaroo.errors import ConfigurationError

__all__ = ["find_sink_connector", "find_source_connector", "load_sink_connector"]


def _load(application_module: str, args: Sequence[str]) -> Any:
    # Imported here: wallaroo/__init__ imports wallaroo.experimental first, so a module-level
    # import of the loader (and through it the plan) would run in a half-initialised package.
    from wallaroo.loader import load_application

    return load_application(application_module, list(args)).application


def _names(configs: Sequence[Any]) -> str:
    return ", ".join(f"'{c.name}'" for c in configs) or "none"


def find_source_connector(
    application_module: str, connector_name: str, args: Sequence[str]
) -> SourceConnectorConfig:
    """Load the application and return its source connector called ``connector_name``.

    Args:
        application_module: a module name (or path to a ``.py``), as ``--application-module``.
        connector_name: the connector's name, as ``--connector``.
        args: the command line handed to ``application_setup(args)``.

    Raises:
        ConfigurationError: the module cannot be loaded, or declares no source connector of
            that name (the message lists the names it declares).
        WallarooParameterError: the application description is wrong.
    """
    app = _load(application_module, args)
    config = app.source_connector(connector_name)
    if config is None:
        hint = ""
        if app.sink_connector(connector_name) is not None:
            hint = f"; '{connector_name}' is a sink connector, so run a sink program for it"
        raise ConfigurationError(
            f"application module '{application_module}' has no source connector named "
            f"'{connector_name}' (its source connectors: {_names(app.source_connectors)}){hint}; "
            "check --connector"
        )
    result: SourceConnectorConfig = config
    return result


def find_sink_connector(
    application_module: str, connector_name: str, args: Sequence[str]
) -> SinkConnectorConfig:
    """Load the application and return its sink connector called ``connector_name``.

    Raises:
        ConfigurationError: the module cannot be loaded, or declares no sink connector of that
            name (the message lists the names it declares).
        WallarooParameterError: the application description is wrong.
    """
    return load_sink_connector(application_module, connector_name, args)[0]


def load_sink_connector(
    application_module: str, connector_name: str, args: Sequence[str]
) -> tuple[SinkConnectorConfig, tuple[str, ...]]:
    """:func:`find_sink_connector`, and the names of the pipelines whose output goes to it.

    Raises:
        as :func:`find_sink_connector`.
    """
    app = _load(application_module, args)
    config = app.sink_connector(connector_name)
    if config is None:
        hint = ""
        if app.source_connector(connector_name) is not None:
            hint = f"; '{connector_name}' is a source connector, so run a source program for it"
        raise ConfigurationError(
            f"application module '{application_module}' has no sink connector named "
            f"'{connector_name}' (its sink connectors: {_names(app.sink_connectors)}){hint}; "
            "check --connector"
        )
    result: SinkConnectorConfig = config
    return result, app.pipelines_into(connector_name)
