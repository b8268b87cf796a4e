"""The one test every report number goes through before it is shown or compared: is it a finite value?

Below both the sections' helpers and the noise tests, which read it alike.
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd


def finite(value: Any) -> bool:
    try:
        return value is not None and not pd.isna(value) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
