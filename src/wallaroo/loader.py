"""Find and load an application: import its module, call ``application_setup(args)``.

Used by the worker, the connector programs and the testing harness, so all three see the same
application from the same module and arguments.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from wallaroo import serialization
from wallaroo.errors import ConfigurationError, WallarooParameterError
from wallaroo.plan.logical import Application

__all__ = ["LoadedApplication", "import_application_module", "load_application"]


@dataclass(frozen=True, slots=True)
class LoadedApplication:
    """An application set up from its module.

    Attributes:
        application: the application description (what ``application_setup`` returned).
        module: the application module (for a setup function, the module defining it), or
            None when an :class:`Application` was given directly.
        serialize: serialises state for checkpoints and dead-letter payloads: the module's
            ``serialize`` when it defines both ``serialize`` and ``deserialize``, else
            :func:`wallaroo.serialization.serialize`.
        deserialize: the inverse of ``serialize``.
    """

    application: Application
    module: ModuleType | None
    serialize: Callable[[Any], bytes]
    deserialize: Callable[[bytes], Any]


def import_application_module(name: str) -> ModuleType:
    """Import the application module ``name`` (a dotted module name or a path to a ``.py``).

    The current directory is searched too, so ``--application-module celsius`` finds
    ``./celsius.py`` as it would with ``PYTHONPATH=.``.
    """
    if not isinstance(name, str) or not name:
        raise ConfigurationError("--application-module needs a module name")
    if name.endswith(".py") or os.sep in name:
        directory, filename = os.path.split(os.path.abspath(name))
        name = filename.removesuffix(".py")
        if directory not in sys.path:
            sys.path.insert(0, directory)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name or (exc.name and name.startswith(exc.name + ".")):
            raise ConfigurationError(
                f"cannot import application module '{name}': no such module on the Python path "
                f"(current directory {os.getcwd()}); set PYTHONPATH to its directory"
            ) from exc
        raise ConfigurationError(
            f"cannot import application module '{name}': it imports '{exc.name}', which is not "
            "installed"
        ) from exc
    except Exception as exc:
        raise ConfigurationError(
            f"cannot import application module '{name}': {type(exc).__name__}: {exc}"
        ) from exc


def _module_serializers(module: ModuleType | None) -> tuple[Any, Any]:
    ser = getattr(module, "serialize", None) if module is not None else None
    de = getattr(module, "deserialize", None) if module is not None else None
    if callable(ser) and callable(de):
        return ser, de
    return serialization.serialize, serialization.deserialize


def load_application(target: Any, args: Sequence[str] = ()) -> LoadedApplication:
    """Load an application from a module name, a module, an ``application_setup`` function or
    an already built :class:`Application`.

    Raises:
        ConfigurationError: the module cannot be imported or has no ``application_setup``.
        WallarooParameterError: the application description is wrong.
    """
    module: ModuleType | None = None
    if isinstance(target, Application):
        app = target
    else:
        if isinstance(target, str):
            module = import_application_module(target)
            setup = getattr(module, "application_setup", None)
        elif isinstance(target, ModuleType):
            module = target
            setup = getattr(module, "application_setup", None)
        else:
            setup = target
            module = sys.modules.get(getattr(target, "__module__", "") or "")
        if not callable(setup):
            where = getattr(module, "__name__", repr(target))
            raise ConfigurationError(
                f"application module '{where}' has no application_setup(args) function"
            )
        app = setup(list(args))
        if not isinstance(app, Application):
            raise WallarooParameterError(
                "application_setup(args) must return ab.build() or "
                f"wallaroo.build_application(...), got {type(app).__name__}"
            )
    ser, de = _module_serializers(module)
    return LoadedApplication(app, module, ser, de)
