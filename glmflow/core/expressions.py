"""Contrast expressions, parsed and never evaluated.

nilearn turns a contrast string such as ``"2*a - b"`` into a vector with
``pandas.DataFrame.eval``, which runs arbitrary Python: ``'a + 0*@pd.io.common.os.system("…")'``
starts a shell command. Here a small recursive-descent parser accepts only

* names of design columns: ``[A-Za-z_][A-Za-z0-9_.]*`` or any text between backticks
  (```weird name-1```, as pandas allows),
* numbers (``2``, ``0.5``, ``.5``, ``1e-3``),
* binary ``+ - * /``, unary ``+ -`` and parentheses,

and rejects anything else with a :class:`~glmflow.core.errors.ContrastError` that shows the
expression, the offending token and its position. The expression must be *linear* in the
columns: multiplying two columns, dividing by a column, or adding a constant to a column
(``"a + 1"``, which nilearn silently turns into ``[2, 1, 1, …]``) are errors.

For every expression that is valid here, the vector is bit-for-bit the one nilearn's
``expression_to_contrast_vector`` returns: the same float64 operations are applied to the
same columns of an identity matrix, in the same order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from glmflow.core.errors import ContrastError

__all__ = ["contrast_names", "contrast_vector_from_expression", "tokenize"]

_ALLOWED = (
    "Only design column names, numbers, + - * / and parentheses are allowed "
    "(put a column name with other characters between backticks: `my column`)."
)

_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<quoted>`[^`]*`)
  | (?P<op>[-+*/()])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    """One lexical unit of an expression."""

    kind: str  # "number", "name", "op" or "end"
    text: str  # as written (for "name" from backticks: the text between them)
    pos: int  # 0-based offset of the token's first character in the expression
    raw: str  # as written, backticks included


def _error(expression: str, message: str, token: str | None, pos: int | None, columns=None):
    """Build a ContrastError that quotes the expression with a caret under ``pos``."""
    lines = [f"Contrast expression {expression!r} is not valid: {message}"]
    if pos is not None:
        lines.append(f"    {expression}")
        lines.append("    " + " " * pos + "^")
    if columns is not None:
        lines.append(f"Available design columns: {', '.join(map(str, columns))}.")
    err = ContrastError("\n".join(lines))
    err.expression = expression
    err.token = token
    err.position = pos
    return err


def tokenize(expression: str) -> list[Token]:
    """Split ``expression`` into tokens; raise ContrastError at the first foreign character.

    Parameters
    ----------
    expression : str
        The contrast expression.

    Returns
    -------
    list of Token
        Ending with a token of kind ``"end"``.
    """
    return list(_iter_tokens(expression))


def _iter_tokens(expression: str):
    """Tokens one by one, so the parser reports the left-most problem first."""
    pos = 0
    while pos < len(expression):
        match = _TOKEN_RE.match(expression, pos)
        if match is None:
            char = expression[pos]
            if char == "`":
                raise _error(expression, "unclosed backtick '`'", "`", pos)
            raise _error(
                expression,
                f"unexpected character {char!r} at position {pos}. {_ALLOWED}",
                char,
                pos,
            )
        kind = match.lastgroup
        raw = match.group()
        if kind == "quoted":
            yield Token("name", raw[1:-1], pos, raw)
        elif kind != "space":
            yield Token(kind, raw, pos, raw)
        pos = match.end()
    yield Token("end", "", len(expression), "")


class _Const:
    """A constant sub-expression (no design column in it)."""

    __slots__ = ("value", "pos")

    def __init__(self, value: float, pos: int):
        self.value = value
        self.pos = pos


class _Linear:
    """A linear combination of design columns, as a vector over the columns."""

    __slots__ = ("vector", "pos")

    def __init__(self, vector: np.ndarray, pos: int):
        self.vector = vector
        self.pos = pos


class _Parser:
    """Recursive descent over the grammar

    expr   := term (("+" | "-") term)*
    term   := unary (("*" | "/") unary)*
    unary  := ("+" | "-") unary | atom
    atom   := NUMBER | NAME | "(" expr ")"

    Values are applied with numpy in the order the tree gives, as pandas does.
    """

    def __init__(self, expression: str, columns: list[str]):
        self.expression = expression
        self.columns = columns
        self.index = {name: i for i, name in enumerate(columns)}
        self.eye = np.eye(len(columns))
        self._stream = _iter_tokens(expression)
        self._current = next(self._stream)

    # -- helpers -------------------------------------------------------------------------
    @property
    def token(self) -> Token:
        return self._current

    def advance(self) -> Token:
        token = self._current
        if token.kind != "end":
            self._current = next(self._stream)
        return token

    def fail(self, message: str, token: Token, *, columns=False):
        text = token.raw or "end of expression"
        return _error(
            self.expression,
            message,
            text,
            token.pos,
            self.columns if columns else None,
        )

    # -- grammar -------------------------------------------------------------------------
    def parse(self):
        if self.token.kind == "end":
            raise _error(self.expression, "the expression is empty.", "", None, self.columns)
        value = self.expr()
        if self.token.kind != "end":
            token = self.token
            if token.kind == "op" and token.text == ")":
                raise self.fail(f"unmatched ')' at position {token.pos}.", token)
            raise self.fail(
                f"expected an operator (+ - * /) before {token.raw!r} at position {token.pos}.",
                token,
            )
        if isinstance(value, _Const):
            raise _error(
                self.expression,
                "it contains no design column, only a constant.",
                None,
                None,
                self.columns,
            )
        return value.vector

    def expr(self):
        left = self.term()
        while self.token.kind == "op" and self.token.text in "+-":
            op = self.advance()
            right = self.term()
            left = self.combine(op, left, right)
        return left

    def term(self):
        left = self.unary()
        while self.token.kind == "op" and self.token.text in "*/":
            op = self.advance()
            right = self.unary()
            left = self.combine(op, left, right)
        return left

    def unary(self):
        token = self.token
        if token.kind == "op" and token.text in "+-":
            self.advance()
            operand = self.unary()
            if token.text == "+":
                return operand
            if isinstance(operand, _Const):
                return _Const(-operand.value, token.pos)
            return _Linear(-operand.vector, token.pos)
        return self.atom()

    def atom(self):
        token = self.advance()
        if token.kind == "number":
            value = float(token.text)
            if not math.isfinite(value):
                raise self.fail(f"the number {token.text!r} is too large.", token)
            return _Const(value, token.pos)
        if token.kind == "name":
            if token.text not in self.index:
                raise self.fail(
                    f"unknown name {token.raw!r} at position {token.pos}; "
                    "it is not a column of the design matrix.",
                    token,
                    columns=True,
                )
            return _Linear(self.eye[:, self.index[token.text]], token.pos)
        if token.kind == "op" and token.text == "(":
            value = self.expr()
            closing = self.token
            if not (closing.kind == "op" and closing.text == ")"):
                raise self.fail(
                    f"expected ')' to close the '(' at position {token.pos}, "
                    "found "
                    + (repr(closing.raw) if closing.raw else "the end of the expression")
                    + ".",
                    closing,
                )
            self.advance()
            return value
        if token.kind == "end":
            raise self.fail("the expression ends where a name or number is expected.", token)
        raise self.fail(
            f"unexpected {token.raw!r} at position {token.pos}; "
            "a name, a number or '(' is expected here.",
            token,
        )

    def combine(self, op: Token, left, right):
        """Apply a binary operator, keeping the expression linear."""
        lconst, rconst = isinstance(left, _Const), isinstance(right, _Const)
        symbol = op.text
        if lconst and rconst:
            if symbol == "/" and right.value == 0:
                raise self.fail(f"division by zero at position {op.pos}.", op)
            value = _apply(symbol, left.value, right.value)
            return _Const(value, left.pos)
        if symbol in "+-":
            if lconst or rconst:
                const = left if lconst else right
                raise self.fail(
                    f"the constant {self.expression_at(const)!r} is added to a design "
                    f"column by the {symbol!r} at position {op.pos}; a contrast is a "
                    "weighted sum of columns and cannot contain a constant term.",
                    op,
                )
            return _Linear(_apply(symbol, left.vector, right.vector), left.pos)
        if symbol == "*":
            if not (lconst or rconst):
                raise self.fail(
                    f"'*' at position {op.pos} multiplies two design columns; "
                    "a contrast must be linear (a number times a column).",
                    op,
                )
            if lconst:
                return _Linear(left.value * right.vector, left.pos)
            return _Linear(left.vector * right.value, left.pos)
        # division
        if not rconst:
            raise self.fail(
                f"'/' at position {op.pos} divides by a design column; "
                "a contrast must be linear (columns may only be divided by a number).",
                op,
            )
        if right.value == 0:
            raise self.fail(f"division by zero at position {op.pos}.", op)
        return _Linear(left.vector / right.value, left.pos)

    def expression_at(self, const: _Const) -> str:
        """Text of a constant operand, for messages."""
        value = const.value
        return repr(int(value)) if value.is_integer() else repr(value)


def _apply(symbol, left, right):
    if symbol == "+":
        return left + right
    if symbol == "-":
        return left - right
    if symbol == "*":
        return left * right
    return left / right


def contrast_vector_from_expression(expression: str, columns: Sequence[str]) -> np.ndarray:
    """Turn a contrast expression into a vector over the design columns, without ``eval``.

    Parameters
    ----------
    expression : str
        For example ``"audio - video"``, ``"2*a - b"``, ``"(a + b)/2 - c"``, ``"-a"``,
        ``"`weird name-1` - b"``. A string equal to a column name is that column, even if
        it contains operator characters (nilearn's rule).
    columns : sequence of str
        The design matrix column names, in order.

    Returns
    -------
    numpy.ndarray of shape (len(columns),), float64
        Identical to nilearn's ``expression_to_contrast_vector(expression, columns)``.

    Raises
    ------
    ContrastError
        For anything but names of design columns, numbers, ``+ - * /`` and parentheses, for
        unknown names (the message lists the columns), for non-linear terms, constant terms,
        division by zero and empty expressions. The exception carries ``expression``,
        ``token`` and ``position`` attributes; the message quotes the expression with a caret
        under the offending token.
    """
    if not isinstance(expression, str):
        raise ContrastError(
            f"A contrast expression must be a string; got {type(expression).__name__} "
            f"{expression!r}."
        )
    columns = [str(column) for column in columns]
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    if duplicated:
        raise ContrastError(
            f"The design matrix has duplicated column names {duplicated}; a contrast "
            f"expression such as {expression!r} would be ambiguous."
        )
    if not columns:
        raise ContrastError(
            f"Contrast expression {expression!r} cannot be used: the design has no columns."
        )
    if expression in columns:
        # nilearn's first rule: an exact column name wins over parsing.
        vector = np.zeros(len(columns))
        vector[columns.index(expression)] = 1.0
        return vector
    return _Parser(expression, columns).parse()


def contrast_names(expression: str) -> list[str]:
    """Check an expression's syntax before any design exists; return the names it uses.

    For the workflow factory, the facade and the command: a malformed or malicious
    expression fails at once, before any run is read. Every name is taken to be a column,
    so only unknown names are left for :func:`contrast_vector_from_expression` to find
    once the design is known.

    Returns
    -------
    list of str
        The column names used, in order of first appearance.

    Raises
    ------
    ContrastError
        As :func:`contrast_vector_from_expression`, except for unknown names.
    """
    if not isinstance(expression, str):
        raise ContrastError(
            f"A contrast expression must be a string; got {type(expression).__name__} "
            f"{expression!r}."
        )
    names = list(dict.fromkeys(t.text for t in tokenize(expression) if t.kind == "name"))
    if not names:
        # no name at all: let the parser produce its usual message (empty or constant)
        _Parser(expression, ["<no column>"]).parse()
    _Parser(expression, names).parse()
    return names
