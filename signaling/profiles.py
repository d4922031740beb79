"""A participant's zone profile: as stored, as telemetry computes with it, as sent."""

from __future__ import annotations

from typing import Any

from storage.store import ProfileRecord
from telemetry.zones import Profile


def profile_of(record: ProfileRecord | None) -> Profile:
    """Telemetry's profile from the stored one (none stored: the defaults)."""
    if record is None:
        return Profile()
    return Profile(
        age=record.age,
        max_hr=record.max_hr,
        resting_hr=record.resting_hr,
        weight_kg=record.weight_kg,
        sex=record.sex,
        method=record.method,
        max_hr_learned=record.max_hr_learned,
    )


def record_of(profile: Profile) -> ProfileRecord:
    """The stored form of a profile."""
    return ProfileRecord(
        age=profile.age,
        max_hr=profile.max_hr,
        resting_hr=profile.resting_hr,
        weight_kg=profile.weight_kg,
        sex=profile.sex,
        method=profile.method,
        max_hr_learned=profile.max_hr_learned,
    )


def profile_out(profile: Profile) -> dict[str, Any]:
    """A participant's zone profile as the protocol's Profile."""
    return {
        "age": profile.age,
        "max_hr": profile.max_hr,
        "resting_hr": profile.resting_hr,
        "weight_kg": profile.weight_kg,
        "sex": profile.sex,
        "zone_method": profile.method,
        "hr_max": round(profile.hr_max),
        "max_hr_learned": profile.max_hr_learned,
    }
