"""The embedded synthetic electric load series and the anomaly injector.

`generate(days, seed)` draws an hourly load series with everything a forecaster has to learn and
records the ground truth it was drawn from:

- a daily profile that differs between workdays and weekends/holidays (night trough, morning ramp,
  evening peak that is higher in winter), a weekly cycle, a linear trend (+3 % a year);
- a non-linear temperature response: heating below 14 °C (power 1.2) and cooling above 20 °C
  (power 1.6), on a temperature with annual and daily cycles and multi-day weather fronts (AR(1));
- holidays (fixed dates plus a few random weekdays a year) that look like Sundays;
- autocorrelated multiplicative noise (AR(1), 2 % standard deviation) plus 0.5 % white noise.

The exogenous features are the temperature, calendar features (hour, day of week and day of year as
sin/cos pairs, a weekend flag), the holiday flag, and three noise features the generator marks as
irrelevant (a slow AR(1) process with a memory of days, white noise and a 37.3-hour cycle):
nothing in the load depends on them. They are stationary on purpose: a random walk would drift out
of its training range in the test period and turn "ignore an irrelevant feature" into
extrapolation luck that swamps every other difference between the models.

Every synthetic feature is declared known in advance (`Series.known`): the calendar and the holiday
flag are known by construction; the temperature stands for a perfect day-ahead weather forecast (the
generator draws the whole path, so the value at a target step is what a forecast would say); the
noise features are exogenous series published ahead of time that happen to be irrelevant, which is
what lets the per-horizon feature attention be tested on ignoring them over the forecast horizon.
No synthetic feature is observed-only (see the reader below for how a CSV declares observed-only ones).

`corrupt(values, rng, rate, start, scale)` injects anomalies into a copy of a series (spikes, drop-outs
to zero, stuck values) and returns their gold positions and kinds; the task uses it for the corrupted
copy of the test inputs and, during training, on the anomaly-masking model's input windows.

Real data (the reader below): one CSV (gzip accepted) with a timestamp column, a target column and optional
numeric feature columns, all named in params.yaml (`tasks.load.data.csv`).

Policy, applied in this order and counted in the manifest:

- timestamps are parsed with `format` when given (any `pandas.to_datetime` format), else inferred;
  time-zone-aware stamps keep their wall-clock time (mixed offsets are converted to UTC);
- rows may come in any order: they are sorted by timestamp (stable);
- duplicated timestamps: the first row in file order is kept, the others are dropped;
- the series is put on a regular grid of step `freq` (default one hour) from its first to its last
  timestamp; a timestamp off that grid is an error;
- gaps (grid steps without a row) and empty cells are NOT filled: they stay missing, and every
  window whose input or target touches a missing step is skipped (the manifest counts the
  missing steps and the skipped windows).

Feature roles (pytorch-forecasting's time_varying_known_reals / time_varying_unknown_reals):
`features: {known: [...], observed: [...]}` declares which columns are known in advance (their
values at the forecast steps exist at the forecast origin: a weather forecast, a tariff, a holiday
calendar) and which are observed only (their values are used up to the forecast origin and never
over the horizon: other loads of the same transformer, measured temperature). A plain list,
`features: [a, b]`, means observed-only: a plain list says nothing about availability at forecast
time, and treating it as known would leak the future into every forecast. The calendar features
the reader adds from the timestamps are always known.

Errors name the file and the line (the header is line 1) or the column, and say what was expected:
a missing column, a value that is not a number, an unparsable timestamp, an empty or unreadable
file, a series too short for the window, horizon and splits.
"""
from __future__ import annotations

import csv
import gzip
import io
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import DataError, not_utf8

START = "2021-01-04 00:00"  # a Monday
CALENDAR = ("hour_sin", "hour_cos", "dow_sin", "dow_cos", "doy_sin", "doy_cos", "weekend")
NOISE = ("noise_ar", "noise_white", "noise_cycle")
FIXED_HOLIDAYS = ((1, 1), (5, 1), (7, 14), (11, 11), (12, 25), (12, 26))
RANDOM_HOLIDAYS_PER_YEAR = 4

# anomaly kinds: code, name, run length range in steps (inclusive)
KINDS = {1: ("spike", 1, 3), 2: ("dropout", 1, 6), 3: ("stuck", 3, 12)}
SPIKE_SIGMAS = (3.0, 6.0)   # a spike adds U(3, 6) x the training series' standard deviation

# hourly shape (fraction of the base level) of a workday and of a weekend day / holiday
_WORKDAY = np.array([0.72, 0.69, 0.67, 0.66, 0.67, 0.71, 0.80, 0.93, 1.02, 1.05, 1.06, 1.06,
                     1.04, 1.04, 1.03, 1.02, 1.03, 1.07, 1.12, 1.13, 1.08, 0.99, 0.88, 0.78])
_WEEKEND = np.array([0.74, 0.70, 0.67, 0.65, 0.64, 0.64, 0.66, 0.70, 0.77, 0.84, 0.89, 0.91,
                     0.91, 0.89, 0.87, 0.86, 0.88, 0.93, 1.00, 1.02, 0.98, 0.92, 0.85, 0.79])
_DOW_LEVEL = np.array([0.98, 1.0, 1.0, 1.0, 0.98, 0.93, 0.88])   # Mon..Sun multipliers


@dataclass
class Series:
    """An hourly series: timestamps, target, exogenous features and what is known about them."""

    time: pd.DatetimeIndex
    load: np.ndarray                       # [N] float64, NaN where an observation is missing
    features: np.ndarray                   # [N, F] float64
    feature_names: list[str]
    irrelevant: list[bool]                 # per feature: the generator made the load independent of it
    truth: dict = field(default_factory=dict)
    # per feature: known in advance (its values at the forecast steps may be used) or observed-only
    # (only its values up to the forecast origin may be used); None: every feature known
    known: list[bool] | None = None

    def __post_init__(self) -> None:
        if self.known is None:
            self.known = [True] * len(self.feature_names)


def calendar_features(time: pd.DatetimeIndex) -> np.ndarray:
    """[N, 7]: hour, day of week, day of year as sin/cos pairs, and a weekend flag (wall-clock time)."""
    hour = time.hour.to_numpy() + time.minute.to_numpy() / 60.0
    dow = time.day_of_week.to_numpy()
    doy = time.day_of_year.to_numpy() - 1 + hour / 24.0
    cols = [np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24),
            np.sin(2 * np.pi * dow / 7), np.cos(2 * np.pi * dow / 7),
            np.sin(2 * np.pi * doy / 365.25), np.cos(2 * np.pi * doy / 365.25),
            (dow >= 5).astype(float)]
    return np.stack(cols, axis=1)


def holidays(years: list[int], rng: np.random.Generator) -> list[pd.Timestamp]:
    days = []
    for year in years:
        days += [pd.Timestamp(year, m, d) for m, d in FIXED_HOLIDAYS]
        weekdays = pd.bdate_range(f"{year}-01-01", f"{year}-12-31")
        picks = rng.choice(len(weekdays), size=RANDOM_HOLIDAYS_PER_YEAR, replace=False)
        days += [weekdays[i] for i in sorted(picks)]
    return sorted(set(days))


def temperature_response(temp: np.ndarray) -> np.ndarray:
    """Load added by heating and cooling (MW), the generator's ground truth."""
    return 8.0 * np.maximum(0.0, 14.0 - temp) ** 1.2 + 6.0 * np.maximum(0.0, temp - 20.0) ** 1.6


def _ar1(rng: np.random.Generator, n: int, phi: float, std: float) -> np.ndarray:
    """Stationary AR(1) with the given marginal standard deviation."""
    eps = rng.normal(0.0, std * np.sqrt(1 - phi ** 2), n)
    eps[0] = rng.normal(0.0, std)
    # y[k] = phi^k (y[0] + sum_{j<=k} e[j] phi^-j), in blocks short enough for phi^-j to stay small
    out, state, block = np.empty(n), 0.0, 128
    powers = phi ** np.arange(1, block + 1)
    for start in range(0, n, block):
        e = eps[start:start + block]
        p = powers[: len(e)]
        out[start:start + len(e)] = p * (state + np.cumsum(e / p))
        state = out[start + len(e) - 1]
    return out


def generate(days: int, seed: int = 7, base: float = 1000.0) -> Series:
    """`days` days of hourly load (MW) with exogenous features; see the module docstring."""
    rng = np.random.default_rng(seed)
    n = int(days) * 24
    time = pd.date_range(START, periods=n, freq="h")
    hour = time.hour.to_numpy()
    dow = time.day_of_week.to_numpy()
    doy = time.day_of_year.to_numpy() - 1 + hour / 24.0
    years = time.year.to_numpy() - time.year[0] + (doy / 365.25)

    # temperature: annual and daily cycles plus weather fronts (AR(1) with ~8-day memory)
    temp = (11.0 - 10.0 * np.cos(2 * np.pi * (doy - 20) / 365.25) + 4.0 * np.cos(2 * np.pi * (hour - 15) / 24)
            + _ar1(rng, n, 0.995, 3.5))

    hol_days = holidays(sorted(set(time.year)), rng)
    is_holiday = time.normalize().isin(pd.DatetimeIndex(hol_days))
    restday = (dow >= 5) | is_holiday
    winter = 0.5 * (1 + np.cos(2 * np.pi * (doy - 10) / 365.25))          # 1 in early January, 0 in July
    shape = np.where(restday, _WEEKEND[hour], _WORKDAY[hour])
    shape = shape + 0.06 * winter * np.exp(-0.5 * ((hour - 18.5) / 1.5) ** 2)   # lighting peak in winter
    level = np.where(is_holiday, 0.86, _DOW_LEVEL[dow])
    trend = 1.0 + 0.03 * years
    noise = np.exp(_ar1(rng, n, 0.95, 0.02) + rng.normal(0.0, 0.005, n))
    load = (base * trend * level * shape + temperature_response(temp)) * noise

    cal = calendar_features(time)
    noise_features = np.stack([_ar1(rng, n, 0.99, 1.0), rng.normal(0.0, 1.0, n),
                               np.sin(2 * np.pi * np.arange(n) / 37.3) + rng.normal(0.0, 0.3, n)], axis=1)
    features = np.column_stack([temp, cal, is_holiday.astype(float), noise_features])
    names = ["temperature", *CALENDAR, "holiday", *NOISE]
    irrelevant = [name in NOISE for name in names]
    truth = {
        "holidays": [d.strftime("%Y-%m-%d") for d in hol_days if time[0] <= d <= time[-1]],
        "irrelevant_features": [nm for nm, bad in zip(names, irrelevant) if bad],
        "temperature_response": "8*max(0, 14 - T)^1.2 + 6*max(0, T - 20)^1.6 MW",
        "trend_per_year": 0.03, "noise": "AR(1) phi=0.95 std 2% multiplicative + 0.5% white",
    }
    return Series(time=time, load=load, features=features, feature_names=names, irrelevant=irrelevant, truth=truth,
                  known=[True] * len(names))


def corrupt(values: np.ndarray, rng: np.random.Generator, rate: float, scale: float, start: int = 0,
            kinds: tuple[int, ...] = (1, 2, 3)) -> tuple[np.ndarray, np.ndarray]:
    """A corrupted copy of `values[start:]` (earlier steps untouched) and the kind of each step.

    Anomaly events are placed at random, non-overlapping and not touching, until about `rate` of the
    steps are corrupted: spikes (add U(3, 6) x `scale` for 1-3 steps), drop-outs (zero for 1-6
    steps) and stuck values (the last good reading repeated for 3-12 steps), in equal numbers on
    average. Returns (corrupted values, kind codes [N] int8: 0 clean, 1 spike, 2 dropout, 3 stuck).
    """
    out = np.array(values, dtype=np.float64, copy=True)
    kind = np.zeros(len(out), dtype=np.int8)
    span = len(out) - start
    if span <= 1 or rate <= 0:
        return out, kind
    mean_len = np.mean([(KINDS[k][1] + KINDS[k][2]) / 2 for k in kinds])
    target = int(round(rate * span))
    corrupted, tries = 0, 0
    while corrupted < target and tries < 50 * (target // max(int(mean_len), 1) + 1):
        tries += 1
        k = int(kinds[rng.integers(len(kinds))])
        _, lo, hi = KINDS[k]
        length = int(rng.integers(lo, hi + 1))
        first = max(start, 1) if k == 3 else start              # a stuck run repeats the reading before it
        if span - (first - start) < length:
            continue
        t0 = int(rng.integers(first, len(out) - length + 1))
        t1 = t0 + length
        if kind[max(t0 - 1, 0):min(t1 + 1, len(out))].any():   # keep events apart
            continue
        if not np.isfinite(values[max(t0 - 1, 0):t1]).all():   # never on (or repeating) a missing reading
            continue
        if k == 1:
            out[t0:t1] = values[t0:t1] + rng.uniform(*SPIKE_SIGMAS) * scale
        elif k == 2:
            out[t0:t1] = 0.0
        else:
            out[t0:t1] = out[t0 - 1]
        kind[t0:t1] = k
        corrupted += length
    return out, kind


# ---- real data ------------------------------------------------------------------------------

_MISSING = {"", "na", "nan", "null", "none", "n/a"}


class SeriesFileError(DataError):
    """A load-forecasting CSV that cannot be used as it is."""


def _numeric(path: Path, frame: pd.DataFrame, column: str, lines: np.ndarray) -> np.ndarray:
    """A column as float64; empty / NA cells become NaN, anything else non-numeric is an error."""
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    blank = raw.isna() | raw.astype(str).str.strip().str.lower().isin(_MISSING)
    bad = values.isna() & ~blank
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise SeriesFileError(f"{path}: line {lines[row]}, column {column!r}: value {str(raw.iloc[row])!r} is not a "
                              f"number; expected a decimal number (empty cells count as missing values)")
    values = values.to_numpy(dtype=np.float64)
    if not np.isfinite(values[~np.isnan(values)]).all():
        row = int(np.flatnonzero(np.isinf(values))[0])
        raise SeriesFileError(f"{path}: line {lines[row]}, column {column!r}: value {str(raw.iloc[row])!r} is not "
                              "finite; expected a decimal number")
    return values


def _timestamps(path: Path, raw: pd.Series, column: str, fmt: str | None,
                lines: np.ndarray) -> tuple[pd.DatetimeIndex, str]:
    text = raw.astype(str).str.strip()
    empty = raw.isna() | text.eq("")
    if empty.any():
        row = int(np.flatnonzero(empty.to_numpy())[0])
        raise SeriesFileError(f"{path}: line {lines[row]}, column {column!r}: the timestamp is empty; "
                              "expected a date and time on every row")
    note = "wall-clock time"
    kwargs = {"format": fmt} if fmt else {}
    try:
        parsed = pd.to_datetime(text, errors="coerce", **kwargs)
    except (ValueError, TypeError):  # mixed UTC offsets (e.g. across a DST change)
        parsed = pd.to_datetime(text, errors="coerce", utc=True, **kwargs)
        note = "converted to UTC (mixed UTC offsets)"
    if parsed.isna().any():
        row = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        expected = f"format {fmt!r}" if fmt else "a date and time pandas can parse (set data.csv.format to be explicit)"
        raise SeriesFileError(f"{path}: line {lines[row]}, column {column!r}: cannot parse timestamp "
                              f"{str(raw.iloc[row])!r}; expected {expected}")
    index = pd.DatetimeIndex(parsed)
    if index.tz is not None:
        index = index.tz_localize(None) if note == "wall-clock time" else index.tz_convert(None)
    return index, note


def _text(path: Path) -> str:
    """The decoded file (gzip detected by its magic bytes); undecodable bytes name their line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SeriesFileError(f"{path}: file not found; expected a CSV file (tasks.load.data.csv.path)") from None
    except OSError as exc:
        raise SeriesFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise SeriesFileError(f"{path}: corrupt gzip data ({exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SeriesFileError(f"{path}: {not_utf8(exc)}") from None


def _check_field_counts(path: Path, text: str, delimiter: str) -> None:
    """Every non-blank row has as many fields as the header (pandas would pad a short row silently)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        for row in reader:
            if header is not None and any(cell.strip() for cell in row) and len(row) != len(header):
                raise SeriesFileError(f"{path}: line {reader.line_num}: {len(row)} fields, expected {len(header)} "
                                      f"as in the header ({delimiter.join(header)})")
    except csv.Error as exc:
        raise SeriesFileError(f"{path}: line {reader.line_num}: not a readable CSV row ({exc})") from None


def declared_features(features) -> tuple[list[str], list[bool]]:
    """(column names, known flags) of `csv.features`: a mapping {known: [...], observed: [...]} (known
    columns first), or a plain list, whose columns are observed-only (see the module docstring)."""
    if not features:
        return [], []
    if isinstance(features, dict):
        known, observed = list(features.get("known") or []), list(features.get("observed") or [])
        return [*known, *observed], [True] * len(known) + [False] * len(observed)
    return list(features), [False] * len(features)


def read_csv(spec: dict, *, min_steps: int = 0) -> Series:
    """Read `spec` (path, timestamp, target, features, format, freq, delimiter) into a regular Series.

    `min_steps` is the shortest usable grid (window + horizon + splits); shorter is an error."""
    path = Path(spec["path"])
    ts_col, target = spec["timestamp"], spec["target"]
    features, known = declared_features(spec.get("features"))
    wanted = [ts_col, target, *features]
    delimiter = spec.get("delimiter", ",")
    text = _text(path)
    if len(delimiter) == 1:
        _check_field_counts(path, text, delimiter)
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False,
                            skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise SeriesFileError(f"{path}: the file is empty; expected a header line and one row per time step") from None
    except pd.errors.ParserError as exc:
        raise SeriesFileError(f"{path}: not a readable CSV file: {str(exc).strip()}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    for column in wanted:
        if column not in frame.columns:
            raise SeriesFileError(f"{path}: line 1 (header): column {column!r} not found (named in tasks.load.data.csv); the header has "
                                  f"columns: {', '.join(map(repr, frame.columns))}")
    if len(set(wanted)) != len(wanted):
        raise SeriesFileError(f"{path}: a column is named twice among timestamp, target and features: {wanted}")
    blank_rows = frame.apply(lambda col: col.astype(str).str.strip().eq("")).all(axis=1)
    frame = frame[~blank_rows.to_numpy()]
    if not len(frame):
        raise SeriesFileError(f"{path}: no data rows under the header; expected one row per time step")
    lines = frame.index.to_numpy() + 2  # the line in the file of each row (the header is line 1)
    frame = frame.reset_index(drop=True)
    time, tz_note = _timestamps(path, frame[ts_col], ts_col, spec.get("format"), lines)
    values = {c: _numeric(path, frame, c, lines) for c in [target, *features]}

    order = np.argsort(time.to_numpy(), kind="stable")
    unsorted = int((np.diff(time.to_numpy().astype("datetime64[ns]").astype(np.int64)) < 0).sum())
    time = time[order]
    values = {c: v[order] for c, v in values.items()}
    dup = time.duplicated(keep="first")
    duplicates = int(dup.sum())
    time = time[~dup]
    values = {c: v[~dup] for c, v in values.items()}

    step = spec.get("freq", "h")
    freq = pd.Timedelta(pd.tseries.frequencies.to_offset(step))
    offsets = (time - time[0]) / freq
    off_grid = np.flatnonzero(offsets != np.round(offsets))
    if len(off_grid):
        i = int(off_grid[0])
        raise SeriesFileError(f"{path}: timestamp {time[i]} is not on the grid of step {step!r} that "
                              f"starts at {time[0]}; expected one row every step {step!r} (set data.csv.freq)")
    grid = pd.date_range(time[0], time[-1], freq=freq)
    position = np.round(offsets).astype(np.int64)
    load = np.full(len(grid), np.nan)
    load[position] = values[target]
    feats = np.full((len(grid), len(features)), np.nan)
    for j, c in enumerate(features):
        feats[position, j] = values[c]
    if len(grid) < min_steps:
        raise SeriesFileError(f"{path}: the series is too short: {len(grid)} steps of {step!r} from {grid[0]} to "
                              f"{grid[-1]}; expected at least {min_steps} steps for the window, horizon and the "
                              "train/valid/test splits")
    empty_cells = int(np.isnan(load[position]).sum() + np.isnan(feats[position]).sum())
    all_features = np.column_stack([feats, calendar_features(grid)])
    names = [*features, *CALENDAR]
    for c in CALENDAR:
        if c in features:
            raise SeriesFileError(f"{path}: feature column {c!r} clashes with a calendar feature the reader adds; "
                                  "rename the column")
    truth = {"rows": int(len(frame)), "unsorted_rows": unsorted, "duplicates_dropped": duplicates,
             "missing_steps": int(len(grid) - len(time)), "empty_cells": empty_cells,
             "timestamps": tz_note, "freq": step}
    return Series(time=grid, load=load, features=all_features, feature_names=names,
                  irrelevant=[False] * len(names), truth=truth, known=[*known, *[True] * len(CALENDAR)])
