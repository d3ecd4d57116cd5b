"""Kernel shapes: which taps of a k x k kernel stay active.

Taps are numbered 1..k*k row-major, so for k = 3 tap t sits at
((t-1)//3, (t-1)%3) and 5 is the centre: the numbering of the ASK paper.
This module is the one home of that numbering and of the ASK presets.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from designer.errors import DesignError, shown

KERNEL_SIZES = (3, 5, 7)

# The nine presets of the ASK paper (Liu, Zhang, Lv 2021), 3x3 taps; the
# output channels of a layer are split equally among the shapes, in order.
ASK_PRESETS: dict[str, list[list[int]]] = {
    "ASK_7": [[1, 2, 4, 5, 6, 8, 9], [2, 3, 4, 5, 6, 7, 8]],
    "ASK_6": [[1, 2, 4, 5, 6, 8], [2, 3, 4, 5, 6, 8], [2, 4, 5, 6, 7, 8], [2, 4, 5, 6, 8, 9]],
    "ASK_5a": [[2, 4, 5, 6, 8]],
    "ASK_5b": [[2, 4, 5, 6, 8], [2, 4, 5, 6, 8], [2, 4, 5, 6, 8], [1, 3, 5, 7, 9]],
    "ASK_4a": [[1, 2, 4, 5], [2, 3, 5, 6], [4, 5, 7, 8], [5, 6, 8, 9]],
    "ASK_4b": [[2, 4, 5, 6], [2, 5, 6, 8], [4, 5, 6, 8], [2, 4, 5, 8]],
    "ASK_3a": [[2, 4, 5], [2, 5, 6], [4, 5, 8], [5, 6, 8]],
    "ASK_3b": [[2, 5, 8], [4, 5, 6]],
    "ASK_2": [[2, 5], [4, 5], [5, 6], [5, 8]],
}


def tap_position(tap: int, k: int = 3) -> tuple[int, int]:
    """(row, col) of tap number `tap` (1-based, row-major) in a k x k kernel."""
    return (tap - 1) // k, (tap - 1) % k


def tap_number(row: int, col: int, k: int = 3) -> int:
    """Inverse of tap_position."""
    return row * k + col + 1


@dataclass(frozen=True)
class KernelShape:
    """The active taps of one k x k kernel, in the order given.

    The order matters only for the ASK reference layout (its weights are
    stored tap-major in this order); masks and counts ignore it.
    """

    taps: tuple[int, ...]
    k: int = 3

    def __post_init__(self):
        validate_taps(self.taps, self.k)
        object.__setattr__(self, "taps", tuple(self.taps))

    @classmethod
    def full(cls, k: int = 3) -> "KernelShape":
        return cls(tuple(range(1, k * k + 1)), k)

    @property
    def positions(self) -> list[tuple[int, int]]:
        return [tap_position(t, self.k) for t in self.taps]

    def mask(self) -> list[list[bool]]:
        """k x k booleans, True where a tap is active."""
        active = set(self.taps)
        return [[tap_number(r, c, self.k) in active for c in range(self.k)] for r in range(self.k)]

    def picture(self) -> str:
        """A small text picture: '#' active, '.' inactive, one row per line."""
        return "\n".join("".join("#" if on else "." for on in row) for row in self.mask())

    def __len__(self) -> int:
        return len(self.taps)


def validate_taps(taps, k: int, where: str | None = None) -> None:
    """Raise DesignError unless `taps` is a non-empty list of distinct taps of a k x k kernel."""
    if k not in KERNEL_SIZES:
        raise DesignError(f"kernel size {shown(k)} is not supported (choose one of {KERNEL_SIZES})", where)
    if not isinstance(taps, (list, tuple)):
        raise DesignError(f"a shape must be a list of tap numbers, got {type(taps).__name__}", where)
    if len(taps) == 0:
        raise DesignError("a shape is empty: it needs at least one active tap", where)
    for tap in taps:
        if isinstance(tap, bool) or not isinstance(tap, int):
            raise DesignError(f"tap {shown(tap)} is not an integer", where)
        if not 1 <= tap <= k * k:
            raise DesignError(f"tap {shown(tap)} is out of range 1..{k * k} for a {k}x{k} kernel", where)
    duplicates = sorted(t for t, n in Counter(taps).items() if n > 1)
    if duplicates:
        raise DesignError(f"duplicate taps {duplicates}", where)


def preset_shapes(name: str, where: str | None = None) -> list[KernelShape]:
    """The shapes of an ASK preset; DesignError naming the choices if unknown."""
    if name not in ASK_PRESETS:
        raise DesignError(f"unknown preset {shown(name)} (choose one of {', '.join(ASK_PRESETS)})", where)
    return [KernelShape(tuple(taps)) for taps in ASK_PRESETS[name]]


def mask_from_rows(rows: list[list[bool]]) -> KernelShape:
    """The shape drawn as a k x k grid of toggles (row-major taps, sorted)."""
    k = len(rows)
    taps = tuple(tap_number(r, c, k) for r in range(k) for c in range(k) if rows[r][c])
    return KernelShape(taps, k)
