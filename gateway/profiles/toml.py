"""User device profiles in TOML, validated into the same frozen dataclasses as the built-ins.

[[profile]]
name = "my-level"
description = "Level sensor re-programmed to cm"
default_address = 3
[[profile.registers]]
metric = "water_level"
address = 4
type = "s16"
unit = "cm"
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.profiles.builtin import BUILTIN_PROFILES
from gateway.profiles.model import DeviceProfile, ProfileError, Register


class RegisterModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    address: int = Field(ge=0, le=0xFFFF)
    type: Literal["u16", "s16", "u32", "s32", "f32"] = "u16"
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = Field(None, max_length=16)
    function: Literal["holding", "input"] = "holding"
    word_order: Literal["big", "little"] = "big"


class ProfileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,63}$")
    description: str = ""
    default_address: int = Field(1, ge=1, le=247)
    default_baudrate: int = 9600
    registers: list[RegisterModel] = Field(min_length=1)

    def to_profile(self) -> DeviceProfile:
        regs = tuple(Register(**r.model_dump()) for r in self.registers)
        return DeviceProfile(
            self.name, self.description, regs, self.default_address, self.default_baudrate
        )


class _ProfileFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profile: list[ProfileModel] = Field(default_factory=list)


def load_profiles_file(path: Path) -> dict[str, DeviceProfile]:
    """Read a TOML profile file; raise :class:`ProfileError` saying what to fix."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ProfileError(f"{path}: cannot read profile file: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(f"{path}: not valid TOML: {err}") from err
    try:
        parsed = _ProfileFile.model_validate(data)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ProfileError(f"{path}: {key}: {first['msg']}") from err
    return {p.name: p.to_profile() for p in parsed.profile}


def resolve_profiles(inline: list[ProfileModel], file: Path | None) -> Mapping[str, DeviceProfile]:
    """Built-ins, then the profile file, then inline profiles (later ones win by name)."""
    table: dict[str, DeviceProfile] = dict(BUILTIN_PROFILES)
    if file is not None:
        table.update(load_profiles_file(file))
    table.update({p.name: p.to_profile() for p in inline})
    return table
