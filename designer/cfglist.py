"""The ASK reference code's cfglist: one list of shapes per 3x3 convolution, in forward order.

Import reads a JSON file or the Python-literal text of the ASK README (nested
lists, `[...] * n`, `+`, `[... for i in range(n)]`, comments) with a small
safe evaluator, never eval(). Export writes what the reference code accepts:
a dense 3x3 layer is the full shape [1..9].
"""
from __future__ import annotations

import ast
import json

from designer.build import conv_layers, dense_design, design_layers, validate
from designer.design import DENSE, MAX_JSON_BYTES, Design, LayerChoice, Network, parse_shapes
from designer.errors import DesignError
from designer.shapes import KernelShape

MAX_ENTRIES = 100_000
FULL_3x3 = tuple(range(1, 10))


def cfglist_layers(network: Network) -> list[int]:
    """Indices of the convolutions a cfglist covers: full (ungrouped) 3x3 convs."""
    return [c.index for c in conv_layers(network) if c.spec.kernel_size == 3 and c.spec.groups == 1]


def parse_cfglist_text(text: str | bytes, where: str = "cfglist") -> list:
    """JSON or ASK-README Python text -> nested lists (not yet validated as shapes)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    stripped = text.strip()
    if not stripped:
        raise DesignError("the cfglist is empty", where)
    if len(stripped) > MAX_JSON_BYTES:
        raise DesignError(f"the text is {len(stripped)} characters; the limit is {MAX_JSON_BYTES}", where)
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    try:
        tree = ast.parse(stripped, mode="exec")
    except SyntaxError as err:
        raise DesignError(f"neither JSON nor a Python list (line {err.lineno}: {err.msg})", where) from None
    if len(tree.body) != 1:
        raise DesignError("expected one list expression (or one assignment of a list)", where)
    node = tree.body[0]
    if isinstance(node, ast.Assign):
        node = node.value
    elif isinstance(node, ast.Expr):
        node = node.value
    else:
        raise DesignError("expected one list expression (or one assignment of a list)", where)
    value = _literal(node, where)
    if isinstance(value, tuple):
        value = list(value)
    return value


def _literal(node: ast.AST, where: str):
    """Evaluate the few constructs a cfglist uses; anything else is refused."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, str)):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e, where) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        left, right = _literal(node.left, where), _literal(node.right, where)
        if isinstance(node.op, ast.Add) and isinstance(left, list) and isinstance(right, list):
            return _bounded(left + right, where)
        if isinstance(node.op, ast.Mult):
            seq, n = (left, right) if isinstance(left, list) else (right, left)
            if isinstance(seq, list) and isinstance(n, int) and not isinstance(n, bool):
                _bounded_size(len(seq) * max(n, 0), where)
                return [_copy(x) for _ in range(max(n, 0)) for x in seq]
    if (isinstance(node, ast.ListComp) and len(node.generators) == 1
            and isinstance(node.generators[0].iter, ast.Call)
            and isinstance(node.generators[0].iter.func, ast.Name) and node.generators[0].iter.func.id == "range"
            and not node.generators[0].ifs):
        args = [_literal(a, where) for a in node.generators[0].iter.args]
        if all(isinstance(a, int) for a in args) and 1 <= len(args) <= 3:
            n = len(range(*args))
            _bounded_size(n, where)
            item = _literal(node.elt, where)
            return [_copy(item) for _ in range(n)]
    raise DesignError(f"unsupported expression {ast.unparse(node)[:60]!r} (use lists of tap numbers, "
                      f"'+', '*' and [... for i in range(n)])", where)


def _copy(x):
    return [_copy(e) for e in x] if isinstance(x, list) else x


def _bounded_size(n: int, where: str) -> None:
    if n > MAX_ENTRIES:
        raise DesignError(f"the cfglist would have {n} entries; the limit is {MAX_ENTRIES}", where)


def _bounded(seq: list, where: str) -> list:
    _bounded_size(len(seq), where)
    return seq


def design_from_cfglist(network: Network, cfglist, where: str = "cfglist") -> Design:
    """A design whose 3x3 convs take the cfglist's shapes; a single full shape means dense."""
    base = dense_design(network)
    indices = cfglist_layers(base.network)
    if not isinstance(cfglist, list):
        raise DesignError(f"a cfglist must be a list with one entry per 3x3 convolution, got "
                          f"{type(cfglist).__name__}", where)
    if len(cfglist) != len(indices):
        raise DesignError(f"the cfglist has {len(cfglist)} entries but {base.network.arch}-{base.network.depth} "
                          f"has {len(indices)} 3x3 convolutions", where)
    layers = list(base.layers)
    convs = conv_layers(base.network)
    for entry, index in zip(cfglist, indices):
        shapes = parse_shapes(entry, f"{where} entry {index + 1} ({convs[index].name})")
        layers[index] = DENSE if shapes == (KernelShape(FULL_3x3),) else LayerChoice.ask(shapes)
    return validate(base.with_layers(layers))


def design_to_cfglist(design: Design) -> list:
    """The cfglist the ASK reference code takes for this design."""
    design = validate(design)
    convs = design_layers(design)
    indices = {c.index for c in convs if c.spec.kernel_size == 3 and c.spec.groups == 1}
    cfglist = []
    for choice, conv in zip(design.layers, convs):
        if conv.index not in indices:
            if choice.kind != "dense":
                raise DesignError(f"the ASK cfglist format covers full 3x3 convolutions only; {conv.name} "
                                  f"is {conv.spec.kernel_size}x{conv.spec.kernel_size}", f"layer {conv.index + 1}")
            continue
        if choice.kind == "dense":
            cfglist.append([list(FULL_3x3)])
        elif choice.kind == "ask" and choice.shapes[0].k == 3:
            cfglist.append([list(s.taps) for s in choice.shapes])
        else:
            raise DesignError(f"the ASK cfglist format holds 3x3 ASK shapes only; this layer is "
                              f"{_describe(choice)}", f"layer {conv.index + 1} ({conv.name})")
    return cfglist


def _describe(choice: LayerChoice) -> str:
    if choice.kind == "ask":
        return f"a {choice.shapes[0].k}x{choice.shapes[0].k} ASK layer"
    return f"a {choice.kind} layer"
