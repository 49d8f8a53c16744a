"""Bar charts drawn on the server as SVG (templates/admin/calls/chart.html): shapes with their coordinates, no
JavaScript and no chart library. The dashboard puts the numbers in a table beside each."""

import math
from dataclasses import dataclass, field
from datetime import date

COLOUR = "#417690"  # the admin's own blue
WARNING = "#ba2121"  # the admin's error red


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    title: str  # the tooltip: what the bar stands for, with its number
    fill: str = COLOUR


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    anchor: str = "middle"


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass
class Chart:
    title: str
    width: int
    height: int
    rects: list[Rect] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above `value` (the top of the axis)."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power + 1e-9:
            return step * power
    return 10 * power


def number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:.1f}"


def day_bars(title: str, values: list[tuple[date, float | None]], *, unit: str = "", fill: str = COLOUR,
             width: int = 600, height: int = 170) -> Chart:
    """One bar per day (None: no bar, the day had nothing to measure), with a value axis from 0."""
    left, right, top, bottom = 44, 8, 10, 22
    chart = Chart(title=title, width=width, height=height)
    plot_w, plot_h = width - left - right, height - top - bottom
    highest = nice_ceiling(max((v for _, v in values if v is not None), default=0))
    for fraction in (0, 0.5, 1):
        y = top + plot_h * (1 - fraction)
        chart.lines.append(Line(left, y, width - right, y))
        chart.texts.append(Text(left - 4, y + 4, f"{number(highest * fraction)}{unit}", anchor="end"))
    slot = plot_w / max(len(values), 1)
    for index, (day, value) in enumerate(values):
        x = left + index * slot
        if value is not None and value > 0:
            bar_h = plot_h * value / highest
            chart.rects.append(Rect(x + slot * 0.15, top + plot_h - bar_h, slot * 0.7, bar_h,
                                    f"{day:%Y-%m-%d}: {number(value)}{unit}", fill))
        if (len(values) - 1 - index) % 7 == 0:  # weekly labels, ending with the last day
            chart.texts.append(Text(x + slot / 2, height - 6, f"{day:%b} {day.day}"))
    return chart


def labelled_bars(title: str, items: list[tuple[str, float]], *, unit: str = "", fill: str = COLOUR,
                  width: int = 600) -> Chart:
    """One horizontal bar per item, its label on the left and its number at its end."""
    label_w, right, row = 190, 60, 24
    chart = Chart(title=title, width=width, height=max(len(items), 1) * row + 8)
    plot_w = width - label_w - right
    highest = max((v for _, v in items), default=0) or 1
    for index, (label, value) in enumerate(items):
        y = 4 + index * row
        chart.texts.append(Text(label_w - 6, y + row / 2 + 4, label, anchor="end"))
        bar_w = plot_w * value / highest
        if value > 0:
            chart.rects.append(Rect(label_w, y + 3, bar_w, row - 6, f"{label}: {number(value)}{unit}", fill))
        chart.texts.append(Text(label_w + bar_w + 4, y + row / 2 + 4, f"{number(value)}{unit}", anchor="start"))
    return chart
