"""Export: design JSON, ASK cfglist, weights (weights_only) and ONNX that onnxruntime runs like torch
(the fast and masked forms, pt2: test_export_onnx.py)."""
import json

import numpy as np
import pytest
import torch

from designer.designs.design import Network, loads_design

from designer.designs.kinds import LayerChoice
from designer.errors import DesignError
from designer.networks.build import build_model, dense_design
from designer.networks.export import export

BASE = dense_design(Network("resnet", 8, "cifar10"))
ASK = BASE.with_layers(LayerChoice.preset("ASK_5a") if i else layer for i, layer in enumerate(BASE.layers))


def test_design_json_round_trips(tmp_path):
    out = export(ASK, "design", tmp_path / "d.json")
    assert loads_design(out.read_text()) == ASK


def test_cfglist_is_the_ask_reference_format(tmp_path):
    cfglist = json.loads(export(ASK, "cfglist", tmp_path / "c.json").read_text())
    assert len(cfglist) == 7 and cfglist[0] == [list(range(1, 10))] and cfglist[1] == [[2, 4, 5, 6, 8]]


def test_weights_load_back_with_weights_only(tmp_path):
    model = build_model(ASK)
    export(ASK, "weights", tmp_path / "w.pt", model)
    state = torch.load(tmp_path / "w.pt", weights_only=True)
    fresh = build_model(ASK)
    fresh.load_state_dict(state)
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value)


def test_onnx_loads_in_onnxruntime_and_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = build_model(ASK, "decomposed")  # any backend: export rewrites each layer in standard convs
    for m in model.modules():  # non-trivial BN statistics, so eval mode matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    model.eval()
    export(ASK, "onnx", tmp_path / "m.onnx", model)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(5, 3, 32, 32)  # batch 5: the batch dimension is dynamic
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_bad_format_or_folder_is_refused_and_leaves_no_file(tmp_path):
    with pytest.raises(DesignError) as err:
        export(ASK, "pickle", tmp_path / "x")
    assert err.value.where == "--format"
    with pytest.raises(DesignError, match="does not exist"):
        export(ASK, "design", tmp_path / "missing" / "d.json")
    assert list(tmp_path.iterdir()) == []
