"""The auto backend runs, per input signature, the backend it measured fastest."""
import time

import pytest
import torch
import torch.nn as nn

from designer.designs.shapes import preset_shapes
from models.layers import autotune
from models.layers.ask import AskConv2d
from models.layers.autotune import AUTO, fastest, register_auto
from models.layers.epilogue import Epilogue


class Scale(nn.Module):
    """A toy layer whose backends all compute 2 * x * w, at different speeds."""

    def __init__(self, registry):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.registry = registry
        self.calls = []

    def forward(self, x, backend=AUTO):
        return self.registry[backend](self, x)


def toy_registry(slow_seconds: float = 0.02):
    registry = {}

    def backend(name, delay):
        def forward(m, x):
            m.calls.append(name)
            time.sleep(delay)
            return 2 * x * m.w
        registry[name] = forward

    backend("slow", slow_seconds)
    backend("fast", 0.0)

    def refuses(m, x):
        raise TypeError("float32 only")
    registry["refuses"] = refuses
    register_auto(registry)
    return registry


def test_auto_picks_the_fastest_and_then_only_runs_it():
    layer = Scale(toy_registry())
    x = torch.randn(2, 3)
    with torch.no_grad():
        assert torch.equal(layer(x), 2 * x)
        layer.calls.clear()
        layer(x)
        layer(x)
    assert layer.calls == ["fast", "fast"]
    assert list(layer.auto_choices.values()) == ["fast"]


def test_choice_is_made_per_shape_and_per_grad_mode():
    layer = Scale(toy_registry())
    with torch.no_grad():
        layer(torch.randn(2, 3))
        layer(torch.randn(4, 3))
    layer(torch.randn(4, 3)).sum().backward()
    shapes_and_grad = sorted((key[0], key[-1]) for key in layer.auto_choices)
    assert shapes_and_grad == [((2, 3), False), ((4, 3), False), ((4, 3), True)]


def test_with_an_epilogue_auto_times_each_backend_with_it_in_the_backend_s_own_call_where_it_has_one():
    """The inference form (models.fold) runs bias + ReLU after the conv: a backend that fuses them can win
    although its conv alone is slower."""
    registry = toy_registry(slow_seconds=0.004)

    def fused(m, x, epilogue):  # the slow backend with the epilogue in its own call: the fastest of all
        m.calls.append("slow+epilogue")
        return torch.relu(2 * x * m.w + epilogue.bias.view(1, -1, 1, 1))
    registry["slow"].with_epilogue = fused
    plain = registry["fast"]
    registry["fast"] = lambda m, x: (time.sleep(0.002), plain(m, x))[1]  # 2 ms, no epilogue of its own
    layer = Scale(registry)
    x, epilogue = torch.randn(2, 3, 4, 4), Epilogue(bias=torch.ones(3), relu=True)
    with torch.no_grad():
        assert autotune.chosen_backend(registry, layer, x, epilogue) == "slow"  # 0 ms against 2
        assert autotune.chosen_backend(registry, layer, x) == "fast"  # the conv alone: 2 ms against 4
    assert sorted(key[-2] for key in layer.auto_choices) == [False, True]  # one choice with, one without
    for name in ("slow", "fast"):
        assert torch.equal(autotune.run_with_epilogue(registry[name], layer, x, epilogue), torch.relu(2 * x + 1))


def test_timing_with_gradients_leaves_grads_untouched():
    layer = Scale(toy_registry())
    x = torch.ones(2, 3)
    layer(x).sum().backward()  # tuning runs forward + backward of every candidate first
    assert layer.w.grad.item() == pytest.approx(12.0)


def test_no_runnable_backend_is_an_error_naming_the_layer():
    registry = {"refuses": toy_registry()["refuses"]}
    with pytest.raises(RuntimeError, match="no backend of Scale"):
        fastest(registry, Scale(registry), torch.randn(2), wants_grad=False)


def test_auto_ask_conv_equals_reference_and_keeps_state_dict():
    torch.manual_seed(0)
    conv = AskConv2d(16, 16, preset_shapes("ASK_5a"))
    before = {k: v.clone() for k, v in conv.state_dict().items()}
    x = torch.randn(2, 16, 6, 6)
    with torch.no_grad():
        expected = conv(x)
        conv.backend = "auto"
        got = conv(x)
    assert ((got - expected).abs().max() / expected.abs().max()).item() < 1e-4
    assert set(conv.auto_choices.values()) <= {"reference", "decomposed", "taichi", "sconv"}
    after = conv.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)


def clocked_registry(clock: list[float], seconds: dict[str, float]):
    """Backends that take `seconds` each on a fake clock, and count their calls."""
    registry = {}
    for name, cost in seconds.items():
        def forward(m, x, name=name, cost=cost):
            m.calls.append(name)
            clock[0] += cost
            return x
        registry[name] = forward
    return registry


@pytest.mark.parametrize("b_seconds, rounds", [(2.0, 1), (1.05, autotune.MAX_ROUNDS)])
def test_close_candidates_get_more_rounds_and_slow_ones_drop_out(monkeypatch, b_seconds, rounds):
    clock = [0.0]
    monkeypatch.setattr(autotune.time, "perf_counter", lambda: clock[0])
    registry = clocked_registry(clock, {"a": 1.0, "b": b_seconds, "slow": 3.0})
    layer = Scale(registry)
    assert fastest(registry, layer, torch.randn(2), wants_grad=False) == "a"
    calls = {name: layer.calls.count(name) for name in registry}
    assert calls == {"a": 1 + rounds * autotune.TRIALS, "b": 1 + rounds * autotune.TRIALS,
                     "slow": 1 + autotune.TRIALS}
