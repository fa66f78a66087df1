"""Contrast expressions: same vectors as nilearn, and nothing is ever evaluated."""

import random
import re

import numpy as np
import pytest
from nilearn.glm.contrasts import expression_to_contrast_vector

from glmflow.core.errors import ContrastError
from glmflow.core.expressions import (
    contrast_names,
    contrast_vector_from_expression,
    tokenize,
)

COLUMNS = [
    "a",
    "b",
    "c",
    "audio",
    "audio_derivative",
    "audio_dispersion",
    "video_delay_1",
    "video_delay_2",
    "trans_x",
    "drift_1",
    "constant",
]


def assert_same_as_nilearn(expression, columns=COLUMNS):
    ours = contrast_vector_from_expression(expression, columns)
    theirs = expression_to_contrast_vector(expression, columns)
    assert ours.dtype == np.float64
    assert ours.shape == (len(columns),)
    # bit-for-bit, signed zeros included
    assert ours.tobytes() == np.asarray(theirs, dtype=np.float64).tobytes(), (
        expression,
        ours,
        theirs,
    )


@pytest.mark.parametrize(
    "expression",
    [
        "a",
        "2*a - b",
        "(a+b)/2 - c",
        "-a",
        "+a",
        "a - 0.5*b",
        "a/3",
        "a - b",
        "a + b + c",
        "a - -b",
        "--a",
        "1/3*a",
        "2*3*a",
        "a*2*3",
        "0.1*0.2*a",
        "a*0.1*0.2",
        "-(a - b)/7*3",
        "(a - b)*(1/3)",
        "((a))",
        "3*(a + 2*(b - c))",
        "audio - video_delay_1",
        "audio_derivative + audio_dispersion",
        "(video_delay_1 + video_delay_2)/2",
        "1e-3*a - 2.5E+2*b",
        ".5*a - 5.*b",
        "a/3 + b/3 + c/3",
        "trans_x - 2*drift_1 + constant",
        "`a` - `b`",
        "  a\t-  b  ",
        "0*a + b",
        "a - a",
    ],
)
def test_same_vector_as_nilearn(expression):
    assert_same_as_nilearn(expression)


def test_known_values():
    vec = contrast_vector_from_expression("(a+b)/2 - c", ["a", "b", "c", "constant"])
    np.testing.assert_array_equal(vec, [0.5, 0.5, -1.0, 0.0])
    vec = contrast_vector_from_expression("2*a - b", ["a", "b"])
    np.testing.assert_array_equal(vec, [2.0, -1.0])


def _random_linear(rng, depth):
    """A random linear expression over COLUMNS (never divides by a column)."""
    if depth == 0:
        return rng.choice(COLUMNS)
    kind = rng.randrange(8)
    sub = _random_linear(rng, depth - 1)
    number = rng.choice(["2", "3", "0.5", "1.5", "7", "1e-2", "0.1", "10", "(1/3)", "(2*3)"])
    if kind == 0:
        return f"({sub})"
    if kind == 1:
        return f"{number}*{sub}"
    if kind == 2:
        return f"{sub}*{number}"
    if kind == 3:
        return f"({sub})/{number}"
    if kind == 4:
        return f"{sub} + {_random_linear(rng, depth - 1)}"
    if kind == 5:
        return f"{sub} - ({_random_linear(rng, depth - 1)})"
    if kind == 6:
        return f"-({sub})"
    return f"{sub} - {_random_linear(rng, depth - 1)}"


def test_random_expressions_match_nilearn():
    rng = random.Random(20261128)
    expressions = {_random_linear(rng, rng.randrange(1, 5)) for _ in range(300)}
    assert len(expressions) > 150
    for expression in expressions:
        assert_same_as_nilearn(expression)


def test_exact_column_name_wins():
    # nilearn: a string equal to a column name is that column, even with operators in it.
    columns = ["a-b", "a", "b"]
    np.testing.assert_array_equal(contrast_vector_from_expression("a-b", columns), [1, 0, 0])
    np.testing.assert_array_equal(
        contrast_vector_from_expression("a-b", columns),
        expression_to_contrast_vector("a-b", columns),
    )


def test_backticks_for_weird_names():
    columns = ["weird name-1", "b"]
    vec = contrast_vector_from_expression("2*`weird name-1` - b", columns)
    np.testing.assert_array_equal(vec, [2.0, -1.0])


def test_dotted_column_names():
    vec = contrast_vector_from_expression("x.y - b", ["x.y", "b"])
    np.testing.assert_array_equal(vec, [1.0, -1.0])


def test_tokenizer_positions():
    tokens = tokenize("2*a - `b c`")
    assert [(t.kind, t.text, t.pos) for t in tokens] == [
        ("number", "2", 0),
        ("op", "*", 1),
        ("name", "a", 2),
        ("op", "-", 4),
        ("name", "b c", 6),
        ("end", "", 11),
    ]


def test_shell_injection_is_rejected_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    expression = f'a - b + 0*@pd.io.common.os.system("touch {marker}")'
    with pytest.raises(ContrastError) as info:
        contrast_vector_from_expression(expression, ["a", "b"])
    assert not marker.exists()
    err = info.value
    assert err.token == "@"
    assert err.position == expression.index("@")
    assert "'@'" in str(err)
    assert f"position {expression.index('@')}" in str(err)
    assert expression in str(err)


def test_the_payload_is_live_in_nilearn(tmp_path):
    """The same payload does run a shell command through nilearn (pandas eval)."""
    marker = tmp_path / "nilearn_ran_it"
    expression = f'a - b + 0*@pd.io.common.os.system("touch {marker}")'
    try:
        expression_to_contrast_vector(expression, ["a", "b"])
    except Exception:  # nilearn may fail afterwards; what matters is the side effect
        pass
    assert marker.exists()


def test_attribute_access_is_an_unknown_name(tmp_path):
    marker = tmp_path / "pwned2"
    expression = f'a + 0*pd.io.common.os.system("touch {marker}")'
    with pytest.raises(ContrastError) as info:
        contrast_vector_from_expression(expression, ["a", "b"])
    assert not marker.exists()
    assert info.value.token == "pd.io.common.os.system"
    assert "unknown name" in str(info.value)


@pytest.mark.parametrize(
    "expression, token, position, words",
    [
        ("a + 0*@pd.io.common.os.system('ls')", "@", 6, ["unexpected character"]),
        ("a ; b", ";", 2, ["unexpected character"]),
        ("a[0]", "[", 1, ["unexpected character"]),
        ("a == b", "=", 2, ["unexpected character"]),
        ("a % 2", "%", 2, ["unexpected character"]),
        ("a**2", "*", 2, ["unexpected '*'"]),
        ("a//2", "/", 2, ["unexpected '/'"]),
        ("a*b", "*", 1, ["multiplies two design columns", "linear"]),
        ("a/b", "/", 1, ["divides by a design column", "linear"]),
        ("1/a", "/", 1, ["divides by a design column"]),
        ("a + 1", "+", 2, ["constant", "added"]),
        ("2 - b", "-", 2, ["constant"]),
        ("a/0", "/", 1, ["division by zero"]),
        ("a/(1-1)", "/", 1, ["division by zero"]),
        ("(a", "end of expression", 2, ["expected ')'"]),
        ("a)", ")", 1, ["unmatched ')'"]),
        ("a b", "b", 2, ["expected an operator"]),
        ("2a", "a", 1, ["expected an operator"]),
        ("a -", "end of expression", 3, ["ends where a name or number"]),
        ("zz - a", "zz", 0, ["unknown name 'zz'", "Available design columns: a, b"]),
        ("a.__class__", "a.__class__", 0, ["unknown name"]),
        ("`a", "`", 0, ["unclosed backtick"]),
        ("a and b", "and", 2, ["expected an operator"]),
        ("lambda: 0", ":", 6, ["unexpected character"]),
        ('"a"', '"', 0, ["unexpected character"]),
        ("1e999*a", "1e999", 0, ["too large"]),
        ("a ä", "ä", 2, ["unexpected character", "backticks"]),
    ],
)
def test_errors_show_token_and_position(expression, token, position, words):
    with pytest.raises(ContrastError) as info:
        contrast_vector_from_expression(expression, ["a", "b"])
    err = info.value
    assert err.token == token
    assert err.position == position
    message = str(err)
    assert repr(expression) in message
    for word in words:
        assert word in message
    # the caret line points at the token
    lines = message.splitlines()
    caret = next(line for line in lines if line.strip() == "^")
    assert caret.index("^") - 4 == position


@pytest.mark.parametrize(
    "expression, words",
    [
        ("", ["empty"]),
        ("   ", ["empty"]),
        ("3", ["no design column", "constant"]),
        ("(2*3)", ["no design column"]),
    ],
)
def test_errors_without_position(expression, words):
    with pytest.raises(ContrastError) as info:
        contrast_vector_from_expression(expression, ["a", "b"])
    for word in words:
        assert word in str(info.value)
    assert "Available design columns" in str(info.value)


def test_non_string_expression():
    with pytest.raises(ContrastError, match="must be a string"):
        contrast_vector_from_expression(["a"], ["a"])


def test_duplicated_design_columns():
    with pytest.raises(ContrastError, match="duplicated column names"):
        contrast_vector_from_expression("a", ["a", "a"])


def test_contrast_names_checks_syntax_without_a_design(tmp_path):
    assert contrast_names("2*audio - (video + `v 2`)/2") == ["audio", "video", "v 2"]
    assert contrast_names("a - a") == ["a"]
    marker = tmp_path / "pwned3"
    for bad, words in [
        (f'a + 0*@pd.io.common.os.system("touch {marker}")', "'@'"),
        ("a*b", "multiplies two design columns"),
        ("a + 1", "constant"),
        ("", "empty"),
        ("3", "no design column"),
        ("(a", "expected ')'"),
    ]:
        with pytest.raises(ContrastError, match=re.escape(words)):
            contrast_names(bad)
    assert not marker.exists()
