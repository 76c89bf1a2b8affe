"""glue_findings hands glue plain Python values, whatever the findings hold."""

import numpy as np
import pytest
import torch

from bnlib.experiments import plain


def test_plain_turns_numpy_and_torch_scalars_into_python_numbers():
    assert type(plain(np.float32(0.5))) is float and plain(np.float32(0.5)) == 0.5
    assert type(plain(np.int64(3))) is int
    assert type(plain(torch.tensor(2.5))) is float
    assert type(plain(torch.tensor(7))) is int
    assert plain("rose") == "rose"
    assert plain(True) is True


def test_plain_refuses_what_glue_cannot_format():
    with pytest.raises(TypeError, match="number or a string"):
        plain([1, 2])
    with pytest.raises(TypeError):
        plain(torch.zeros(3))
