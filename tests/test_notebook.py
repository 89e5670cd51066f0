"""sam_course.report: numbers handed to glue() as plain Python numbers."""

import numpy as np
import pytest
import torch

from sam_course.report import as_plain_number


@pytest.mark.parametrize("value, expected, kind", [
    (3, 3, int), (True, 1, int), (np.int64(7), 7, int), (torch.tensor(5), 5, int),
    (0.25, 0.25, float), (np.float32(0.5), 0.5, float), (np.float64(1.5), 1.5, float),
    (torch.tensor(2.5, dtype=torch.float64), 2.5, float), (np.array(4.0), 4.0, float),
])
def test_numbers_become_plain_python_numbers(value, expected, kind):
    out = as_plain_number(value)
    assert type(out) is kind and out == expected
    assert "np." not in f"{out!r}"                   # what {glue:text} would otherwise print


@pytest.mark.parametrize("value", ["0.5", [1, 2], torch.tensor([1.0, 2.0]), np.array([1, 2]), None])
def test_anything_else_is_a_type_error(value):
    with pytest.raises(TypeError, match="single number"):
        as_plain_number(value)
