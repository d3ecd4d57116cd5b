"""The ASK reference code's cfglist: one list of shapes per 3x3 convolution, in forward order.

Import reads a JSON file or the Python-literal text of the ASK README (nested
lists, `[...] * n`, `+`, `[... for i in range(n)]`, comments) with a small
safe evaluator, never eval(). Export writes what the reference code accepts:
a dense 3x3 layer is the full shape [1..9].
"""
from __future__ import annotations

import ast
import json
import warnings

from designer.designs.design import MAX_JSON_BYTES, MAX_NESTING, Design, Network, parse_json
from designer.designs.kinds import DENSE, LayerChoice, parse_shapes
from designer.designs.shapes import KernelShape
from designer.errors import DesignError, shown
from designer.networks.build import (
    ConvLayer,
    can_take,
    conv_layers,
    dense_design,
    design_layers,
    validate,
)

MAX_ENTRIES = 100_000  # lists and taps in the whole cfglist, at every depth, counted before anything is built
MAX_PYTHON_CHARS = 65_536  # the Python form: ast.parse takes ~0.5 KB and ~10 us a character (JSON: MAX_JSON_BYTES)
FULL_3x3 = tuple(range(1, 10))
_ANY_ASK_3x3 = LayerChoice.ask([KernelShape(FULL_3x3)])


def ask_can_take(layer: ConvLayer) -> bool:
    """A 3x3 conv an ASK layer can replace, by build's own rule (full, not grouped; 'same' padding)."""
    return layer.spec.k == 3 and can_take(_ANY_ASK_3x3, layer)


def cfglist_layers(network: Network, padfree: bool = False) -> list[int]:
    """Indices of the convolutions a cfglist (and --anycfg) covers: those ask_can_take, padding-free or not."""
    return [c.index for c in conv_layers(network, padfree) if ask_can_take(c)]


def parse_cfglist_text(text: str | bytes, where: str = "cfglist") -> list:
    """JSON or ASK-README Python text -> nested lists (not yet validated as shapes).

    Both forms are bounded before anything is built: the text's length, the nesting, and the number of
    entries of the whole result (MAX_ENTRIES: `[[5]*100000]*100000` is refused, not expanded)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    stripped = text.strip()
    if not stripped:
        raise DesignError("the cfglist is empty", where)
    if len(stripped) > MAX_JSON_BYTES:
        raise DesignError(f"the text is {len(stripped)} characters; the limit is {MAX_JSON_BYTES}", where)
    try:
        value = parse_json(stripped, where)
    except json.JSONDecodeError as err:
        value = _parse_python(stripped, where, err)
    else:
        _bounded_size(_json_entries(value), where)
    return list(value) if isinstance(value, tuple) else value


def _parse_python(text: str, where: str, json_error: json.JSONDecodeError):
    """The ASK README's Python form, evaluated by _literal (never eval)."""
    if len(text) > MAX_PYTHON_CHARS:
        raise DesignError(f"not JSON ({json_error}), and at {len(text)} characters too long for the Python-list "
                          f"form (the limit is {MAX_PYTHON_CHARS})", where)
    _check_bracket_nesting(text, where)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. SyntaxWarning on odd escapes: not the user's concern here
            tree = ast.parse(text, mode="exec")
        if len(tree.body) != 1 or not isinstance(tree.body[0], (ast.Assign, ast.Expr)):
            raise DesignError("expected one list expression (or one assignment of a list)", where)
        return _literal(tree.body[0].value, where, 0)[0]
    except SyntaxError as err:
        line = f"line {err.lineno}: " if err.lineno else ""
        raise DesignError(f"neither JSON nor a Python list ({line}{err.msg})", where) from None
    except RecursionError:  # a long chain of '+' or '*': the parser and _literal recurse along it
        raise DesignError("the expression is too long a chain of '+' and '*' (write the list out, or as JSON)",
                          where) from None


def _check_bracket_nesting(text: str, where: str) -> None:
    """Refuse brackets nested past MAX_NESTING before parsing: Python's parser slows down sharply on them."""
    depth, quote, i = 0, None, 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#":
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
        elif char in "([{":
            depth += 1
            if depth > MAX_NESTING:
                raise DesignError(f"nested more than {MAX_NESTING} deep", where)
        elif char in ")]}":
            depth -= 1
        i += 1


def _literal(node: ast.AST, where: str, depth: int) -> tuple:
    """(value, entries) of the few constructs a cfglist uses; anything else is refused.

    entries counts every list item at every depth; each result's count is checked against MAX_ENTRIES
    before the result is built, so `*` and range() cannot blow up."""
    if depth > MAX_NESTING:
        raise DesignError(f"nested more than {MAX_NESTING} deep", where)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, str)):
        return node.value, 0
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e, where, depth + 1) for e in node.elts]
        _bounded_size(sum(1 + n for _, n in items), where)
        values = [value for value, _ in items]
        return (values if isinstance(node, ast.List) else tuple(values)), sum(1 + n for _, n in items)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        (left, n_left), (right, n_right) = _literal(node.left, where, depth), _literal(node.right, where, depth)
        if isinstance(node.op, ast.Add) and isinstance(left, list) and isinstance(right, list):
            _bounded_size(n_left + n_right, where)
            return left + right, n_left + n_right
        if isinstance(node.op, ast.Mult):
            (seq, n_seq), times = ((left, n_left), right) if isinstance(left, list) else ((right, n_right), left)
            if isinstance(seq, list) and isinstance(times, int) and not isinstance(times, bool):
                times = max(times, 0) if seq else 0  # `10**12 * []` is empty: build it without the loop
                _bounded_size(n_seq * times, where)
                return [_copy(x) for _ in range(times) for x in seq], n_seq * times
    if (isinstance(node, ast.ListComp) and len(node.generators) == 1
            and isinstance(node.generators[0].iter, ast.Call)
            and isinstance(node.generators[0].iter.func, ast.Name) and node.generators[0].iter.func.id == "range"
            and not node.generators[0].ifs):
        args = [_literal(a, where, depth)[0] for a in node.generators[0].iter.args]
        if all(isinstance(a, int) for a in args) and 1 <= len(args) <= 3:
            times = _range_length(args, where)
            item, n_item = _literal(node.elt, where, depth + 1)
            _bounded_size(times * (1 + n_item), where)
            return [_copy(item) for _ in range(times)], times * (1 + n_item)
    text = ast.unparse(node)
    raise DesignError(f"unsupported expression `{text if len(text) <= 60 else text[:57] + '...'}` (use lists of "
                      f"tap numbers, '+', '*' and [... for i in range(n)])", where)


def _range_length(args: list[int], where: str) -> int:
    try:
        return len(range(*args))
    except OverflowError:
        raise DesignError(f"range() of more than {MAX_ENTRIES} items", where) from None
    except ValueError:
        raise DesignError("range() needs a step other than 0", where) from None


def _copy(x):
    return [_copy(e) for e in x] if isinstance(x, list) else x


def _json_entries(value) -> int:
    """Every list item of a parsed JSON value at every depth (parse_json has already bounded the nesting)."""
    total, level = 0, [value]
    while level:
        containers = [item for item in level if isinstance(item, (list, dict))]
        total += sum(len(item) for item in containers)
        level = [child for item in containers for child in (item.values() if isinstance(item, dict) else item)]
    return total


def _bounded_size(n: int, where: str) -> None:
    if n > MAX_ENTRIES:
        raise DesignError(f"the cfglist would have {shown(n, 30)} entries at all depths; the limit is "
                          f"{MAX_ENTRIES}", where)


def design_from_cfglist(network: Network, cfglist, where: str = "cfglist", padfree: bool = False) -> Design:
    """A design whose ASK-eligible 3x3 convs (cfglist_layers) take the cfglist's shapes; a single full shape
    means dense."""
    base = dense_design(network, padfree)
    indices = cfglist_layers(base.network, padfree)
    if not isinstance(cfglist, list):
        raise DesignError(f"a cfglist must be a list with one entry per 3x3 convolution, got "
                          f"{type(cfglist).__name__}", where)
    if len(cfglist) != len(indices):
        raise DesignError(f"the cfglist has {len(cfglist)} entries but {base.network.arch}-{base.network.depth}"
                          f"{' (padding-free)' if padfree else ''} has {len(indices)} 3x3 convolutions an ASK "
                          f"layer can take", where)
    layers = list(base.layers)
    convs = conv_layers(base.network, padfree)
    for entry, index in zip(cfglist, indices):
        shapes = parse_shapes(entry, f"{where} entry {index + 1} ({convs[index].name})")
        layers[index] = DENSE if shapes == (KernelShape(FULL_3x3),) else LayerChoice.ask(shapes)
    return validate(base.with_layers(layers))


def design_to_cfglist(design: Design) -> list:
    """The cfglist the ASK reference code takes for this design."""
    design = validate(design)
    convs = design_layers(design)
    indices = set(cfglist_layers(design.network, design.padfree))
    cfglist = []
    for choice, conv in zip(design.layers, convs):
        if conv.index not in indices:
            if choice.kind != "dense":
                raise DesignError(f"the ASK cfglist format covers the 3x3 convolutions an ASK layer can take only; "
                                  f"{conv.name} is {_describe_conv(conv)}", f"layer {conv.index + 1}")
            continue
        if choice.kind == "dense":
            cfglist.append([list(FULL_3x3)])
        elif choice.kind == "ask" and choice.shapes[0].k == 3:
            cfglist.append([list(s.taps) for s in choice.shapes])
        else:
            raise DesignError(f"the ASK cfglist format holds 3x3 ASK shapes only; this layer is "
                              f"{_describe(choice)}", f"layer {conv.index + 1} ({conv.name})")
    return cfglist


def _describe_conv(conv: ConvLayer) -> str:
    spec = conv.spec
    grouped = f", grouped ({spec.groups} groups)" if spec.groups != 1 else ""
    padded = f", padding {spec.padding[0]} (padding-free)" if spec.padding[0] != spec.k // 2 else ""
    return f"{spec.kernel[0]}x{spec.kernel[1]}{grouped}{padded}"


def _describe(choice: LayerChoice) -> str:
    if choice.kind == "ask":
        return f"a {choice.shapes[0].k}x{choice.shapes[0].k} ASK layer"
    return f"a {choice.kind} layer"
