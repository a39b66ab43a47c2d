"""ServerConfig validation and JSON round trip."""

from __future__ import annotations

import json

import pytest

from reference import AppendFsync, ConfigError, Profile, ServerConfig, defects


def test_defaults_are_the_documented_ones() -> None:
    config = ServerConfig()
    assert config.appendfsync is AppendFsync.EVERYSEC
    assert config.profile is Profile.SAFE
    assert config.aof_filename == "appendonly.aof"
    assert config.aof_load_truncated is True
    assert config.auto_aof_rewrite_min_size_bytes == 64 * 1024 * 1024
    assert config.hz == 10 and config.defects == frozenset()


def test_round_trips_through_json() -> None:
    config = ServerConfig(
        appendfsync=AppendFsync.ALWAYS,
        profile=Profile.REDIS_3_0,
        no_appendfsync_on_rewrite=True,
        defects=frozenset({defects.SHORT_WRITE_KEPT, defects.REPLY_BEFORE_FSYNC}),
    )
    data = json.loads(json.dumps(config.to_dict()))
    assert data["appendfsync"] == "always" and data["profile"] == "redis-3.0"
    assert ServerConfig.from_dict(data) == config


def test_every_error_is_reported_at_once_naming_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        ServerConfig(hz=0, rewrite_keys_per_step=0, aof_filename="a/b",
                     appendfsync="always")  # type: ignore[arg-type]
    fields = {error.split(":")[0] for error in info.value.errors}
    assert fields == {"hz", "rewrite_keys_per_step", "aof_filename", "appendfsync"}


def test_from_dict_reports_unknown_fields_and_bad_enum_values() -> None:
    with pytest.raises(ConfigError) as info:
        ServerConfig.from_dict({"appendfsync": "sometimes", "colour": "red", "hz": -1})
    text = str(info.value)
    assert "appendfsync: unknown policy 'sometimes'" in text
    assert "colour: unknown field" in text and "hz: must be" in text
