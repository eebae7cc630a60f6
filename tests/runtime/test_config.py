from dataclasses import dataclass, field

import pytest

from runtime import load_config, save_config


@dataclass(frozen=True)
class Inner:
    lr: float = 1e-3


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    sizes: tuple = (1, 2)
    inner: Inner = field(default_factory=Inner)


def test_config_roundtrip(tmp_path):
    config = Outer(name="y", sizes=(3, 4), inner=Inner(lr=0.5))
    save_config(config, tmp_path / "config.json")
    assert load_config(Outer, tmp_path / "config.json") == config


def test_unknown_key_is_named(tmp_path):
    (tmp_path / "c.json").write_text('{"nam": "typo"}')
    with pytest.raises(ValueError, match="nam"):
        load_config(Outer, tmp_path / "c.json")
