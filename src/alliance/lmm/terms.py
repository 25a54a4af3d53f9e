"""Transformed variables in lme4 formulas: ``I()``, ``log()``, ``exp()``, ``sqrt()``,
``poly(x, k)`` (orthogonal, as R's), ``scale()`` (as R's) and arithmetic inside them.

An expression is parsed once (R's ``^`` read as a power), named as R's ``deparse`` names it
(``I(Days^2)``, ``sqrt(Days + 1)``, ``exp(Days/10)``) and evaluated on the data. The
data-dependent transformations (``scale``, ``poly``) keep what they learned on the fitted
rows (centre and scale; the three-term recurrence of the orthogonal polynomials) so that
``predict`` on new data applies the same transformation, as R's ``makepredictcall`` does.
"""

from __future__ import annotations

import ast
import re

import numpy as np
import pandas as pd

#: functions a formula may call, each applied elementwise (``I`` leaves its argument as is)
ELEMENTWISE = {
    "I": lambda x: x,
    "log": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "log1p": np.log1p,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "abs": np.abs,
}
#: functions whose result depends on all fitted rows
STATEFUL = ("scale", "poly")
FUNCTIONS = tuple(ELEMENTWISE) + STATEFUL

_BACKTICK = re.compile(r"`([^`]+)`")

# R's operator precedence for deparsing (higher binds tighter)
_PREC = {ast.Add: 1, ast.Sub: 1, ast.Mult: 2, ast.Div: 2, ast.Pow: 4}
_SYMBOL = {ast.Add: " + ", ast.Sub: " - ", ast.Mult: " * ", ast.Div: "/", ast.Pow: "^"}


class Expression:
    """One formula element: a plain column name or a call such as ``log(x + 1)``.

    Attributes
    ----------
    key : str
        The name R gives it (its deparsed text); the column name in the model frame.
    variables : list of str
        Data columns it reads.
    """

    def __init__(self, text: str):
        self.text = text.strip()
        self._names: dict[str, str] = {}
        source = _BACKTICK.sub(self._placeholder, self.text).replace("^", "**")
        try:
            self.tree = ast.parse(source, mode="eval").body
        except SyntaxError as err:
            raise ValueError(f"cannot read the expression {self.text!r} in the formula") from err
        self.variables: list[str] = []
        self._validate(self.tree)
        self.key = self._deparse(self.tree, 0)

    def _placeholder(self, m: re.Match) -> str:
        token = f"_bq{len(self._names)}_"
        self._names[token] = m.group(1)
        return token

    def _name(self, node: ast.Name) -> str:
        return self._names.get(node.id, node.id)

    @property
    def is_name(self) -> bool:
        return isinstance(self.tree, ast.Name)

    def _validate(self, node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            name = self._name(node)
            if name not in self.variables:
                self.variables.append(name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            pass
        elif isinstance(node, ast.BinOp) and type(node.op) in _PREC:
            self._validate(node.left)
            self._validate(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            self._validate(node.operand)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS:
            for arg in node.args:
                self._validate(arg)
            for kw in node.keywords:
                if node.func.id not in STATEFUL or kw.arg not in ("center", "scale", "raw", "degree"):
                    raise ValueError(f"argument {kw.arg!r} of {node.func.id}() in {self.text!r} is not supported")
                if kw.arg != "degree":
                    _constant(kw.value, self.text)
        else:
            raise ValueError(
                f"cannot evaluate {self.text!r} in the formula: supported are column names, "
                f"numbers, + - * / ^ and the functions {', '.join(f + '()' for f in FUNCTIONS)}"
            )

    def _deparse(self, node: ast.AST, outer: int) -> str:
        """R's deparse: spaces around + - *, none around / and ^; f(a, b = 1)."""
        if isinstance(node, ast.Name):
            name = self._name(node)
            return name if re.fullmatch(r"[A-Za-z.][A-Za-z0-9_.]*", name) else f"`{name}`"
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool):
                return "TRUE" if node.value else "FALSE"
            value = float(node.value)
            return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
        if isinstance(node, ast.UnaryOp):
            sign = "-" if isinstance(node.op, ast.USub) else "+"
            return _wrap(sign + self._deparse(node.operand, 3), 3 < outer)
        if isinstance(node, ast.BinOp):
            prec = _PREC[type(node.op)]
            # left-associative except ^
            lp, rp = (prec + 1, prec) if isinstance(node.op, ast.Pow) else (prec, prec + 1)
            text = self._deparse(node.left, lp) + _SYMBOL[type(node.op)] + self._deparse(node.right, rp)
            return _wrap(text, prec < outer)
        args = [self._deparse(a, 0) for a in node.args]
        args += [f"{kw.arg} = {self._deparse(kw.value, 0)}" for kw in node.keywords]
        return f"{node.func.id}({', '.join(args)})"

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, data: pd.DataFrame, state: dict) -> np.ndarray | pd.Series:
        """The values on ``data``: a Series for a plain column, else an (n,) or (n, k) array.

        ``state`` holds what ``scale``/``poly`` learned, keyed by their deparsed text; empty
        entries are filled from ``data`` (the fitted rows) and reused afterwards.
        """
        if self.is_name:
            return data[self._name(self.tree)]
        return self._eval(self.tree, data, state)

    def _eval(self, node: ast.AST, data: pd.DataFrame, state: dict):
        if isinstance(node, ast.Name):
            name = self._name(node)
            values = data[name]
            if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
                raise ValueError(f"column {name!r} in {self.text!r} must be numeric for arithmetic, got dtype {values.dtype}")
            return values.to_numpy(dtype=float)
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.UnaryOp):
            value = self._eval(node.operand, data, state)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            a, b = self._eval(node.left, data, state), self._eval(node.right, data, state)
            with np.errstate(all="ignore"):
                if isinstance(node.op, ast.Add):
                    return a + b
                if isinstance(node.op, ast.Sub):
                    return a - b
                if isinstance(node.op, ast.Mult):
                    return a * b
                if isinstance(node.op, ast.Div):
                    return a / b
                return np.power(a, b)
        name = node.func.id
        if name in ELEMENTWISE:
            if len(node.args) != 1:
                raise ValueError(f"{name}() in {self.text!r} takes one argument")
            with np.errstate(all="ignore"):
                return ELEMENTWISE[name](self._eval(node.args[0], data, state))
        key = self._deparse(node, 0)
        x = self._eval(node.args[0], data, state)
        if name == "scale":
            return _scale(x, node, state.setdefault(key, {}), self.text)
        return _poly(x, node, state.setdefault(key, {}), self.text)

    def __repr__(self) -> str:
        return f"Expression({self.key!r})"


def _wrap(text: str, needed: bool) -> str:
    return f"({text})" if needed else text


def _constant(node: ast.AST, text: str):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in ("TRUE", "FALSE", "T", "F"):
        return node.id in ("TRUE", "T")
    raise ValueError(f"arguments in {text!r} must be constants (TRUE, FALSE or a number)")


def _keyword(node: ast.Call, name: str, default, text: str):
    for kw in node.keywords:
        if kw.arg == name:
            return _constant(kw.value, text)
    return default


def _scale(x: np.ndarray, node: ast.Call, state: dict, text: str) -> np.ndarray:
    """R's ``scale(x, center = TRUE, scale = TRUE)`` of a vector: (x - mean) / sd (n - 1);
    with ``center = FALSE`` R divides by the root mean square sqrt(sum(x^2) / (n - 1))."""
    if not state:
        center = bool(_keyword(node, "center", True, text))
        mean = float(np.mean(x)) if center else 0.0
        if bool(_keyword(node, "scale", True, text)):
            dev = x - mean
            sd = float(np.sqrt(dev @ dev / (len(x) - 1)))
        else:
            sd = 1.0
        state.update(center=mean, scale=sd)
    return (x - state["center"]) / state["scale"]


def _poly(x: np.ndarray, node: ast.Call, state: dict, text: str) -> np.ndarray:
    """R's ``poly(x, degree)``: orthogonal polynomials, or ``raw = TRUE`` powers.

    The fitted rows give R's ``alpha`` and ``norm2`` (Q diag(R) of the QR decomposition of the
    centred Vandermonde matrix); new rows go through the same three-term recurrence as R's
    ``predict.poly``.
    """
    degree_node = node.args[1] if len(node.args) > 1 else next(
        (kw.value for kw in node.keywords if kw.arg == "degree"), ast.Constant(1))
    degree = _constant(degree_node, text)
    if not isinstance(degree, int) or degree < 1:
        raise ValueError(f"degree of {text!r} must be a positive whole number")
    if bool(_keyword(node, "raw", False, text)):
        return np.column_stack([x**k for k in range(1, degree + 1)])
    if not state:
        if degree >= len(np.unique(x)):
            raise ValueError(f"{text!r}: 'degree' must be less than number of unique points ({len(np.unique(x))})")
        xbar = float(np.mean(x))
        xc = x - xbar
        vander = xc[:, None] ** np.arange(degree + 1)[None, :]
        q, r = np.linalg.qr(vander)
        z = q * np.diag(r)[None, :]
        norm2 = (z**2).sum(axis=0)
        alpha = ((xc[:, None] * z**2).sum(axis=0) / norm2 + xbar)[:degree]
        state.update(alpha=alpha, norm2=np.concatenate(([1.0], norm2)))
    alpha, norm2 = state["alpha"], state["norm2"]
    n = len(x)
    z = np.empty((n, degree + 1))
    z[:, 0] = 1.0
    z[:, 1] = x - alpha[0]
    for i in range(1, degree):
        z[:, i + 1] = (x - alpha[i]) * z[:, i] - (norm2[i + 1] / norm2[i]) * z[:, i - 1]
    z /= np.sqrt(norm2[1:])[None, :]
    return z[:, 1:]
