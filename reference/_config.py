"""Server configuration: fsync policy, profile and the knobs of redis.conf that matter here."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from reference.defects import DEFECTS

__all__ = ["AppendFsync", "ConfigError", "Profile", "ServerConfig"]


class AppendFsync(Enum):
    """``appendfsync``: when the AOF is fsynced."""

    ALWAYS = "always"
    EVERYSEC = "everysec"
    NO = "no"


class Profile(Enum):
    """``safe``: Redis 6.2 plus what it takes to pass every contract; ``redis-3.0``: Redis 3.0."""

    SAFE = "safe"
    REDIS_3_0 = "redis-3.0"


class ConfigError(ValueError):
    """Invalid configuration; ``errors`` lists every problem (one per field)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid ServerConfig: " + "; ".join(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The reference server's configuration (validated at construction, every error at once)."""

    appendfsync: AppendFsync = AppendFsync.EVERYSEC
    profile: Profile = Profile.SAFE
    aof_filename: str = "appendonly.aof"
    aof_load_truncated: bool = True
    no_appendfsync_on_rewrite: bool = False
    auto_aof_rewrite_percentage: int = 100
    auto_aof_rewrite_min_size_bytes: int = 64 * 1024 * 1024
    rewrite_keys_per_step: int = 16
    hz: int = 10
    defects: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        # Fields are checked at run time too: configs also come from JSON and from callers.
        errors: list[str] = []
        values: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        if not isinstance(values["appendfsync"], AppendFsync):
            errors.append(
                f"appendfsync: must be an AppendFsync, got {self.appendfsync!r} "
                f"(known: {', '.join(p.value for p in AppendFsync)})"
            )
        if not isinstance(values["profile"], Profile):
            errors.append(
                f"profile: must be a Profile, got {self.profile!r} "
                f"(known: {', '.join(p.value for p in Profile)})"
            )
        name = self.aof_filename
        if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
            errors.append(f"aof_filename: must be a plain file name, got {name!r}")
        for flag in ("aof_load_truncated", "no_appendfsync_on_rewrite"):
            if not isinstance(getattr(self, flag), bool):
                errors.append(f"{flag}: must be a bool, got {getattr(self, flag)!r}")
        for num, low in (
            ("auto_aof_rewrite_percentage", 0),
            ("auto_aof_rewrite_min_size_bytes", 0),
            ("rewrite_keys_per_step", 1),
        ):
            value = getattr(self, num)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                errors.append(f"{num}: must be an int >= {low}, got {value!r}")
        if not isinstance(self.hz, int) or isinstance(self.hz, bool) or not 1 <= self.hz <= 500:
            errors.append(f"hz: must be an int in 1..500, got {self.hz!r}")
        chosen = values["defects"]
        if not isinstance(chosen, frozenset):
            errors.append(f"defects: must be a frozenset of names, got {chosen!r}")
        else:
            unknown = sorted(str(n) for n in chosen if n not in DEFECTS)
            if unknown:
                errors.append(
                    f"defects: unknown defect(s) {', '.join(map(repr, unknown))} "
                    f"(known: {', '.join(sorted(DEFECTS))})"
                )
        if errors:
            raise ConfigError(errors)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (enums as their values, defects as a sorted list)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Enum):
                value = value.value
            elif isinstance(value, frozenset):
                value = sorted(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerConfig:
        """Inverse of ``to_dict``; unknown keys and bad values are reported all at once."""
        if not isinstance(data, dict):
            raise ConfigError([f"config: must be a dict, got {type(data).__name__}"])
        known = {f.name for f in fields(cls)}
        errors = [f"{k}: unknown field" for k in sorted(set(data) - known)]
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                continue
            if key == "appendfsync":
                try:
                    value = AppendFsync(value)
                except ValueError:
                    errors.append(
                        f"appendfsync: unknown policy {value!r} "
                        f"(known: {', '.join(p.value for p in AppendFsync)})"
                    )
                    continue
            elif key == "profile":
                try:
                    value = Profile(value)
                except ValueError:
                    errors.append(
                        f"profile: unknown profile {value!r} "
                        f"(known: {', '.join(p.value for p in Profile)})"
                    )
                    continue
            elif key == "defects":
                if not isinstance(value, list | tuple | set | frozenset):
                    errors.append(f"defects: must be a list of names, got {value!r}")
                    continue
                value = frozenset(value)
            kwargs[key] = value
        try:
            config = cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(errors + exc.errors) from None
        if errors:
            raise ConfigError(errors)
        return config
