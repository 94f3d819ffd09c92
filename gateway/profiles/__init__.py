"""Modbus device profiles: built-in table, user TOML profiles, register decoding."""

from gateway.profiles.builtin import BUILTIN_PROFILES
from gateway.profiles.model import (
    Block,
    DecodeError,
    DeviceProfile,
    ProfileError,
    Register,
    decode_profile,
    decode_register,
    plan_blocks,
)
from gateway.profiles.toml import ProfileModel, RegisterModel, load_profiles_file, resolve_profiles

__all__ = [
    "BUILTIN_PROFILES",
    "Block",
    "DecodeError",
    "DeviceProfile",
    "ProfileError",
    "ProfileModel",
    "Register",
    "RegisterModel",
    "decode_profile",
    "decode_register",
    "load_profiles_file",
    "plan_blocks",
    "resolve_profiles",
]
