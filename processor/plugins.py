"""Find the configured strategies and build them with their own settings.

``TICKPIPE_STRATEGIES`` lists names and ``module:Class`` paths, in order. A name is looked up in
the built-in table (:data:`processor.strategies.STRATEGIES`), then among the entry points of the
group ``tickpipe.strategies`` (the entry point's name is the strategy name, its value a
``module:Class``). A path is imported. Whatever is found must be a :class:`Strategy` subclass
with a valid ``name`` and known ``inputs``.

A strategy's own settings are the fields of the dataclass it names in ``params``; each is set by
``TICKPIPE_STRATEGY_<NAME>_<FIELD>`` (upper case) and parsed by the field's type (``int``,
``float``, ``bool``, ``str`` or ``Decimal``); fields without a default are required. Every
``TICKPIPE_STRATEGY_*`` key must belong to a configured strategy. Every mistake (an unknown name,
a path that does not import, a class that is not a strategy, an unknown or malformed key, a
constructor that raises) is one
:class:`ConfigError` line naming what to fix, with the closest known key: the stage exits 2.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from decimal import Decimal, InvalidOperation
from importlib.metadata import entry_points
from typing import Any, get_type_hints

from tickpipe.common.errors import ConfigError
from tickpipe.common.settings import STRATEGY_PREFIX, Settings, did_you_mean
from tickpipe.processor.strategies import INPUTS, STRATEGIES, TIMER, Strategy

__all__ = ["ENTRY_POINT_GROUP", "build_strategies", "find_strategy", "strategy_params"]

ENTRY_POINT_GROUP = "tickpipe.strategies"
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_BOOL = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def build_strategies(settings: Settings) -> list[Strategy]:
    """Return the strategies ``settings.strategies`` names, in order, each with its settings."""
    classes = [find_strategy(ref) for ref in settings.strategies]
    names = [cls.name for cls in classes]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"TICKPIPE_STRATEGIES: strategy name(s) {twice} configured twice")
    given = dict(settings.strategy_settings)
    known = {"TICKPIPE_STRATEGY_MAX_FAILURES"}
    for cls in classes:
        known.update(_keys(cls))
    unknown = [k for k in given if k not in known]
    if unknown:
        named = ", ".join(did_you_mean(k, known) for k in sorted(unknown))
        raise ConfigError(f"unknown strategy setting(s) {named}")
    return [_create(cls, settings, strategy_params(cls, given)) for cls in classes]


def _create(cls: type[Strategy], settings: Settings, params: Any) -> Strategy:
    try:
        return cls.create(settings, params)
    except Exception as exc:  # the plug-in's constructor: a mistake the user must fix
        raise ConfigError(
            f"strategy {cls.name!r} could not be built ({type(exc).__name__}: {exc})"
        ) from None


def find_strategy(ref: str) -> type[Strategy]:
    """Return the strategy class a name or a ``module:Class`` path refers to."""
    if ":" in ref:
        return _checked(_import(ref, "TICKPIPE_STRATEGIES"), ref)
    if ref in STRATEGIES:
        return STRATEGIES[ref]
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if ref in found:
        return _checked(_import(found[ref].value, f"entry point {ref!r}"), ref)
    known = sorted({*STRATEGIES, *found})
    raise ConfigError(
        f"TICKPIPE_STRATEGIES: unknown strategy {did_you_mean(ref, known)}; known: "
        f"{', '.join(known)} (or give a module:Class path)"
    )


def strategy_params(cls: type[Strategy], given: dict[str, str]) -> Any:
    """Return ``cls.params`` filled from the ``TICKPIPE_STRATEGY_<NAME>_*`` keys in ``given``."""
    if cls.params is None:
        return None
    prefix = _prefix(cls)
    hints = get_type_hints(cls.params)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls.params):
        key = prefix + f.name.upper()
        if key not in given:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{key} is required by strategy {cls.name!r}")
            continue
        try:
            values[f.name] = _parse(hints.get(f.name, str), given[key])
        except (ValueError, InvalidOperation) as exc:
            raise ConfigError(f"{key}={given[key]!r}: {exc}") from None
    try:
        return cls.params(**values)
    except (ValueError, TypeError) as exc:  # the dataclass's own __post_init__ checks
        raise ConfigError(f"strategy {cls.name!r} settings: {exc}") from None


def _keys(cls: type[Strategy]) -> list[str]:
    if cls.params is None:
        return []
    return [_prefix(cls) + f.name.upper() for f in dataclasses.fields(cls.params)]


def _prefix(cls: type[Strategy]) -> str:
    return f"{STRATEGY_PREFIX}{cls.name.upper()}_"


def _parse(kind: Any, text: str) -> Any:
    text = text.strip()
    if kind is bool:
        if text.lower() not in _BOOL:
            raise ValueError("must be true or false")
        return _BOOL[text.lower()]
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    if kind is Decimal:
        value = Decimal(text)
        if not value.is_finite():
            raise ValueError("must be a finite number")
        return value
    return text


def _import(path: str, where: str) -> Any:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any error inside the user's module is a configuration error
        raise ConfigError(
            f"{where}: cannot import {module_name!r} ({type(exc).__name__}: {exc})"
        ) from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{where}: module {module_name!r} has no {attr!r}") from None


def _checked(obj: Any, ref: str) -> type[Strategy]:
    if not (isinstance(obj, type) and issubclass(obj, Strategy)):
        raise ConfigError(f"TICKPIPE_STRATEGIES: {ref!r} is not a processor.strategies.Strategy")
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"strategy {ref!r}: name must be lower case letters, digits and _")
    odd = sorted(set(obj.inputs) - INPUTS)
    if odd or not obj.inputs:
        raise ConfigError(f"strategy {ref!r}: inputs {odd} unknown; known: {sorted(INPUTS)}")
    if TIMER in obj.inputs and obj.timer_interval_ms <= 0:
        raise ConfigError(f"strategy {ref!r}: declares the timer but no timer_interval_ms")
    if obj.params is not None and not dataclasses.is_dataclass(obj.params):
        raise ConfigError(f"strategy {ref!r}: params must be a dataclass")
    return obj
