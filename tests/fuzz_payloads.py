"""Hypothesis strategies for hostile payloads, derived from the protocol's pydantic models.

For each event model a *valid* base payload is built from its JSON schema (every field,
optional ones too, so every field can be attacked); the strategies then break it one
way at a time: another type for the whole payload, a field removed, added, given a
value of another type, made too long or nested deep, or the version changed. Only what
the model itself refuses is kept, so each example is a payload the server must refuse.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

# Characters that break naive code: NUL and other controls, lone surrogates (not UTF-8
# encodable: PostgreSQL refuses them), zero-width and bidi marks, a BOM, noncharacters,
# combining marks, astral emoji, quotes and path or markup pieces.
EDGE_CHARACTERS = (
    "\x00", "\x07", "\x1b", "\x7f", "\n", "\r", "\t", "\u0085", "\u2028",
    "\ud800", "\udfff", "\u200b", "\u200d", "\u200e", "\u202e", "\ufeff", "\ufffd",
    "\uffff", "\U0010ffff", "\u0301", "\U0001f600", "\U0001f3cb\u200d\u2640\ufe0f",
    "'", '"', "\\", "<script>", "&amp;", "%00", "../", "${x}", "{{x}}", " ",
)  # fmt: skip

edge_text = st.lists(
    st.sampled_from(EDGE_CHARACTERS) | st.characters(codec=None), min_size=1, max_size=30
).map("".join)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()  # NaN and infinities too: Python's JSON carries them
    | edge_text
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def is_valid(model: type[BaseModel], payload: Any) -> bool:
    """Whether ``model`` accepts ``payload`` (as the server's table validates it)."""
    try:
        model.model_validate(payload)
    except (ValidationError, ValueError, TypeError):
        return False
    return True


def _minimal(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    """The simplest value a JSON schema allows, with every optional property present."""
    if "$ref" in schema:
        return _minimal(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"] or schema["anyOf"]
        return _minimal(options[0], defs)
    kind = schema.get("type")
    if kind == "string":
        return "x" * max(1, schema.get("minLength", 1))
    if kind == "integer":
        return int(schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1))
    if kind == "number":
        return float(schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1))
    if kind == "boolean":
        return False
    if kind == "array":
        count = max(1, schema.get("minItems", 0))
        if schema.get("maxItems", count) < count:
            count = schema["maxItems"]
        return [_minimal(schema.get("items", {"type": "string"}), defs) for _ in range(count)]
    if kind == "object" or "properties" in schema:
        return {k: _minimal(v, defs) for k, v in schema.get("properties", {}).items()}
    raise AssertionError(f"no minimal value for schema {schema}")


def valid_base(model: type[BaseModel]) -> dict[str, Any]:
    """A payload ``model`` accepts, with every field it knows filled in."""
    schema = model.model_json_schema()
    base = _minimal(schema, schema.get("$defs", {}))
    assert isinstance(base, dict)
    if not is_valid(model, base):
        # A model validator wants something the schema does not say: drop optional
        # fields one by one until it is happy.
        for key in [k for k in base if k not in schema.get("required", [])]:
            trial = {k: v for k, v in base.items() if k != key}
            if is_valid(model, trial):
                return trial
        raise AssertionError(f"cannot build a valid {model.__name__} from {base}")
    return base


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place inside a payload: dict keys and list indexes, at any depth."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((*prefix, key))
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.append((*prefix, index))
            found += _paths(item, (*prefix, index))
    return found


def _replace(base: Any, path: tuple[Any, ...], value: Any) -> Any:
    payload = copy.deepcopy(base)
    holder = payload
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = value
    return payload


def _remove(base: Any, path: tuple[Any, ...]) -> Any:
    payload = copy.deepcopy(base)
    holder = payload
    for step in path[:-1]:
        holder = holder[step]
    del holder[path[-1]]
    return payload


def _add_key(base: Any, path: tuple[Any, ...], key: str, value: Any) -> Any:
    payload = copy.deepcopy(base)
    holder = payload
    for step in path:
        holder = holder[step]
    if isinstance(holder, dict):
        holder[key] = value
    return payload


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for level in range(depth):
        value = [value] if level % 2 else {"x": value}
    return value


def malformed(model: type[BaseModel], base: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Payloads broken one way each, every one refused by ``model``."""
    paths = _paths(base)
    objects = [()] + [p for p in paths if isinstance(_get(base, p), dict)]
    strings = [p for p in paths if isinstance(_get(base, p), str)]
    lists = [p for p in paths if isinstance(_get(base, p), list)]
    kinds = [
        json_values.filter(lambda v: not isinstance(v, dict)),
        st.tuples(st.sampled_from(paths), json_values).map(lambda pv: _replace(base, *pv)),
        st.sampled_from(paths).map(lambda p: _remove(base, p)),
        st.tuples(st.sampled_from(objects), st.text(min_size=1, max_size=12), json_values).map(
            lambda pkv: _add_key(base, *pkv)
        ),
        json_values.map(lambda v: {**base, "v": v}),
        st.tuples(st.sampled_from(paths), st.integers(20, 300)).map(
            lambda pd: _replace(base, pd[0], _nested(pd[1]))
        ),
    ]
    if strings:
        # Past each limit: 40-character names, 1,000-character chat, 64 KiB SDP, 1 MiB
        # answers (still under the transport's own limit, so the payload is what's judged).
        kinds.append(
            st.tuples(st.sampled_from(strings), st.sampled_from([41, 121, 1001, 65537, 1048577]))
            .map(lambda pn: _replace(base, pn[0], "x" * pn[1]))
        )  # fmt: skip
    if lists:
        kinds.append(st.sampled_from(lists).map(lambda p: _replace(base, p, ["x"] * 1001)))
    return st.one_of(kinds).filter(lambda payload: not is_valid(model, payload))


def with_edge_strings(base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]] | None:
    """Well-formed payloads whose strings are replaced by edge-case text (None: no strings)."""
    strings = [p for p in _paths(base) if isinstance(_get(base, p), str)]
    if not strings:
        return None
    return st.tuples(st.sampled_from(strings), edge_text).map(lambda pt: _replace(base, *pt))


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def fuzz_settings(max_examples: int, *also_suppress: HealthCheck) -> settings:
    """Hypothesis settings for fuzzing a running server: examples share a module's server
    and sessions (function-scoped fixtures are fine), no deadline, no example database."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            *also_suppress,
        ],
    )
