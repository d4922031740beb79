"""A participant's class as a FIT activity file (Garmin's binary format, written with
fit_tool): records, the strap's RR intervals as HRV messages, one lap per interval of the
instructor's timer (``telemetry/activity_export.py`` adds up the laps), one session.

Apart from the TCX export because fit_tool takes ~0.3 s to import: the server loads it on
the first FIT download, not at every start.
"""

from __future__ import annotations

from collections.abc import Sequence

from fit_tool.fit_file_builder import FitFileBuilder
from fit_tool.profile.messages.activity_message import ActivityMessage
from fit_tool.profile.messages.event_message import EventMessage
from fit_tool.profile.messages.file_id_message import FileIdMessage
from fit_tool.profile.messages.hrv_message import HrvMessage
from fit_tool.profile.messages.lap_message import LapMessage
from fit_tool.profile.messages.record_message import RecordMessage
from fit_tool.profile.messages.session_message import SessionMessage
from fit_tool.profile.profile_type import (
    Activity,
    Event,
    EventType,
    FileType,
    Intensity,
    LapTrigger,
    Manufacturer,
    SessionTrigger,
    Sport,
    SubSport,
)

from .activity_export import LapFigures

HRV_VALUES = 5  # RR intervals per FIT HRV message (its array's size in Garmin's profile)


def _ms(unix_s: float) -> int:
    return round(unix_s * 1000)


def _lap_message(figures: LapFigures, index: int) -> LapMessage:
    lap = figures.lap
    message = LapMessage()
    message.message_index = index
    message.timestamp = _ms(lap.end)
    message.start_time = _ms(lap.start)
    message.event = Event.LAP
    message.event_type = EventType.STOP
    message.total_elapsed_time = max(0.0, lap.end - lap.start)
    message.total_timer_time = max(0.0, lap.end - lap.start)
    message.total_calories = figures.calories
    if figures.readings:
        message.avg_heart_rate = figures.average_bpm
        message.max_heart_rate = figures.max_bpm
    message.intensity = Intensity.REST if lap.kind == "rest" else Intensity.ACTIVE
    message.lap_trigger = LapTrigger.TIME if lap.kind != "free" else LapTrigger.MANUAL
    message.sport = Sport.TRAINING
    message.sub_sport = SubSport.CARDIO_TRAINING
    return message


def _timer_event(at: float, kind: EventType) -> EventMessage:
    message = EventMessage()
    message.timestamp = _ms(at)
    message.event = Event.TIMER
    message.event_type = kind
    return message


def fit(laps: Sequence[LapFigures]) -> bytes:
    """The class as a FIT activity file: records, HRV, laps, one session."""
    start, end = laps[0].lap.start, laps[-1].lap.end
    builder = FitFileBuilder(auto_define=True, min_string_size=50)
    file_id = FileIdMessage()
    file_id.type = FileType.ACTIVITY
    file_id.manufacturer = Manufacturer.DEVELOPMENT.value
    file_id.product = 0
    file_id.serial_number = 1
    file_id.time_created = _ms(start)
    builder.add(file_id)
    builder.add(_timer_event(start, EventType.START))
    for figures in laps:
        for reading in figures.readings:
            record = RecordMessage()
            record.timestamp = _ms(reading.time)
            record.heart_rate = min(255, max(1, reading.bpm))
            builder.add(record)
            rr = [ms / 1000 for ms in reading.rr_ms if 0 < ms < 65_535]
            for at in range(0, len(rr), HRV_VALUES):
                hrv = HrvMessage()
                hrv.time = rr[at : at + HRV_VALUES]
                builder.add(hrv)
    builder.add(_timer_event(end, EventType.STOP_ALL))
    for index, figures in enumerate(laps):
        builder.add(_lap_message(figures, index))
    builder.add(_session(laps, start, end))
    activity = ActivityMessage()
    activity.timestamp = _ms(end)
    activity.total_timer_time = end - start
    activity.num_sessions = 1
    activity.type = Activity.MANUAL
    activity.event = Event.ACTIVITY
    activity.event_type = EventType.STOP
    builder.add(activity)
    data: bytes = builder.build().to_bytes()
    return data


def _session(laps: Sequence[LapFigures], start: float, end: float) -> SessionMessage:
    readings = [r for figures in laps for r in figures.readings]
    session = SessionMessage()
    session.timestamp = _ms(end)
    session.start_time = _ms(start)
    session.event = Event.SESSION
    session.event_type = EventType.STOP
    session.trigger = SessionTrigger.ACTIVITY_END
    session.sport = Sport.TRAINING
    session.sub_sport = SubSport.CARDIO_TRAINING
    session.total_elapsed_time = end - start
    session.total_timer_time = end - start
    session.total_calories = sum(figures.calories for figures in laps)
    if readings:
        weighted = [f for f in laps if f.readings]
        span = sum(f.lap.end - f.lap.start for f in weighted) or 1.0
        session.avg_heart_rate = round(
            sum(f.average_bpm * (f.lap.end - f.lap.start) for f in weighted) / span
        )
        session.max_heart_rate = max(r.bpm for r in readings)
    session.first_lap_index = 0
    session.num_laps = len(laps)
    return session
