"""Safe arithmetic and text counting for the ``calculate`` tool.

Expressions are parsed with :mod:`ast` and only numbers, ``+ - * / // % **``,
unary ``+``/``-`` and parentheses are evaluated: no names, calls, attributes
or anything else. Limits keep one request cheap: at most
:data:`MAX_EXPRESSION_CHARS` characters, exponents of at most
:data:`MAX_EXPONENT` in absolute value, and integer results of at most
:data:`MAX_RESULT_DIGITS` digits.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from typing import cast

MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 1000
MAX_RESULT_DIGITS = 1000
MAX_DEPTH = 50

Number = int | float
_MAX_BITS = int(MAX_RESULT_DIGITS * 3.33)


class CalculationError(ValueError):
    """The expression cannot be evaluated; the message says why."""


_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_DIVISIONS = (ast.Div, ast.FloorDiv, ast.Mod)


def _check(value: Number) -> Number:
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculationError("result is not a finite number")
    if isinstance(value, int) and abs(value).bit_length() > _MAX_BITS:
        raise CalculationError(f"result has more than {MAX_RESULT_DIGITS} digits")
    return value


def _eval(node: ast.AST, depth: int) -> Number:
    """Evaluate one node, dispatching on its exact class (``ast.parse`` makes no subclasses)."""
    if depth > MAX_DEPTH:
        raise CalculationError(f"expression nests deeper than {MAX_DEPTH} levels")
    kind = node.__class__
    if kind is ast.BinOp:
        bin_op = cast(ast.BinOp, node)
        op = bin_op.op.__class__
        binary = _BINARY.get(op)
        if binary is not None:
            left = _eval(bin_op.left, depth + 1)
            right = _eval(bin_op.right, depth + 1)
            if op is ast.Pow:
                if abs(right) > MAX_EXPONENT:
                    raise CalculationError(f"exponent {right} exceeds the limit of {MAX_EXPONENT}")
                if isinstance(left, int) and isinstance(right, int) and abs(left).bit_length() * right > _MAX_BITS:
                    raise CalculationError(f"result has more than {MAX_RESULT_DIGITS} digits")
            elif op in _DIVISIONS and right == 0:
                raise CalculationError("division by zero")
            try:
                return _check(binary(left, right))
            except (OverflowError, ZeroDivisionError) as exc:
                raise CalculationError(str(exc)) from None
    elif kind is ast.Constant:
        value = cast(ast.Constant, node).value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _check(value)
    elif kind is ast.UnaryOp:
        unary_op = cast(ast.UnaryOp, node)
        unary = _UNARY.get(unary_op.op.__class__)
        if unary is not None:
            return _check(unary(_eval(unary_op.operand, depth + 1)))
    elif kind is ast.Expression:
        return _eval(cast(ast.Expression, node).body, depth + 1)
    raise CalculationError(f"unsupported element {kind.__name__!r}: only numbers, + - * / // % ** and ()")


def evaluate(expression: str) -> Number:
    """Evaluate an arithmetic expression safely.

    ``^`` is accepted as a synonym of ``**`` and ``×``/``÷`` of ``*``/``/``.

    Args:
        expression: e.g. ``"(2 + 3) * 4 ** 2"``.

    Returns:
        The value (``int`` when every operand and step stays integral).

    Raises:
        CalculationError: Empty, too long, not arithmetic, or beyond the limits.
    """
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if not text:
        raise CalculationError("no expression to calculate")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise CalculationError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise CalculationError(f"not an arithmetic expression: {expression.strip()!r}") from None
    return _eval(tree, 0)


_COUNT = re.compile(
    r"^\s*(?:count|how\s+many)\s+(?:the\s+)?(?P<unit>words?|characters?|chars?|letters?|lines?)"
    r"(?:\s+(?:are\s+)?(?:in|of)|\s+(?:does|do|is|are)\s+(?:this|the|that|my)\s+\w+\s+(?:have|has|contain)|"
    r"\s+(?:does|do)\s+.{1,40}?\s+(?:have|contain))\s*:?\s*(?P<text>.+)$",
    re.IGNORECASE | re.DOTALL,
)
_QUOTED = re.compile(r"^([\"'“‘])(.*)([\"'”’])$", re.DOTALL)
#: "in this sentence": the text to count is the query itself.
_SELF = re.compile(r"^(?:this|the|my)\s+(?:sentence|query|question|request|message|text)\W*$", re.IGNORECASE)


def parse_count(query: str) -> tuple[str, str] | None:
    """Parse ``count words/characters/letters/lines in <text>``.

    Returns:
        ``(unit, text)`` with unit one of ``words``, ``characters``, ``letters``,
        ``lines`` and surrounding quotes removed from text (the whole query when
        the text is "this sentence", "this query", …), or ``None``.
    """
    m = _COUNT.match(query)
    if m is None:
        return None
    unit = m.group("unit").lower().rstrip("s")
    unit = {"word": "words", "character": "characters", "char": "characters", "letter": "letters"}.get(unit, "lines")
    text = m.group("text").strip()
    q = _QUOTED.match(text)
    if q is not None:
        text = q.group(2)
    elif _SELF.match(text):
        text = query.strip()
    return unit, text


def count(unit: str, text: str) -> int:
    """Count ``words`` (whitespace-separated), ``characters``, ``letters`` (alphabetic) or ``lines`` in ``text``."""
    if unit == "words":
        return len(text.split())
    if unit == "characters":
        return len(text)
    if unit == "letters":
        return sum(1 for c in text if c.isalpha())
    return len(text.splitlines()) or (1 if text else 0)
