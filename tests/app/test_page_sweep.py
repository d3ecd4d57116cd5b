"""Every page renders, with no exception element, for every registered architecture (padding-free where the
family has it) with a dense design and with every kernel kind it can take. A new architecture joins by being
registered (models.list_models)."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from designer.designs.design import Network

from designer.designs.kinds import LayerChoice
from designer.networks import editing
from designer.networks.build import dense_design
from designer.networks.variants import hetconv_layers, lowrank_layers, pruning_layers
from models import list_models, supports_padfree

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGES = ["pages/design.py", "pages/analyze.py", "pages/benchmark.py", "pages/train.py", "pages/runs.py",
         "pages/sweeps.py"]


def _networks():
    for arch in list_models():
        for padfree in (False, True) if supports_padfree(arch) else (False,):
            yield pytest.param(arch, padfree, id=f"{arch}{'-padfree' if padfree else ''}")


def designs(arch: str, padfree: bool):
    """The dense design and one design per kind the network can take (on the layers the papers use)."""
    dense = dense_design(Network(arch, editing.default_depth(arch), "cifar10"), padfree)
    convs = editing.design_layers(dense)
    yield "dense", dense
    full = editing.full_kxk_layers(dense)
    if full:
        yield "ask", editing.apply_preset(dense, full, "ASK_5a")
    het = [i for i in hetconv_layers(convs) if convs[i].spec.in_channels % 4 == 0 and
           convs[i].spec.out_channels % 4 == 0]
    if het:
        yield "hetconv", editing.set_choice(dense, het, LayerChoice.hetconv(4))
    pruned = pruning_layers(convs, 8)
    if pruned:
        yield "blocksparse", editing.set_choice(dense, pruned, LayerChoice.blocksparse(8, 0.5))
    low, _ = editing.lowrank_targets(dense, lowrank_layers(convs), 2)
    if low:
        yield "lowrank", editing.set_choice(dense, low, LayerChoice.lowrank(2))


@pytest.mark.parametrize("arch, padfree", list(_networks()))
def test_every_page_renders_every_kind_of_design(arch, padfree, tmp_path, monkeypatch):
    monkeypatch.setenv("KERNEL_STUDIO_HOME", str(tmp_path))
    for kind, design in designs(arch, padfree):
        at = AppTest.from_file(APP, default_timeout=60)
        at.session_state["design"] = design
        at.run()
        for page in PAGES:
            at.switch_page(page).run()
            assert not at.exception, (kind, page, [e.value for e in at.exception])
            assert at.title[0].value == page.split("/")[1][:-3].capitalize(), (kind, page)
        assert at.session_state["design"] == design, kind
