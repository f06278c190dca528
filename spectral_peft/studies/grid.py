"""Factorial grids of adapter settings: parsing ``axis=v1,v2`` items, the cross product, and the
points where an axis does not apply.

A grid maps axes (columns of results.csv) to their levels. Its points are the cross product,
with the settings of axes outside the grid taken from the configuration. An axis that does not
apply to a point is dropped there (δ for a selector without δ, such as ``random``), and the points
that then coincide are run once: ``selector=random,mixed delta=0.3,0.7`` has three points, not four.
Every named study is a one-axis grid; ``studies/sweep.py --grid ...`` is any grid.
"""
from __future__ import annotations

import itertools
import math

__all__ = ["AXES", "applicable_axes", "format_value", "grid_points", "parse_baseline", "parse_grid", "point_key"]

# axis -> type of its levels (all are columns of results.csv and keys of a run)
AXES: dict[str, type] = {"basis": str, "selector": str, "n": int, "delta": float, "alpha": float}


def _parse_value(axis: str, text: str):
    kind = AXES[axis]
    try:
        return kind(text)
    except ValueError:
        raise SystemExit(f"error: {axis}={text!r}: {axis} takes {kind.__name__} values") from None


def parse_grid(items: list[str]) -> dict[str, list]:
    """``["basis=dht,dct", "n=256,1024"]`` -> ``{"basis": ["dht", "dct"], "n": [256, 1024]}``."""
    grid: dict[str, list] = {}
    for item in items:
        axis, sep, values = item.partition("=")
        axis = axis.strip()
        if not sep or not values.strip():
            raise SystemExit(f"error: grid item {item!r} must look like AXIS=V1,V2,... (axes: {', '.join(AXES)})")
        if axis not in AXES:
            raise SystemExit(f"error: unknown grid axis {axis!r}; axes: {', '.join(AXES)}")
        if axis in grid:
            raise SystemExit(f"error: grid axis {axis!r} given twice")
        levels = [_parse_value(axis, v) for v in values.replace(",", " ").split()]
        if len(set(levels)) != len(levels):
            raise SystemExit(f"error: grid axis {axis!r} repeats a level: {values}")
        grid[axis] = levels
    return grid


def applicable_axes(point: dict) -> set[str]:
    """The axes that mean something for ``point`` (δ only for selectors that take a δ)."""
    from .methods import selector_takes_delta

    axes = set(AXES)
    if not selector_takes_delta(point["selector"]):
        axes.discard("delta")
    return axes


def grid_points(grid: dict[str, list], defaults: dict) -> list[dict]:
    """The cross product of ``grid`` over ``defaults`` (values of every axis), in grid order,
    with non-applicable axes set to None and coinciding points kept once."""
    axes = list(grid)
    points, seen = [], set()
    for combo in itertools.product(*(grid[a] for a in axes)):
        point = {a: defaults.get(a) for a in AXES}
        point.update(zip(axes, combo))
        for axis in set(AXES) - applicable_axes(point):
            point[axis] = None
        key = point_key(point)
        if key not in seen:
            seen.add(key)
            points.append(point)
    return points


def point_key(point: dict) -> tuple:
    """A hashable identity of a point over every axis, normalised (5e-1 == 0.5; empty == None)."""
    out = []
    for axis, kind in AXES.items():
        v = point.get(axis)
        if v is None or (isinstance(v, float) and math.isnan(v)) or v == "":
            out.append(None)
        else:
            out.append(kind(float(v)) if kind is int else kind(v))
    return tuple(out)


def format_value(axis: str, value) -> str:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if AXES.get(axis) is float:
        return f"{float(value):g}"
    if AXES.get(axis) is int:
        return str(int(float(value)))
    return str(value)


def parse_baseline(spec: str | None, grid: dict[str, list]) -> dict | None:
    """``"delta=0"``, ``"selector=random,basis=dht"`` or a bare level of the first grid axis
    (``"0.0"``) -> ``{axis: value}``; None -> the first level of the first grid axis."""
    if not grid:
        return None
    first = next(iter(grid))
    if spec is None or spec == "":
        return {first: grid[first][0]}
    out = {}
    for part in spec.split(","):
        axis, sep, value = part.partition("=")
        if not sep:
            axis, value = first, part
        axis = axis.strip()
        if axis not in AXES:
            raise SystemExit(f"error: --baseline {spec!r}: unknown axis {axis!r}; axes: {', '.join(AXES)}")
        out[axis] = _parse_value(axis, value.strip())
    return out
