"""Which estimator options name columns of the data, read from the estimators' signatures.

An option annotated :data:`Column` (or :data:`Columns` for a list) is a column name, so a
protocol's options can be checked against the panel's columns when the protocol loads
(:mod:`analysis.protocol`), from the same signature that is already the options' schema.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from typing import Annotated

#: Marker carried by the two aliases below.
COLUMN = "column"
Column = Annotated[str, COLUMN]
Columns = Annotated[Sequence[str], COLUMN]


def _is_column(hint: object) -> bool:
    if typing.get_origin(hint) is Annotated:
        return COLUMN in hint.__metadata__
    return any(_is_column(arg) for arg in typing.get_args(hint))


def column_options(estimator: Callable[..., object]) -> tuple[str, ...]:
    """The estimator's options that name columns, in signature order."""
    hints = typing.get_type_hints(estimator, include_extras=True)
    return tuple(name for name, hint in hints.items() if name != "return" and _is_column(hint))
