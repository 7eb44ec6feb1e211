"""Checks every backend must pass, shared by the backend test files."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge_sdk.errors import BackendError, ContextOverflowError


def check_forward_refuses_bad_calls(be: Any) -> None:
    """A backend with ctx 8 over the tiny vocabulary (306 tokens) refuses positions past its context, unknown
    token ids and empty calls (`backends/base.check_forward_tokens`), then closes and refuses every call."""
    with pytest.raises(ContextOverflowError, match="positions 6..9 do not fit in the context of 8"):
        be.forward(np.array([1, 2, 3, 4]), 6)
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 306\)"):
        be.forward(np.array([306]), 0)
    with pytest.raises(ValueError, match="at least one token"):
        be.forward(np.array([], dtype=np.int64), 0)
    be.close()
    with pytest.raises(BackendError, match="closed"):
        be.forward(np.array([1]), 0)
