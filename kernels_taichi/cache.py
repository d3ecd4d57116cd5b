"""A small cache of packed weight layouts, valid until the weights change.

An entry is keyed by the identity of the source tensors and stamped with
their data pointer and version counter (bumped by every in-place update,
optimizer steps included), and it holds weak references so that a new
tensor that happens to reuse a freed address never hits a stale entry.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Callable, Hashable, Sequence

import torch

MAX_ENTRIES = 128

_entries: OrderedDict = OrderedDict()


def cached_pack(key: Hashable, tensors: Sequence[torch.Tensor], build: Callable[[], object]):
    """build() once per (key, tensors) until one of the tensors changes or dies."""
    full_key = (key, tuple(id(t) for t in tensors))
    stamp = tuple((t.data_ptr(), t._version) for t in tensors)
    entry = _entries.get(full_key)
    if entry is not None and entry[1] == stamp and all(ref() is t for ref, t in zip(entry[0], tensors)):
        _entries.move_to_end(full_key)
        return entry[2]
    value = build()
    _entries[full_key] = ([weakref.ref(t) for t in tensors], stamp, value)
    _entries.move_to_end(full_key)
    while len(_entries) > MAX_ENTRIES:
        _entries.popitem(last=False)
    return value


def clear() -> None:
    _entries.clear()
