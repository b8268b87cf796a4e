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
No synthetic feature is observed-only (see `reader.py` for how a CSV declares observed-only ones).

`corrupt(values, rng, rate, start, scale)` injects anomalies into a copy of a series (spikes, drop-outs
to zero, stuck values) and returns their gold positions and kinds; the task uses it for the corrupted
copy of the test inputs and, during training, on the anomaly-masking model's input windows.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

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
