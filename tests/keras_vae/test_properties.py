"""Property tests (hypothesis): configuration parsing and data specs never fail with anything but a
short one-line ConfigError, and what they accept round-trips. Few examples, no deadline: fast on 2 cores."""
from __future__ import annotations

import dataclasses
import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from keras_vae.config import RunConfig, merge
from keras_vae.data import parse_source
from keras_vae.data.config import DataConfig
from keras_vae.errors import ConfigError
from keras_vae.config.presets import get_preset
from keras_vae.utils.validation import MESSAGE_LIMIT

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FIELDS = {name: [f.name for f in dataclasses.fields(cls)]
          for name, cls in (("model", RunConfig().model.__class__), ("loss", RunConfig().loss.__class__),
                            ("data", DataConfig), ("train", RunConfig().train.__class__))}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["relu", "tanh", "bogus", "1e3", "nan", "-1", "0", "true", "tfds:mnist", "embedded",
                     "folder:x", "tfds:../../etc", "3,4", "float32"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=5), inner, max_size=3), max_leaves=12)


@st.composite
def overrides(draw):
    """Nested overrides: mostly real section/field names, some unknown ones, values of any kind."""
    result = {}
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from([*FIELDS, "bogus"]))
        names = FIELDS.get(section, ["x"])
        fields = draw(st.dictionaries(st.sampled_from(names) | st.text(max_size=4), values, max_size=3))
        result[section] = fields
    if draw(st.booleans()):
        result["preset"] = draw(values)
    return result


def _check_message(exc: ConfigError) -> None:
    text = str(exc)
    assert text and "\n" not in text and len(text) <= MESSAGE_LIMIT, text


@FAST
@given(overrides())
def test_merge_accepts_or_raises_one_short_config_error(values_):
    try:
        config = merge(RunConfig(), values_)
    except ConfigError as exc:
        _check_message(exc)
        return
    # accepted: typed as declared, and its JSON form rebuilds the same object
    assert config.preset is None or isinstance(config.preset, str)
    assert isinstance(config.train.seed, int) and not isinstance(config.train.seed, bool)
    assert all(isinstance(u, int) and u >= 1 for u in config.model.hidden_units)
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@FAST
@given(st.sampled_from(["model", "loss", "train"]), st.data())
def test_every_field_round_trips_through_its_text_form(section, data):
    """A valid value, written as --set would carry it (text), parses back to itself."""
    base = get_preset("tiny-vae")
    current = getattr(base, section)
    name = data.draw(st.sampled_from([f.name for f in dataclasses.fields(current)]))
    value = getattr(current, name)
    if value is None:
        return
    text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
    assert getattr(getattr(merge(base, {section: {name: text}}), section), name) == value


@FAST
@given(st.one_of(st.text(max_size=40), st.builds("{}:{}".format, st.sampled_from(["tfds", "folder", "embedded"]),
                                                  st.text(max_size=20))))
@example("tfds:../../etc")
@example("tfds:/etc/passwd")
@example("tfds:mnist\n")
@example("embedded:x")
def test_data_specs_are_accepted_or_refused_consistently(spec):
    """DataConfig and parse_source agree: both accept a spec or both refuse it with one short line."""
    try:
        DataConfig(source=spec)
        accepted = True
    except ConfigError as exc:
        _check_message(exc)
        accepted = False
    try:
        kind, arg = parse_source(spec)
    except ConfigError as exc:
        _check_message(exc)
        assert not accepted, spec
        return
    assert accepted, spec
    assert kind in ("embedded", "tfds", "folder")
    if kind == "tfds":  # never a path: no separators that climb or start at the root
        assert ".." not in arg and not arg.startswith("/") and "\\" not in arg


@FAST
@given(st.from_regex(r"[a-z][a-z0-9_]{0,12}(/[a-z0-9_]{1,6})?(:[0-9]\.[0-9]\.[0-9])?", fullmatch=True))
def test_tfds_names_are_accepted(name):
    assert parse_source(f"tfds:{name}") == ("tfds", name)
