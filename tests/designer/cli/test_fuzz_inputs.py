"""A standing fuzz of what a user types (issue 11): design JSON, cfglists in both forms, every CLI command.

The property everywhere: bad input is one DesignError with a short one-line message (CLI: exit code 2,
exactly one line on stderr, no traceback), never another exception, a hang or a blow-up; what parses stays
within the limits. Hypothesis runs derandomized (the same cases on every run: CI is reproducible) and
without its example database (nothing is written into the tree).
"""
import contextlib
import io
import json
import signal

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from designer.cli import main
from designer.designs.design import DESIGN_KEYS, NETWORK_KEYS, Network, loads_design
from designer.designs.kinds import KINDS
from designer.designs.shapes import ASK_PRESETS
from designer.errors import MAX_MESSAGE, DesignError
from designer.networks.build import build_model, dense_design, validate
from designer.networks.cfglist import MAX_ENTRIES, design_from_cfglist, parse_cfglist_text
from models import list_models


def fuzz(cases: int):
    """Hypothesis settings: `cases` examples, the same ones on every run, no example database."""
    return settings(max_examples=cases, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])



RESNET8 = Network("resnet", 8)
HANG_S = 30  # far above any case (milliseconds): a case still running then has hung or blown up


@contextlib.contextmanager
def no_hang():
    """Fail a case that runs past HANG_S instead of hanging the suite."""
    def hung(signum, frame):
        raise AssertionError(f"one case ran past {HANG_S} s")
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(HANG_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def assert_one_short_line(message: str):
    assert "\n" not in message and len(message) <= MAX_MESSAGE, message


def entries(value) -> int:
    return sum(1 + entries(item) for item in value) if isinstance(value, (list, tuple)) else 0


# --- design JSON ------------------------------------------------------------------------------

leaves = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                   st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
json_values = st.recursive(leaves, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=20)
taps = st.lists(st.integers(-2, 52), max_size=10)
layers = st.fixed_dictionaries({}, optional={
    "kind": st.sampled_from((*KINDS, "sparse", "")) | json_values, "k": st.sampled_from([3, 5, 7, 1, 0, "3", 2 ** 70]),
    "shapes": st.lists(taps, max_size=5) | json_values, "preset": st.sampled_from([*ASK_PRESETS, "ASK_1"]),
    "part": st.integers(-1, 70), "block_n": st.integers(-1, 70), "prune_rate": st.floats(-1, 2),
    "rearrange": st.booleans() | json_values, "rank": st.integers(-1, 600), "shaps": json_values})
networks = st.fixed_dictionaries({}, optional={
    "arch": st.sampled_from(["vgg", "resnet", "resnet_proj", "vgg_any", "alexnet", ""]) | json_values,
    "depth": st.sampled_from([0, 8, 11, 14, 16, 20, 21, -1, 1203, 6002, 10 ** 40]) | json_values,
    "dataset": st.sampled_from(["cifar10", "cifar100", "fashion-mnist", "mnist"]) | json_values,
    "padfre": st.booleans(), "datset": st.text(max_size=5)})
designs = st.fixed_dictionaries({}, optional={
    "format": st.sampled_from(["kernel-studio-design", "other"]) | json_values, "version": st.sampled_from([1, 2, "1"]),
    "network": networks | json_values, "padfree": st.booleans() | json_values,
    "layers": st.lists(layers, max_size=20) | json_values, "datset": json_values, "padfre": st.booleans()})
design_texts = st.one_of(
    designs.map(json.dumps),
    st.tuples(designs, st.integers(1, 3000)).map(lambda t: "[" * t[1] + json.dumps(t[0]) + "]" * t[1]),
    designs.map(lambda d: json.dumps(d).replace("{", '{"layers": [], ', 1)),  # a key given twice, sometimes
    designs.map(lambda d: json.dumps(d).replace("1", "9" * 5000, 1)),  # a number past Python's digit limit
    designs.map(lambda d: json.dumps(d).replace("1", "NaN", 1)),
    st.text(max_size=300), st.binary(max_size=200))


@fuzz(300)
@given(design_texts)
def test_design_text_is_a_design_or_one_design_error(text):
    with no_hang():
        try:
            validate(loads_design(text))
        except DesignError as err:
            assert_one_short_line(str(err))


@fuzz(300)
@given(designs, networks, st.text(min_size=1, max_size=30), json_values, st.booleans())
def test_an_unknown_key_of_a_design_or_its_network_is_named(design, network, key, value, in_network):
    allowed = NETWORK_KEYS if in_network else DESIGN_KEYS
    if key in allowed:
        key = key + "_"
    if in_network:  # the design's own keys are checked first: keep them good
        design = {"format": "kernel-studio-design", "network": {**network, key: value}, "layers": []}
    else:
        design = {**design, key: value}
    with pytest.raises(DesignError, match="unknown key") as err:
        loads_design(json.dumps(design))
    assert_one_short_line(str(err.value))


# --- cfglists ---------------------------------------------------------------------------------

atoms = st.one_of(st.integers(-3, 12).map(str),
                  st.sampled_from(["'x'", "True", "None", "1.5", "x", "9" * 5000, "0x10", "'\\d'", "[]"]))


def grow(inner):
    return st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.lists(inner, max_size=3).map(lambda xs: "(" + ", ".join(xs) + ",)"),
        st.tuples(inner, st.sampled_from(["+", "*", "-", "**", "|", "if"]), inner).map(" ".join),
        st.tuples(inner, st.integers(-3, 10 ** 12)).map(lambda t: f"{t[0]} * {t[1]}"),
        st.tuples(st.integers(-3, 10 ** 12), inner).map(lambda t: f"{t[0]} * {t[1]}"),
        st.tuples(inner, st.integers(-2, 10 ** 7), st.sampled_from(["", ", 2", ", 0", ", -1"]))
          .map(lambda t: f"[{t[0]} for i in range({t[1]}{t[2]})]"),
        st.tuples(st.integers(1, 400), inner).map(lambda t: "[" * t[0] + t[1] + "]" * t[0]),
        st.tuples(inner, st.integers(1, 3000)).map(lambda t: " + ".join([t[0]] * t[1])))


python_cfglists = st.tuples(st.sampled_from(["", "cfg = ", "# a comment [[[\n", "x: int = "]),
                            st.recursive(atoms, grow, max_leaves=10),
                            st.sampled_from(["", "  # [[[[", "\n", "; 1", "\n1"])).map("".join)
json_cfglists = st.one_of(
    st.lists(st.lists(taps, max_size=4), min_size=7, max_size=7).map(json.dumps),  # the length ResNet-8 takes
    json_values.map(json.dumps),
    st.tuples(st.integers(0, 10 ** 5), st.integers(0, 3)).map(lambda t: json.dumps([[[5]] * t[0]] * t[1])),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n))


def check_cfglist(text):
    with no_hang():
        try:
            cfglist = parse_cfglist_text(text)
            assert entries(cfglist) <= MAX_ENTRIES
            design_from_cfglist(RESNET8, cfglist)
        except DesignError as err:
            assert_one_short_line(str(err))


@fuzz(400)
@given(python_cfglists)
def test_python_cfglist_text_is_a_design_or_one_design_error(text):
    check_cfglist(text)


@fuzz(200)
@given(json_cfglists)
def test_json_cfglist_text_is_a_design_or_one_design_error(text):
    check_cfglist(text)


# --- the CLI ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """Files for the CLI fuzz: good ones for the rest of a command line, and bad ones of every sort."""
    d = tmp_path_factory.mktemp("fuzz")
    texts = {"empty": "", "junk.txt": "\x00\xff not json [[", "deep.json": "[" * 3000 + "]" * 3000,
             "bomb.txt": "[[5]*100000]*100000", "bigint.json": "[[[" + "9" * 5000 + "]]]",
             "typo.json": json.dumps({"network": {"arch": "resnet", "depth": 8}, "datset": "x", "layers": []}),
             "twice.json": '{"layers": [], "layers": []}', "list.json": "[1, 2]"}
    for name, text in texts.items():
        (d / name).write_text(text)
    (d / "design.json").write_text(dense_design(RESNET8).dumps())
    torch.save(build_model(dense_design(RESNET8)).state_dict(), d / "w8.pt")
    torch.save(torch.randn(1, 3, 32, 32), d / "x.pt")
    torch.save(torch.randn(1, 3, 32, 32, dtype=torch.complex64), d / "complex.pt")
    (d / "home").mkdir()
    return d


def bad_int(low, high):
    return st.one_of(st.integers(max_value=low - 1), st.integers(min_value=high + 1),
                     st.sampled_from(["", "x", "2.5", "nan", "1e3", "9" * 5000, "0x10"])).map(str)


def bad_choice(choices):
    return st.text(max_size=30).filter(lambda t: t not in choices)


bad_number = st.one_of(st.sampled_from(["nan", "inf", "-inf", "x", "", "1e999", "9" * 5000]),
                       st.floats(max_value=0.999).map(str))
bad_rate = st.one_of(st.sampled_from(["nan", "inf", "-0.5", "1", "x", ""]), st.floats(min_value=1).map(str))
# "@name": that file of the fixture folder; "" stays the empty path.
BAD_FILES = ["", "@missing", "@.", "/dev/zero", "@empty", "@junk.txt", "@deep.json", "@bomb.txt", "@bigint.json",
             "@typo.json", "@twice.json", "@list.json"]
BAD_WEIGHTS = ["", "@missing", "@.", "@empty", "@junk.txt", "@deep.json", "@x.pt", "@design.json"]
BAD_INPUTS = ["", "@missing", "@.", "@empty", "@junk.txt", "@w8.pt", "@complex.pt"]
BAD_OUTPUTS = ["", "@.", "@missing/out.pt"]
RESNET8_OPTIONS = ["--arch", "resnet", "--depth", "8"]


def bad_model_options():
    """(model options, one of them bad): what every command that builds a network takes."""
    return st.one_of(
        bad_int(0, 1202).map(lambda v: ["--arch", "resnet", "--depth", v]),
        bad_int(1, 4096).map(lambda v: [*RESNET8_OPTIONS, "--hetconv", v]),
        bad_int(1, 4096).map(lambda v: [*RESNET8_OPTIONS, "--block-n", v, "--prune-rate", "0.5"]),
        bad_rate.map(lambda v: [*RESNET8_OPTIONS, "--block-n", "4", "--prune-rate", v]),
        bad_number.map(lambda v: [*RESNET8_OPTIONS, "--lowrank-ratio", v]),
        bad_choice(list_models() + ["vgg_any", "resnet_any"]).map(lambda v: ["--arch", v]),
        bad_choice(["cifar10", "cifar100", "fashion-mnist"]).map(lambda v: [*RESNET8_OPTIONS, "--dataset", v]),
        bad_choice(list(ASK_PRESETS)).map(lambda v: [*RESNET8_OPTIONS, "--anycfg", v]),
        st.sampled_from(BAD_FILES).map(lambda f: ["--design", f]),
        st.sampled_from(BAD_FILES).map(lambda f: [*RESNET8_OPTIONS, "--cfglist", f]),
        st.sampled_from(BAD_FILES).map(lambda f: [*RESNET8_OPTIONS, "--lowrank-config", f]),
        st.sampled_from(BAD_WEIGHTS).map(lambda f: [*RESNET8_OPTIONS, "--lowrank-ratio", "2", "--checkpoint", f]),
        st.sampled_from([["--anycfg", "ASK_5a"], ["--depth", "8"], ["--padfree"], ["--rearrange"]])
          .map(lambda option: ["--design", "@design.json", *option]),
        st.sampled_from(["--frobnicate", "--depth", "stray"]).map(lambda token: [*RESNET8_OPTIONS, token]))


def command_lines():
    """Whole command lines of every command, each with one bad piece (the rest could run); the model options
    come last, so that a bad one is not overridden by the good one of the rest (argparse keeps the last)."""
    model = bad_model_options()
    return st.one_of(
        model.map(lambda m: ["count", *m]),
        bad_choice(["macs", "ask", "bsconv"]).map(lambda v: ["count", *RESNET8_OPTIONS, "--convention", v]),
        model.map(lambda m: ["bench", "--backend", "reference", "--repeats", "1", "--warmup", "0", *m]),
        st.sampled_from(["--batch-size", "--repeats", "--warmup", "--threads"]).flatmap(
            lambda option: bad_int(*{"--batch-size": (1, 1024), "--repeats": (1, 1000), "--warmup": (0, 100),
                                     "--threads": (0, 4096)}[option]).map(
                lambda v: ["bench", *RESNET8_OPTIONS, "--backend", "reference", option, v])),
        bad_choice(["infer", "train"]).map(lambda v: ["bench", *RESNET8_OPTIONS, "--mode", v]),
        model.map(lambda m: ["infer", "--checkpoint", "@w8.pt", "--input", "@x.pt", "--output", "@y.pt", *m]),
        st.sampled_from(BAD_WEIGHTS).map(lambda f: ["infer", *RESNET8_OPTIONS, "--checkpoint", f,
                                                    "--input", "@x.pt", "--output", "@y.pt"]),
        st.sampled_from(BAD_INPUTS).map(lambda f: ["infer", *RESNET8_OPTIONS, "--checkpoint", "@w8.pt",
                                                   "--input", f, "--output", "@y.pt"]),
        st.sampled_from(BAD_OUTPUTS).map(lambda f: ["infer", *RESNET8_OPTIONS, "--checkpoint", "@w8.pt",
                                                    "--input", "@x.pt", "--output", f]),
        model.map(lambda m: ["import-ask", "@w8.pt", "--out", "@ours.pt", *m]),
        st.sampled_from(BAD_WEIGHTS).map(
            lambda f: ["import-ask", f, *RESNET8_OPTIONS, "--out", "@ours.pt"]),
        st.sampled_from(BAD_OUTPUTS).map(lambda f: ["import-ask", "@w8.pt", *RESNET8_OPTIONS, "--out", f]),
        model.map(lambda m: ["export", "--format", "design", "--out", "@d.json", *m]),
        bad_choice(["design", "cfglist", "onnx", "weights", "pt2"]).map(
            lambda v: ["export", *RESNET8_OPTIONS, "--format", v, "--out", "@d.json"]),
        st.sampled_from(BAD_OUTPUTS).map(lambda f: ["export", *RESNET8_OPTIONS, "--format", "design", "--out", f]),
        st.sampled_from(BAD_WEIGHTS).map(lambda f: ["export", *RESNET8_OPTIONS, "--format", "weights",
                                                    "--checkpoint", f, "--out", "@w.pt"]),
        model.map(lambda m: ["train", "--data", "synthetic", "--max-steps", "1", "--home", "@home", *m]),
        model.map(lambda m: ["runs", "start", "--home", "@home", *m]),
        st.sampled_from([["prepare-data"], ["runs", "list"], ["runs", "tick"]]).map(
            lambda c: [*c, "--home", "@junk.txt"]),
        st.sampled_from(["stop", "resume", "delete"]).flatmap(
            lambda action: st.sampled_from(["x", "", "1.5", "9" * 5000]).map(
                lambda v: ["runs", action, v, "--home", "@home"])),
        bad_choice(["count", "infer", "import-ask", "bench", "prepare-data", "train", "export", "runs", "sweep"])
          .map(lambda c: [c]))


@fuzz(400)
@given(command_lines())
def test_every_command_refuses_bad_input_with_one_line_and_exit_code_2(paths, argv):
    argv = [str(paths / a[1:]) if a.startswith("@") else a for a in argv]
    with no_hang(), contextlib.redirect_stdout(io.StringIO()) as out, \
            contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(argv)
    assert (code, out.getvalue()) == (2, ""), " ".join(map(repr, argv)) + " -> " + err.getvalue()
    assert len(err.getvalue().splitlines()) == 1 and "Traceback" not in err.getvalue(), err.getvalue()
    assert len(err.getvalue()) <= MAX_MESSAGE + len("error: \n")
