"""Validated configuration without pydantic: what the monitoring process runs on.

Configuration is validated by pydantic models (every problem at once, with key paths). The
monitoring process itself never imports pydantic or YAML: a helper process validates the
file and hands over the result as `Plain` objects, which keep every field as an attribute
and nothing else. That keeps the daemon's resident memory about 12 MiB smaller (pydantic's
core, its schema machinery and one validator per model class), which on a 2-core hospital VM
decides whether the agent fits its 40 MiB budget.

Models that need behaviour at run time (a site's time zone, a check's threshold rules) put it
in a `Methods` mixin defined next to the runtime code, free of pydantic. The pydantic model
inherits the mixin, and `to_plain` gives the plain object a class made of the same mixins, so
both forms answer the same calls from one piece of code.

A plain object supports what runtime code uses of a model: attribute access,
`model_fields_set` (which optional fields were given), `model_copy(update=...)`, equality,
pickling, and `model_dump_json()` for the models whose JSON the store keeps (their class
sets `plain_keeps_json = True`).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from functools import cached_property
from typing import Any, ClassVar

_JSON = "_plain_json"


class Methods:
    """Base of the mixins that carry a model's run-time behaviour.

    A mixin defines only methods and properties (no fields, no __init__): it is shared by the
    pydantic model and the plain form of its objects.
    """

    plain_keeps_json: ClassVar[bool] = False


class Plain:
    """A validated model's fields as read-only attributes (see the module docstring)."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self.__dict__.update(fields)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"configuration is read-only ({name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"configuration is read-only ({name!r})")

    def _fields(self) -> dict[str, Any]:
        cls = type(self)
        return {
            k: v
            for k, v in self.__dict__.items()
            if k != _JSON and not isinstance(getattr(cls, k, None), cached_property)
        }

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Plain:
        fields = self._fields()
        if update:
            fields.update(update)
            fields["model_fields_set"] = frozenset(fields.get("model_fields_set", ())) | set(update)
        return type(self)(fields)

    def model_dump_json(self) -> str:
        text = self.__dict__.get(_JSON)
        if text is None:
            raise TypeError(f"{type(self).__name__}: JSON is kept only for models with plain_keeps_json")
        return str(text)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._fields() == other._fields()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]  # like a frozen model holding lists: not hashable

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._fields().items() if k != "model_fields_set")
        return f"{type(self).__name__}({fields})"

    def __reduce__(self) -> tuple[Any, ...]:
        views = tuple((c.__module__, c.__qualname__) for c in _views_of(type(self)))
        state = self._fields()
        if _JSON in self.__dict__:
            state[_JSON] = self.__dict__[_JSON]
        return (_rebuild, (views, state))


def _views_of(cls: type) -> tuple[type, ...]:
    """The Methods mixins of a class, most derived first, without ones another already has."""
    found = [
        c
        for c in cls.__mro__
        if issubclass(c, Methods)
        and c is not Methods
        and not issubclass(c, Plain)
        and not hasattr(c, "__pydantic_fields__")
    ]
    own = [c for c in found if not any(o is not c and issubclass(o, c) for o in found)]
    return tuple(own)


@functools.cache
def plain_class(views: tuple[type, ...]) -> type[Plain]:
    """The plain class made of these mixins (one class per combination: the cache is bounded
    by the code's mixins, not by the data)."""
    name = views[0].__name__ if views else "Plain"
    return type(name, (*views, Plain), {"__module__": __name__})


def plain_from_fields(
    views: tuple[type, ...], fields: Mapping[str, Any], json_text: str | None = None
) -> Plain:
    """A plain object built directly (e.g. from JSON the agent wrote itself after validating it)."""
    state = dict(fields)
    state.setdefault("model_fields_set", frozenset(fields))
    if json_text is not None:
        state[_JSON] = json_text
    return plain_class(views)(state)


def _rebuild(views: tuple[tuple[str, str], ...], state: dict[str, Any]) -> Plain:
    classes = []
    for module, qualname in views:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        classes.append(obj)
    return plain_class(tuple(classes))(state)


def _is_model(obj: Any) -> bool:
    # Duck-typed so this module never imports pydantic.
    return hasattr(type(obj), "__pydantic_fields__") and hasattr(obj, "model_fields_set")


def to_plain(obj: Any) -> Any:
    """`obj` with every pydantic model in it (at any depth) replaced by its plain form.

    Tuples, lists and dicts are rebuilt; every other value (numbers, strings, datetimes,
    paths, `Secret` references, thresholds) is kept as it is.
    """
    if _is_model(obj):
        cls = type(obj)
        fields = {name: to_plain(getattr(obj, name)) for name in cls.__pydantic_fields__}
        fields["model_fields_set"] = frozenset(obj.model_fields_set)
        views = _views_of(cls)
        if any(v.plain_keeps_json for v in views):
            fields[_JSON] = obj.model_dump_json()
        return plain_class(views)(fields)
    if isinstance(obj, tuple):
        return tuple(to_plain(v) for v in obj)
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj
