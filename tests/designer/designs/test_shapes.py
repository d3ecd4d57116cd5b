"""Kernel shapes: tap numbering, presets, validation, pictures."""
import pytest

from designer.designs.shapes import ASK_PRESETS, KernelShape, mask_from_rows, preset_shapes, tap_number, tap_position
from designer.errors import DesignError


def test_taps_are_row_major_and_five_is_the_centre():
    assert tap_position(1) == (0, 0)
    assert tap_position(3) == (0, 2)
    assert tap_position(5) == (1, 1)
    assert tap_position(9) == (2, 2)
    assert tap_position(13, k=5) == (2, 2)
    assert all(tap_number(*tap_position(t, k), k) == t for k in (3, 5, 7) for t in range(1, k * k + 1))


def test_presets_are_the_papers():
    assert list(ASK_PRESETS) == ["ASK_7", "ASK_6", "ASK_5a", "ASK_5b", "ASK_4a", "ASK_4b", "ASK_3a", "ASK_3b", "ASK_2"]
    assert ASK_PRESETS["ASK_5a"] == [[2, 4, 5, 6, 8]]
    assert ASK_PRESETS["ASK_2"] == [[2, 5], [4, 5], [5, 6], [5, 8]]
    assert ASK_PRESETS["ASK_5b"][3] == [1, 3, 5, 7, 9]
    for name, shapes in ASK_PRESETS.items():
        taps = int(name[4])
        assert all(len(s) == taps for s in shapes), name


def test_picture_of_the_plus_shape():
    assert KernelShape((2, 4, 5, 6, 8)).picture() == ".#.\n###\n.#."


def test_mask_round_trip_on_a_5x5_grid():
    shape = KernelShape((1, 7, 13, 19, 25), k=5)
    assert mask_from_rows(shape.mask()) == shape


@pytest.mark.parametrize("taps, k, message", [
    ((), 3, "empty"),
    ((0, 5), 3, "tap 0 is out of range 1..9"),
    ((10,), 3, "tap 10 is out of range 1..9"),
    ((26,), 5, "tap 26 is out of range 1..25"),
    ((2, 5, 2), 3, "duplicate taps [2]"),
    (("5",), 3, "not an integer"),
    ((True,), 3, "not an integer"),
    ((5,), 4, "kernel size 4 is not supported"),
])
def test_bad_shapes_are_refused_with_the_reason(taps, k, message):
    with pytest.raises(DesignError, match=message.replace("[", r"\[").replace("]", r"\]")):
        KernelShape(taps, k)


def test_unknown_preset_names_the_choices():
    with pytest.raises(DesignError, match="unknown preset 'ASK_9'.*ASK_7"):
        preset_shapes("ASK_9")
