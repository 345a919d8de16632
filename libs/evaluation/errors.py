"""The error evaluating saliency maps raises for bad input (missing, unreadable or unfit files)."""
from __future__ import annotations

from libs.runtime.errors import UserError


class EvaluationError(UserError, ValueError):
    """Inputs to an evaluation are not as expected; the message is one line."""
