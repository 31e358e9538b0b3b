"""Argument checks shared by the geometry and sampling modules (``regions``, ``masking``):
integers, grid sizes and integer arrays, with messages that name the argument."""
import operator

import numpy as np


def as_index(value, name):
    """value as a Python int (anything with __index__), else TypeError naming it."""
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None


def check_grid(grid, largest):
    """A grid side in [1, largest]."""
    grid = as_index(grid, "grid")
    if not 1 <= grid <= largest:
        raise ValueError(f"grid must be in [1, {largest}], got {grid}")
    return grid


def int_array(value, name):
    """value as an array of integers (or booleans), else ValueError naming it."""
    arr = np.asarray(value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr
