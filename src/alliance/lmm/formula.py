"""Parser for lme4's model formula language as :mod:`alliance.lmm` fits it.

Supported (Bates et al. 2015, JSS 67(1), section 2.1; R's ``?formula``):

* a response ``y ~ ...``, possibly transformed (``log(y) ~ ...``);
* fixed terms: variables, interactions ``a:b``, crossings ``a*b`` (``a + b + a:b``),
  nesting ``b %in% a`` (the term ``a:b``) and ``a/b`` (``a + a:b``), powers ``(a + b + c)^2``
  (interactions up to order 2), removal of terms with ``-`` (``a*b - a:b``),
  ``1`` / ``0`` / ``- 1`` for the intercept, ``offset(expr)``;
* transformations anywhere a variable may stand: ``I()``, ``log()``, ``log2()``,
  ``log10()``, ``log1p()``, ``exp()``, ``sqrt()``, ``abs()``, ``scale()`` and ``poly(x, k)``
  (orthogonal as R's; ``raw = TRUE`` for powers), with ``+ - * / ^`` inside them
  (:mod:`alliance.lmm.terms`);
* random terms ``(1 | g)``, ``(1 + x | g)``, ``(x | g)``, ``(0 + x | g)``, ``(f | g)`` with a
  categorical ``f`` (lme4's model matrix of ``~ f``: intercept and contrasts, or all
  indicators without intercept), ``(x || g)`` (uncorrelated: expanded as lme4's
  ``expandDoubleVerts`` to ``(1 | g) + (0 + x | g)``; each variable becomes its own term, so a
  categorical variable stays ONE term whose indicator columns remain correlated: ``||``
  splits only between variables, which is what makes numeric terms uncorrelated),
  ``(1 | a/b)`` (``(1 | b:a) + (1 | a)``) and interaction grouping ``(1 | a:b)``.

Malformed formulas raise :class:`FormulaSyntaxError` (a ``ValueError``) naming the position;
anything outside the supported language raises ``ValueError`` naming the piece.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from .terms import Expression

SUPPORTED = (
    "supported formula syntax: 'y ~ fixed + (re | group)' where fixed terms are variables or "
    "transformations (I(), log(), exp(), sqrt(), scale(), poly(x, k)...), 'a:b' interactions, "
    "'a*b' crossings, 'b %in% a', '- term' removals, offset(), '1', '0' or '-1'; random terms "
    "are '(1 | g)', '(1 + x | g)', '(0 + x | g)', '(f | g)', '(x || g)', '(1 | a/b)' and "
    "'(1 | a:b)'"
)

_NAME = re.compile(r"^(?:[A-Za-z_.][A-Za-z0-9_.]*|`[^`]+`)$")


@dataclass(frozen=True)
class RandomTerm:
    """One random-effects term ``(cols | group)`` after expansion.

    ``intercept`` says whether the term has a random intercept; ``slopes`` are the model-frame
    columns with random slopes (numeric: a categorical slope is replaced by its indicator
    columns when the model frame is built, with R's names in ``labels``); ``group`` are the
    variables whose interaction forms the grouping factor, in lme4's naming order (``b:a``
    for ``a/b``).
    """

    intercept: bool
    slopes: tuple[str, ...]
    group: tuple[str, ...]
    labels: tuple[str, ...] = ()

    @property
    def group_name(self) -> str:
        return ":".join(self.group)

    @property
    def column_names(self) -> list[str]:
        if self.labels:
            return list(self.labels)
        return (["(Intercept)"] if self.intercept else []) + list(self.slopes)

    @property
    def q(self) -> int:
        return len(self.column_names)


@dataclass
class ParsedFormula:
    """A parsed lme4 formula: response, fixed terms in R's order, expanded random terms.

    Terms hold model-frame keys: a column name, or a transformation's name as R deparses it
    (``log(x)``); ``expressions`` maps every key to its :class:`~alliance.lmm.terms.Expression`.
    """

    response: str
    intercept: bool
    fixed_terms: list[tuple[str, ...]] = field(default_factory=list)
    random_terms: list[RandomTerm] = field(default_factory=list)
    expressions: dict[str, Expression] = field(default_factory=dict)
    offsets: list[str] = field(default_factory=list)

    @property
    def variables(self) -> list[str]:
        """Every data column the model reads, response first, without duplicates."""
        keys = [self.response]
        for term in self.fixed_terms:
            keys.extend(term)
        keys.extend(self.offsets)
        for rt in self.random_terms:
            keys.extend(rt.slopes)
        names = []
        for key in keys:
            expr = self.expressions.get(key)
            names.extend(expr.variables if expr is not None else [key])
        for rt in self.random_terms:
            names.extend(rt.group)
        return list(dict.fromkeys(names))

    @property
    def keys(self) -> list[str]:
        """Model-frame columns: response, fixed and random-slope elements, offsets."""
        keys = [self.response]
        for term in self.fixed_terms:
            keys.extend(term)
        for rt in self.random_terms:
            keys.extend(rt.slopes)
        keys.extend(self.offsets)
        return list(dict.fromkeys(keys))


def _unquote(name: str) -> str:
    return name[1:-1] if name.startswith("`") else name


def _check_name(token: str, formula: str) -> str:
    if not _NAME.match(token):
        raise ValueError(f"cannot parse {token!r} in formula {formula!r}; {SUPPORTED}")
    return _unquote(token)


def _element(token: str, formula: str, exprs: dict[str, Expression]) -> str:
    """The model-frame key of a variable or transformation; registers the expression."""
    token = token.strip()
    if _NAME.match(token):
        key = _unquote(token)
        exprs.setdefault(key, Expression(token))
        return key
    if re.match(r"^[A-Za-z_.][A-Za-z0-9_.]*\(", token) and token.endswith(")"):
        expr = Expression(token)
        exprs.setdefault(expr.key, expr)
        return expr.key
    raise ValueError(f"cannot parse {token!r} in formula {formula!r}; {SUPPORTED}")


def _split_depth0(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            start = i + len(sep)
            i = start
            continue
        i += 1
    parts.append(text[start:])
    return parts


def _split_top_level(text: str) -> list[tuple[str, str]]:
    """Split on '+' and '-' outside parentheses; return (sign, piece) pairs."""
    pieces: list[tuple[str, str]] = []
    depth, start, sign = 0, 0, "+"
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced parentheses in {text!r}")
        elif ch in "+-" and depth == 0:
            pieces.append((sign, text[start:i].strip()))
            sign, start = ch, i + 1
    if depth != 0:
        raise ValueError(f"unbalanced parentheses in {text!r}")
    pieces.append((sign, text[start:].strip()))
    return pieces


def _outside_parentheses(text: str) -> str:
    """The characters of ``text`` at parenthesis depth 0."""
    out, depth = [], 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _expand_fixed(piece: str, formula: str, exprs: dict[str, Expression]) -> list[tuple[str, ...]]:
    """Expand one fixed piece ('a', 'a:b', 'b %in% a', 'a*b*c') into its terms."""

    def interaction(text: str) -> tuple[str, ...]:
        elements = []
        for part in _split_depth0(text, "%in%"):
            elements.extend(_element(p, formula, exprs) for p in _split_depth0(part, ":"))
        return tuple(elements)

    nests = _split_depth0(piece, "/")
    if len(nests) > 1:
        # R: a/b = a + b %in% a; a/b/c = a + a:b + a:b:c
        if len(_split_depth0(piece, "*")) > 1:
            raise ValueError(f"cannot combine '*' and '/' in {piece!r} of formula {formula!r}; write the terms out; {SUPPORTED}")
        terms, acc = [], ()
        for part in nests:
            acc = acc + interaction(part)
            terms.append(acc)
        return terms
    factors = [interaction(p) for p in _split_depth0(piece, "*")]
    terms = []
    for k in range(1, len(factors) + 1):
        for combo in itertools.combinations(factors, k):
            terms.append(tuple(itertools.chain.from_iterable(combo)))
    return terms


def _expand_power(inner: str, k: int, formula: str, exprs: dict[str, Expression]) -> list[tuple[str, ...]]:
    """R's ``(a + b + c)^k``: all interactions of the terms up to order k."""
    base: list[tuple[str, ...]] = []
    for sign, piece in _split_top_level(inner):
        if sign == "-" or piece in ("", "0", "1"):
            raise ValueError(f"cannot parse '({inner})^{k}' in formula {formula!r}; {SUPPORTED}")
        base.extend(_expand_fixed(piece, formula, exprs))
    terms = list(base)
    for _ in range(k - 1):
        for t in list(terms):
            for u in base:
                merged = tuple(dict.fromkeys(t + u))
                if frozenset(merged) not in {frozenset(x) for x in terms}:
                    terms.append(merged)
    return terms


def _parse_random(inner: str, formula: str, exprs: dict[str, Expression]) -> list[RandomTerm]:
    if "||" in inner:
        lhs, rhs = inner.split("||", 1)
        uncorrelated = True
    elif "|" in inner:
        lhs, rhs = inner.split("|", 1)
        uncorrelated = False
    else:
        raise ValueError(f"parenthesised term '({inner})' has no '|'; {SUPPORTED}")
    if "|" in rhs:
        raise ValueError(f"cannot parse random term '({inner})'; {SUPPORTED}")
    intercept, slopes = True, []
    for sign, piece in _split_top_level(lhs.strip()):
        if piece == "" and sign == "+":
            continue
        if piece in ("0", "1"):
            intercept = piece == "1" and sign == "+"
            continue
        if sign == "-" or any(c in _outside_parentheses(piece) for c in ":*/"):
            raise ValueError(
                f"random-effects expression {lhs.strip()!r} in '({inner})' is not supported; {SUPPORTED}"
            )
        slopes.append(_element(piece, formula, exprs))
    group_sets: list[tuple[str, ...]] = []
    for part in rhs.split("/"):
        names = tuple(_check_name(g.strip(), formula) for g in part.split(":"))
        group_sets.append(names)
    if len(group_sets) > 1:
        # lme4's expandSlash: a/b -> a, b:a (interaction named innermost first)
        nested: list[tuple[str, ...]] = []
        acc: tuple[str, ...] = ()
        for names in group_sets:
            acc = names + acc
            nested.append(acc)
        # lme4 lists the inner interaction first: (1|a/b) -> (1|b:a) + (1|a)
        group_sets = nested[::-1]
    if not intercept and not slopes:
        raise ValueError(f"random term '({inner})' has no random effects; {SUPPORTED}")
    terms = []
    for grp in group_sets:
        if uncorrelated:
            if intercept:
                terms.append(RandomTerm(True, (), grp))
            terms.extend(RandomTerm(False, (s,), grp) for s in slopes)
        else:
            terms.append(RandomTerm(intercept, tuple(slopes), grp))
    return terms


_TOKEN = re.compile(
    r"\s*(?:(?P<name>`[^`]*`|[A-Za-z_.][A-Za-z0-9_.]*)|(?P<number>\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+)"
    r"|(?P<op>\|\||%in%|[~+\-*/:^|(),=])|(?P<other>\S))"
)
_BINARY = {"~", "*", "/", ":", "^", "|", "||", "%in%", "=", ","}


class FormulaSyntaxError(ValueError):
    """A malformed formula; the message names the position (1-based character) and shows it."""


def _syntax_error(formula: str, pos: int, what: str) -> FormulaSyntaxError:
    return FormulaSyntaxError(
        f"syntax error in formula at position {pos + 1}: {what}\n  {formula}\n  {' ' * pos}^"
    )


def _tokens(formula: str) -> list[tuple[str, str, int]]:
    """(kind, text, start) of every token; kinds 'name', 'number', 'op'."""
    out, pos = [], 0
    while pos < len(formula):
        m = _TOKEN.match(formula, pos)
        if m is None:  # only trailing whitespace left
            break
        kind = m.lastgroup
        start = m.start(kind)
        if kind == "other":
            raise _syntax_error(formula, start, f"unexpected character {formula[start]!r}")
        out.append((kind, m.group(kind), start))
        pos = m.end()
    return out


def check_syntax(formula: str) -> None:
    """Refuse malformed formulas as R's parser would, naming the position.

    Caught: unbalanced parentheses, an operator with nothing after it (a trailing ``+``,
    ``(1 + | g)``), an operator with nothing before it, two operands without an operator,
    empty parentheses and a random-effects term with an empty side (``( | g)``, ``(1 | )``).
    """
    toks = _tokens(formula)
    if not toks:
        raise _syntax_error(formula, 0, "the formula is empty")
    stack: list[int] = []
    prev: tuple[str, str, int] | None = None
    for kind, text, start in toks:
        operand_end = prev is not None and (prev[0] in ("name", "number") or prev[1] == ")")
        if kind in ("name", "number") or text == "(":
            call = text == "(" and prev is not None and prev[0] == "name"
            if operand_end and not call:
                raise _syntax_error(formula, start, f"{text!r} follows {prev[1]!r} without an operator between them")
            if text == "(":
                stack.append(start)
        elif text == ")":
            if not stack:
                raise _syntax_error(formula, start, "')' without a matching '('")
            if prev is not None and prev[1] == "(":
                raise _syntax_error(formula, prev[2], "empty parentheses '()'")
            if not operand_end:
                raise _syntax_error(formula, prev[2], f"nothing after {prev[1]!r} before ')'")
            stack.pop()
        elif text in ("+", "-"):
            pass  # binary or unary: R accepts 'a + -1'
        else:  # binary operators
            if not operand_end and not (text == "~" and prev is None):
                where = "at the start" if prev is None else f"after {prev[1]!r}"
                missing = "the random-effects expression" if text in ("|", "||") else "an operand"
                raise _syntax_error(formula, start, f"{missing} before {text!r} is missing ({text!r} {where})")
        prev = (kind, text, start)
    if prev[1] not in (")",) and prev[0] not in ("name", "number"):
        what = "the grouping factor after" if prev[1] in ("|", "||") else "nothing after"
        raise _syntax_error(formula, prev[2], f"{what} {prev[1]!r}: the formula ends there")
    if stack:
        raise _syntax_error(formula, stack[-1], "'(' is never closed")


def expand_dot(formula: str, columns) -> str:
    """Replace a ``.`` term of the fixed part by the data's other columns, as R's ``terms(formula,
    data = )`` does for lme4: ``y ~ . + (1 | g)`` is ``y ~ (a + b + g) + (1 | g)`` for data
    columns ``y, a, b, g`` (grouping columns are included, as in lme4; remove them with
    ``- g``). The response's variables are left out; for a transformed response (``log(y) ~
    .``) R would keep ``y`` itself in ``.``, which makes the response a predictor of itself,
    so here it is left out too. Names that are not syntactic are back-quoted. A formula
    without a top-level ``.`` is returned unchanged.
    """
    if not isinstance(formula, str) or formula.count("~") != 1:
        return formula
    lhs, rhs = formula.split("~")
    try:
        pieces = _split_top_level(rhs)
    except ValueError:  # malformed: parse_formula reports it with the position
        return formula
    if not any(piece.strip() == "." for _, piece in pieces):
        return formula
    if any(piece.strip() == "." and sign == "-" for sign, piece in pieces):
        raise ValueError(f"'- .' (removing every column) is not supported in formula {formula!r}")
    exprs: dict[str, Expression] = {}
    try:
        response_vars = set(_element_variables(_element(lhs.strip(), formula, exprs), exprs))
    except ValueError:
        response_vars = {lhs.strip()}
    cols = [str(c) for c in columns if str(c) not in response_vars]
    if not cols:
        raise ValueError(f"'.' in formula {formula!r} stands for no column: the data has only the response")
    quoted = [c if re.fullmatch(r"[A-Za-z_.][A-Za-z0-9_.]*", c) and c != "." else f"`{c}`"
              for c in cols]
    dot = "(" + " + ".join(quoted) + ")"
    out = []
    for i, (sign, piece) in enumerate(pieces):
        text = dot if piece.strip() == "." else piece.strip()
        if i == 0:
            out.append(text)
        else:
            out.append(f" {sign} {text}")
    return f"{lhs.strip()} ~ {''.join(out).strip()}"


def _element_variables(key: str, exprs: dict[str, Expression]) -> list[str]:
    """The data variables of a parsed element (a plain name or a transformation)."""
    expr = exprs.get(key)
    return list(expr.variables) if expr is not None else [_unquote(key)]


def parse_formula(formula: str) -> ParsedFormula:
    """Parse an lme4 formula string into response, fixed and random terms.

    Parameters
    ----------
    formula : str
        For example ``"symptoms ~ session + a_cw + a_cm + (1 + session | client_id)"``.

    Returns
    -------
    ParsedFormula
        Fixed terms are ordered as R's ``terms()`` orders them: by interaction order, then by
        appearance.

    Raises
    ------
    ValueError
        If the formula uses syntax outside the supported subset (see module docstring).
    """
    if not isinstance(formula, str):
        raise ValueError(f"formula must be a string, got {type(formula).__name__}")
    check_syntax(formula)
    if formula.count("~") != 1:
        raise ValueError(f"formula must have exactly one '~', got {formula!r}")
    lhs, rhs = (s.strip() for s in formula.split("~"))
    exprs: dict[str, Expression] = {}
    response = _element(lhs, formula, exprs)
    intercept = True
    fixed: list[tuple[str, ...]] = []
    removed: list[tuple[str, ...]] = []
    offsets: list[str] = []
    random: list[RandomTerm] = []
    pieces = _split_top_level(rhs)
    while pieces:
        sign, piece = pieces.pop(0)
        if piece == "":
            if sign == "-":
                raise ValueError(f"dangling '-' in formula {formula!r}")
            continue
        power = re.fullmatch(r"\((.*)\)\s*\^\s*(\d+)", piece, flags=re.S)
        if power and "|" not in _outside_parentheses(power.group(1)):
            (removed if sign == "-" else fixed).extend(
                _expand_power(power.group(1), int(power.group(2)), formula, exprs))
            continue
        if piece.startswith("("):
            if not piece.endswith(")") or sign == "-":
                raise ValueError(f"cannot parse {piece!r} in formula {formula!r}; {SUPPORTED}")
            inner = piece[1:-1]
            if "|" not in _outside_parentheses(inner):
                # a parenthesised sum of terms, as R deparses '(x || g)'
                pieces = _split_top_level(inner) + pieces
                continue
            random.extend(_parse_random(inner, formula, exprs))
            continue
        if piece in ("0", "1"):
            intercept = not (sign == "-" or piece == "0")
            continue
        if piece.startswith("offset(") and piece.endswith(")"):
            if sign == "-":
                raise ValueError(f"an offset cannot be removed ('- {piece}') in formula {formula!r}")
            expr = Expression(piece[len("offset("):-1])
            exprs.setdefault(expr.key, expr)
            offsets.append(expr.key)
            continue
        (removed if sign == "-" else fixed).extend(_expand_fixed(piece, formula, exprs))
    fixed = _r_terms(fixed, removed, formula)
    if not random:
        raise ValueError(
            f"formula {formula!r} has no random-effects term; a linear mixed model needs at "
            f"least one, e.g. '(1 | group)'"
        )
    return ParsedFormula(response, intercept, fixed, random, exprs, offsets)


def _r_terms(fixed: list[tuple[str, ...]], removed: list[tuple[str, ...]], formula: str) -> list[tuple[str, ...]]:
    """R's ``terms()``: unique terms minus the removed ones, variables within a term in order
    of first appearance, terms ordered by interaction order and stable within an order."""
    order: dict[str, int] = {}
    for term in fixed + removed:
        for var in term:
            order.setdefault(var, len(order))
    drop = {frozenset(t) for t in removed}
    unique: list[tuple[str, ...]] = []
    seen: set[frozenset[str]] = set()
    for term in fixed:
        key = frozenset(term)
        if len(key) != len(term):
            raise ValueError(f"term {':'.join(term)!r} repeats a variable; {SUPPORTED}")
        if key not in seen and key not in drop:
            seen.add(key)
            unique.append(tuple(sorted(term, key=order.__getitem__)))
    unique.sort(key=len)
    return unique
