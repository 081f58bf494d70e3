"""The one config system: YAML files loaded into typed dataclasses, with ``key.sub=value`` overrides.

Every experiment config is a dataclass whose fields are typed and documented (a docstring-style
comment under each field). ``load_config(MyConfig, "configs/x.yaml", ["train.lr=3e-4"])`` reads the
file, applies the overrides in order, and checks every key and type: an unknown key or a wrong type
fails with a :class:`ConfigError` that names the key, where it came from, and the closest valid keys.
Every float must be finite, a numeric field annotated with a :class:`Range` (``PositiveInt``,
``Fraction``, ...) must lie in it and a ``Literal`` field must hold one of its choices: the checks live here
once, not in each config class. A config class that extends :class:`Config` gets the same checks when it
is built in Python (:func:`validate`), and sets the defaults of fields it inherits in ``defaults`` instead of
declaring them again.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import math
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union

import yaml

from .errors import ConfigError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Range:
    """A numeric field's bounds, checked by the config layer for every config:
    ``Annotated[int, Range(ge=1)]``."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def describe(self) -> str:
        parts = [
            f"{op} {bound:g}"
            for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
            if bound is not None
        ]
        return " and ".join(parts)

    def holds(self, value: float) -> bool:
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )


@dataclasses.dataclass(frozen=True)
class Pattern:
    """A string field's form, checked by the config layer: ``Annotated[str, Pattern(r"cpu|cuda(:\\d+)?")]``
    (the whole string must match)."""

    regex: str
    describe_as: str

    def describe(self) -> str:
        return self.describe_as


# The ranges most fields need; annotate a field with one of these (or Annotated[..., Range(...)]).
PositiveInt = Annotated[int, Range(ge=1)]
NonNegativeInt = Annotated[int, Range(ge=0)]
PositiveFloat = Annotated[float, Range(gt=0)]
NonNegativeFloat = Annotated[float, Range(ge=0)]
Fraction = Annotated[float, Range(ge=0, le=1)]
Device = Annotated[str, Pattern(r"cpu|cuda(:\d+)?|auto", "'cpu', 'cuda', 'cuda:N' or 'auto'")]
"""A torch device: 'auto' is a GPU when torch sees one, else the CPU."""


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; configs mean a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(text: str):
    """Parse YAML the way every config of the project is parsed (safe, with ``1e-3`` as a float)."""
    return yaml.load(text, Loader=_Loader)


def _closest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "valid keys: " + ", ".join(sorted(options))


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *extras = typing.get_args(tp)
        ranges = [e.describe() for e in extras if isinstance(e, (Range, Pattern))]
        return " ".join([_type_name(base), *ranges])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp, key: str, source: str):
    """Check ``value`` against the annotation ``tp`` and convert where it is lossless (int -> float,
    str -> Path)."""

    def fail(extra: str = ""):
        raise ConfigError(
            f"{source}: key '{key}' expects {_type_name(tp)}, got {type(value).__name__} {value!r}{extra}"
        )

    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Annotated:
        base, *extras = typing.get_args(tp)
        value = _coerce(value, base, key, source)
        for bound in extras:
            if isinstance(bound, Range) and value is not None and not bound.holds(value):
                raise ConfigError(f"{source}: key '{key}' must be {bound.describe()}, got {value!r}")
            if isinstance(bound, Pattern) and not re.fullmatch(bound.regex, value):
                raise ConfigError(f"{source}: key '{key}' must be {bound.describe()}, got {value!r}")
        return value
    if origin is Literal:
        if value not in typing.get_args(tp):
            fail()
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            fail()
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, source)
            except ConfigError:
                continue
        fail()
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            fail(" (a mapping of its fields)")
        return build_config(tp, value, key, source)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            fail()
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                fail(f" (needs {len(args)} items)")
            return tuple(_coerce(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            fail()
        _, val_tp = typing.get_args(tp) or (str, Any)
        return {str(k): _coerce(v, val_tp, f"{key}.{k}", source) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            fail()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail()
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(" (a number such as 3e-4)")
        if not math.isfinite(value):
            # One check for every float field of every config: NaN passes every range test (nan <= 0 is
            # false) and inf would start a run that can only diverge.
            raise ConfigError(
                f"{source}: key '{key}' expects a finite float, got {value!r}; give a number such as 3e-4"
            )
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            fail()
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            fail()
        return Path(value)
    raise ConfigError(
        f"{source}: key '{key}' has an unsupported annotation {tp!r} (a bug in the config class)"
    )


def build_config(cls: type[T], data: dict, prefix: str, source: str) -> T:
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        k = unknown[0]
        full = f"{prefix}.{k}" if prefix else str(k)
        where = f"under '{prefix}'" if prefix else "at the top level"
        raise ConfigError(f"{source}: unknown key '{full}' {where}; {_closest(str(k), list(fields))}")
    kwargs = {}
    for name, value in data.items():
        full = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(value, hints[name], full, source)
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        full = ", ".join(f"{prefix}.{m}" if prefix else m for m in missing)
        raise ConfigError(f"{source}: required key(s) missing: {full}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:  # __post_init__ validation
        raise ConfigError(f"{source}: invalid '{prefix or cls.__name__}': {err}") from err


def validate(config) -> None:
    """Check every field of a config object against its annotation, as :func:`load_config` checks a file:
    type, finite floats, :class:`Range`, ``Literal`` choices (ints given for floats become floats)."""
    cls = type(config)
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        checked = _coerce(value, hints[f.name], f.name, cls.__name__)
        if checked is not value:  # an int given for a float, a mapping given for a section
            object.__setattr__(config, f.name, checked)


class Config:
    """Base of the config dataclasses: every field checked against its annotation when an instance is built
    (:func:`validate`), so ranges and choices are declared once, on the field.

    ``defaults`` sets the defaults of inherited fields for this class (``defaults = dict(lr=3e-6)``): each
    field keeps its one declaration, type and docstring where it was first declared. A subclass's own
    ``__post_init__`` calls ``super().__post_init__()`` first and adds only checks that span several fields.
    """

    defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("defaults")
        if not own:
            return
        if "__annotations__" not in cls.__dict__:
            cls.__annotations__ = {}
        annotations = cls.__dict__["__annotations__"]
        for name, value in own.items():
            declaring = next(
                (k for k in cls.__mro__[1:] if name in k.__dict__.get("__annotations__", {})), None
            )
            if declaring is None:
                raise TypeError(f"{cls.__name__}.defaults: {name!r} is not a field {cls.__name__} inherits")
            if name in annotations:
                raise TypeError(f"{cls.__name__}: {name!r} is both declared and in defaults")
            annotations[name] = typing.get_type_hints(declaring, include_extras=True)[name]
            if isinstance(value, (list, dict)) or dataclasses.is_dataclass(value):
                value = dataclasses.field(default_factory=functools.partial(copy.deepcopy, value))
            setattr(cls, name, value)

    def __post_init__(self):
        validate(self)


def to_dict(config) -> dict:
    """A plain, YAML-safe dict of a config (Paths as strings, tuples as lists)."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(config)


def _set_dotted(data: dict, dotted: str, value: Any, cls, source: str) -> None:
    """Set ``a.b.c`` in nested dicts, checking each segment against the dataclass as it goes."""
    parts = dotted.split(".")
    node, tp, prefix = data, cls, ""
    for i, part in enumerate(parts):
        if not (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
            raise ConfigError(f"{source}: '{prefix}' is not a section, so '{dotted}' cannot be set")
        fields = {f.name for f in dataclasses.fields(tp)}
        if part not in fields:
            full = f"{prefix}.{part}" if prefix else part
            raise ConfigError(f"{source}: unknown key '{full}'; {_closest(part, sorted(fields))}")
        prefix = f"{prefix}.{part}" if prefix else part
        if i == len(parts) - 1:
            node[part] = value
            return
        hint = typing.get_type_hints(tp)[part]
        if typing.get_origin(hint) is dict:  # a mapping field: the rest of the path is one key of it,
            if not isinstance(node.get(part), dict):  # set on top of the field's default mapping
                spec = next(f for f in dataclasses.fields(tp) if f.name == part)
                default = spec.default_factory() if spec.default_factory is not dataclasses.MISSING else {}
                node[part] = dict(default or {})
            node[part][".".join(parts[i + 1 :])] = value
            return
        tp = next((a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)), hint)
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.lr=3e-4"`` -> ``("train.lr", 0.0003)``; the value is read as a YAML scalar/list."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = read_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: cannot read the value: {err}") from None
    return key, value


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> T:
    """Load ``cls`` from a YAML file (or its defaults when ``path`` is None) plus dotted overrides."""
    data: dict = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist (configs live in configs/*.yaml)")
        try:
            loaded = read_yaml(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(loaded).__name__}")
        data = loaded
    # Validate the file on its own first, so its errors name the file rather than an override.
    build_config(cls, data, "", source)
    # An override may be invalid only until a later one lands (data=rl before rl_policy=...): the first
    # error is raised, naming its override, only when the final config is invalid too.
    first_error: ConfigError | None = None
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(data, key, value, cls, f"override '{text}'")
        try:
            build_config(cls, data, "", f"override '{text}'")
        except ConfigError as err:
            first_error = first_error or err
    try:
        return build_config(cls, data, "", source)
    except ConfigError:
        if first_error is not None:
            raise first_error from None
        raise


def dump_yaml(config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def with_smoke(config: T, smoke: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> T:
    """``config`` with the ``--smoke`` budget applied, except for fields the command line overrode."""
    overridden = {o.split("=", 1)[0].split(".")[0] for o in overrides}
    return dataclasses.replace(config, **{k: v for k, v in smoke.items() if k not in overridden})
