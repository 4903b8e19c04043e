"""A quick way to tell that fhirclient's strict models accept a resource, without building them.

fhirclient checks a resource by building its model objects, which costs a tenth to a quarter
of a millisecond per resource; for a whole record that was most of a sync's CPU time. This
module turns fhirclient's own element tables (each model's `elementProperties`) into plain
dicts once, and walks the JSON against them with the same rules:

- every key is a known element, a choice group's name, `resourceType`, or `_element` (only
  when not null), as fhirclient's "superfluous entry" check has it;
- a list where the table says list and only there; element values are objects, checked
  recursively; primitives have the Python type fhirclient wants (numbers interchangeable);
  dates, date-times, instants and times go through fhirclient's own date classes;
- required elements (and required choice groups) are present and not null;
- a resource inside a resource (`contained`, Bundle entries) is checked as the model its
  `resourceType` names, and must be a resource of the kind the element allows.

`accepts(resource)` is one-sided: True means fhirclient's strict models accept the
resource; False means "not shown here", and the caller asks fhirclient, which gives the
verdict and the words for it. Where fhirclient is lax in a way that is awkward to mirror
(it checks only the first item of a list of primitives), this check is stricter, which only
sends such a resource to fhirclient. tests/sync/test_fastcheck.py holds it to fhirclient's
verdict on every shared Synthea resource and on thousands of broken variants of them.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from fhirclient.models.fhirabstractbase import FHIRAbstractBase
from fhirclient.models.fhirabstractresource import FHIRAbstractResource
from fhirclient.models.fhirdate import FHIRDate
from fhirclient.models.fhirelementfactory import FHIRElementFactory

# Kinds of element value. Strings and objects come first: they are most of any record.
# A resource held in an element (contained, Bundle entries) is checked as the type it names.
_STR, _OBJECT, _RESOURCE, _NUMBER, _BOOL, _DATE, _OTHER = range(7)
_NUMBERS = (int, float)


class _Schema:
    """One model class's element table, ready for walking."""

    __slots__ = ("cls", "is_resource", "other_keys", "props", "required")

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.is_resource = issubclass(cls, FHIRAbstractResource)
        # jsname -> (kind, _Schema | date class | Python type, is list)
        self.props: dict[str, tuple[int, Any, bool]] = {}
        self.other_keys: frozenset[str] = frozenset()  # resourceType and choice group names
        self.required: tuple[tuple[str, ...], ...] = ()  # any one key of a group will do


_lock = threading.Lock()
_schemas: dict[type, _Schema] = {}  # only complete schemas are ever published here


@functools.lru_cache(maxsize=256)
def model(resource_type: str) -> type:
    """The fhirclient class FHIRElementFactory builds for `resource_type` (found once: the
    factory compares the name with each of some 650 names)."""
    return type(FHIRElementFactory.instantiate(resource_type, None))


def schema(cls: type) -> _Schema:
    """The walking table of a fhirclient model class."""
    found = _schemas.get(cls)
    if found is not None:
        return found
    with _lock:
        found = _schemas.get(cls)
        if found is None:
            built: dict[type, _Schema] = {}
            found = _build(cls, built)
            _schemas.update(built)  # published only once every table they reach is filled
        return found


def _build(cls: type, built: dict[type, _Schema]) -> _Schema:
    existing = _schemas.get(cls) or built.get(cls)
    if existing is not None:
        return existing
    s = _Schema(cls)
    built[cls] = s  # before filling: element types may refer back (Extension in Extension)
    model_class: Any = cls
    table = model_class.__new__(model_class).elementProperties()
    groups: dict[str, list[str]] = {}
    required: set[str] = set()
    choice_names: set[str] = set()
    for _name, jsname, typ, is_list, of_many, not_optional in table:
        s.props[jsname] = (*_kind(typ, built), bool(is_list))
        key = of_many or jsname
        groups.setdefault(key, []).append(jsname)
        if of_many:
            choice_names.add(of_many)
        if not_optional:
            required.add(key)
    s.other_keys = frozenset({"resourceType", *choice_names})
    s.required = tuple(tuple(groups[key]) for key in sorted(required))
    return s


def _kind(typ: Any, built: dict[type, _Schema]) -> tuple[int, Any]:
    if isinstance(typ, type) and issubclass(typ, FHIRAbstractBase):
        kind = _RESOURCE if issubclass(typ, FHIRAbstractResource) else _OBJECT
        return kind, _build(typ, built)
    if isinstance(typ, type) and issubclass(typ, FHIRDate):
        # What its constructor checks, without building it: the pattern, then the parser.
        date_class: Any = typ
        return _DATE, (date_class._REGEX.fullmatch, date_class._from_string)
    if typ is str:
        return _STR, str
    if typ is int or typ is float:
        return _NUMBER, _NUMBERS  # fhirclient takes either for either
    if typ is bool:
        return _BOOL, bool
    return _OTHER, typ


def accepts(resource: Any) -> bool:
    """True if fhirclient's strict model for the resource's type accepts it (see above)."""
    if type(resource) is not dict:
        return False
    rtype = resource.get("resourceType")
    if type(rtype) is not str or not rtype:
        return False
    s = schema(model(rtype))
    if s.is_resource and s.cls.resource_type != rtype:  # type: ignore[attr-defined]  # resources have it
        return False
    try:
        return _object(s, resource)
    except RecursionError:  # absurdly deep JSON: let fhirclient judge it
        return False


def _object(s: _Schema, d: dict[str, Any]) -> bool:
    props = s.props
    for key, value in d.items():
        prop = props.get(key)
        if prop is None:
            if key in s.other_keys:
                continue
            if key[:1] == "_" and key[1:] in props and value is not None:
                continue
            return False
        if value is None:
            continue
        kind, typ, is_list = prop
        if not is_list:
            if kind == _STR:
                if type(value) is not str:
                    return False
            elif kind == _OBJECT:
                if type(value) is not dict or not _object(typ, value):
                    return False
            elif not _value(kind, typ, value):
                return False
        elif type(value) is not list:
            return False
        elif kind == _STR:
            for item in value:
                if type(item) is not str:
                    return False
        elif kind == _OBJECT:
            for item in value:
                if type(item) is not dict or not _object(typ, item):
                    return False
        else:
            for item in value:
                if not _value(kind, typ, item):
                    return False
    for group in s.required:
        for key in group:
            if d.get(key) is not None:
                break
        else:
            return False
    return True


def _value(kind: int, typ: Any, value: Any) -> bool:
    """A value of a kind other than string or object (`_object` checks those inline)."""
    if kind == _DATE:
        return type(value) is str and _date(typ, value)
    if kind == _RESOURCE:
        return type(value) is dict and _resource(typ, value)
    return isinstance(value, typ)


@functools.lru_cache(maxsize=8192)
def _date(date_class: tuple[Any, Any], value: str) -> bool:
    """What fhirclient's date class checks: its pattern, then its parser. Remembered: a
    record repeats its moments (a visit's results share the visit's time)."""
    matches, parse = date_class
    if matches(value) is None:
        return False
    try:
        parse(value)
    except (TypeError, ValueError):
        return False
    return True


def forget_values() -> None:
    """Empty the memory of checked values (a benchmark's sync should meet a patient's values
    for the first time, as a real one does)."""
    _date.cache_clear()


def _resource(s: _Schema, d: dict[str, Any]) -> bool:
    if "resourceType" in d:
        rtype = d["resourceType"]
        if type(rtype) is not str or not rtype:
            return False
        if rtype != s.cls.resource_type:  # type: ignore[attr-defined]  # resources have it
            target = schema(model(rtype))  # as fhirclient's factory would build it
            if (
                not target.is_resource
                or not issubclass(target.cls, s.cls)
                or target.cls.resource_type != rtype  # type: ignore[attr-defined]
            ):
                return False
            s = target
    return _object(s, d)
