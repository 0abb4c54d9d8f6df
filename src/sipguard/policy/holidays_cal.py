"""Legal holidays per country and state, from the `holidays` package (observed dates included).

A calendar is built once per (country, subdivision, categories, year) and kept; a lookup on
the hot path is a dict access. Days a governor declares ad hoc are not in the package; pass
them as `extra` (e.g. from configuration).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from functools import lru_cache

import holidays

DEFAULT_CATEGORIES = ("public",)


@lru_cache(maxsize=512)
def _calendar(
    country: str, subdiv: str | None, categories: tuple[str, ...], year: int
) -> Mapping[date, str]:
    try:
        cal = holidays.country_holidays(
            country, subdiv=subdiv, years=year, categories=categories, observed=True
        )
    except NotImplementedError:  # a country or subdivision the package does not know
        return {}
    return dict(cal.items())


def holiday_name(
    country: str,
    subdiv: str | None,
    day: date,
    categories: Iterable[str] = DEFAULT_CATEGORIES,
    extra: Mapping[date, str] | None = None,
) -> str | None:
    """The holiday's name when `day` is a (possibly observed) legal holiday there, else None.

    `subdiv` is the state/province code without the country ("LA"), or None for the
    country's national calendar.
    """
    if extra and day in extra:
        return extra[day]
    cats = tuple(sorted(set(categories)))
    return _calendar(country, subdiv, cats, day.year).get(day)
