"""The exported ONNX and pt2 carry the fast form and compute what the torch model computes (issue 13)."""
import json
from collections import Counter

import numpy as np
import onnx
import pytest
import torch

from designer.cli import build_parser, main
from designer.cli.options import design_from_args
from designer.designs.shapes import KernelShape, preset_shapes
from designer.errors import DesignError
from designer.networks.build import build_model
from designer.networks.export import export
from designer.networks.export_forms import ask_form, hetconv_form
from models.layers.ask import AskConv2d
from models.layers.hetconv import HetConv2d

ort = pytest.importorskip("onnxruntime")

NETWORKS = {  # every layer kind; resnet 8 has stride-2 convs, resnet_proj --padfree pads them by 0
    "ask_5a": "--arch resnet --depth 8 --anycfg ASK_5a",
    "ask_6": "--arch resnet --depth 8 --anycfg ASK_6",  # four shapes: four blocks, concatenated
    "ask_4a": "--arch resnet --depth 8 --anycfg ASK_4a",  # 2x2 corners: asymmetric padding
    "hetconv": "--arch resnet --depth 8 --hetconv 4",
    "hetconv_padfree": "--arch resnet_proj --depth 8 --padfree --hetconv 2",
    "ask_padfree": "--arch resnet_proj --depth 8 --padfree --anycfg ASK_5b",
    "lowrank": "--arch resnet --depth 8 --lowrank-ratio 2",
    "blocksparse": "--arch resnet --depth 8 --block-n 4 --prune-rate 0.5",
}


def design_of(options: str):
    return design_from_args(build_parser().parse_args(["count", *options.split()]))


def trained_like(design) -> torch.nn.Module:
    """A model with non-trivial BatchNorm statistics, so folding them is tested."""
    torch.manual_seed(0)
    model = build_model(design, "decomposed")
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


def run_onnx(path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


def assert_close(got, want) -> None:
    want = np.asarray(want)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("kind", NETWORKS)
def test_fast_onnx_in_onnxruntime_equals_the_torch_model(kind, tmp_path):
    design = design_of(NETWORKS[kind])
    model = trained_like(design)
    export(design, "onnx", tmp_path / "m.onnx", model)
    x = torch.randn(2, 3, 32, 32)  # batch 2: the batch dimension is dynamic (traced at 1)
    with torch.no_grad():
        assert_close(run_onnx(tmp_path / "m.onnx", x), model(x))


def every_kind_where_it_fits(options: str):
    """A torchvision network with ASK_5a, HetConv P=4, 1x16 at 50% and low-rank 8 in turn on the convs that take
    each (the stem stays dense): every kind in one export, next to torchvision's own blocks."""
    from designer.designs.kinds import LayerChoice
    from designer.networks.build import can_take, design_layers
    design = design_of(options)
    kinds = [LayerChoice.preset("ASK_5a"), LayerChoice.hetconv(4), LayerChoice.blocksparse(16, 0.5),
             LayerChoice.lowrank(8)]
    layers = list(design.layers)
    for conv in design_layers(design)[1:]:
        choice = kinds[conv.index % len(kinds)]
        if can_take(choice, conv):
            layers[conv.index] = choice
    return design.with_layers(layers)


@pytest.mark.parametrize("options, size", [
    ("--arch torchvision:resnet18 --num-classes 10 --input-size 64", 64),  # stride-2 3x3 and 1x1 downsampling
    ("--arch torchvision:vgg11 --num-classes 10", 224),  # convs with a bias: the ASK layers keep it
    ("--arch torchvision:mobilenet_v2 --num-classes 10 --input-size 64", 64),  # depthwise convs stay as they are
])
def test_fast_onnx_of_a_torchvision_network_equals_the_torch_model(options, size, tmp_path):
    design = every_kind_where_it_fits(options)
    assert len({c.kind for c in design.layers}) >= 3
    model = trained_like(design)
    export(design, "onnx", tmp_path / "m.onnx", model)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert_close(run_onnx(tmp_path / "m.onnx", x), model(x))


@pytest.mark.parametrize("kind", ["ask_6", "hetconv_padfree", "lowrank"])
def test_pt2_program_equals_the_torch_model_at_any_batch(kind, tmp_path):
    design = design_of(NETWORKS[kind])
    model = trained_like(design)
    export(design, "pt2", tmp_path / "m.pt2", model)
    program = torch.export.load(tmp_path / "m.pt2").module()
    for batch in (1, 3):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            assert_close(program(x).numpy(), model(x).numpy())


LAYER_SHAPES = [preset_shapes("ASK_5a"), preset_shapes("ASK_4b"), preset_shapes("ASK_7"),
                [KernelShape((9,)), KernelShape((1, 3, 7, 9))]]  # a lone corner tap (cropped input), dilated 2


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(7, 7), (8, 5)])
@pytest.mark.parametrize("shapes", LAYER_SHAPES, ids=["plus", "ask_4b", "ask_7", "corners"])
def test_ask_layer_form_equals_the_layer_at_every_size_and_stride(shapes, size, stride):
    torch.manual_seed(0)
    layer = AskConv2d(16, 4 * len(shapes), shapes, stride).eval()
    bn = torch.nn.BatchNorm2d(layer.out_channels).eval()
    bn.running_mean.uniform_(-1, 1)
    x = torch.randn(2, 16, *size)
    with torch.no_grad():
        assert_close(ask_form(layer, size, bn)(x), bn(layer(x)))


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", [0, 1])
def test_hetconv_layer_form_equals_the_layer(stride, padding):
    torch.manual_seed(0)
    layer = HetConv2d(8, 8, 4, stride, padding, bias=True).eval()
    x = torch.randn(2, 8, 9, 9)
    with torch.no_grad():
        assert_close(hetconv_form(layer)(x), layer(x))


def conv_kernels(path) -> Counter:
    graph = onnx.load(str(path)).graph
    return Counter(tuple(next(a.ints for a in node.attribute if a.name == "kernel_shape"))
                   for node in graph.node if node.op_type == "Conv")


def test_fast_ask_onnx_has_sub_convs_not_3x3_and_no_batchnorm_while_masked_keeps_3x3(tmp_path):
    design = design_of(NETWORKS["ask_5a"])  # every 3x3 but the first (3 input channels) is the plus shape
    model = trained_like(design)
    export(design, "onnx", tmp_path / "fast.onnx", model)
    export(design, "onnx", tmp_path / "masked.onnx", model, form="masked")
    fast, masked = conv_kernels(tmp_path / "fast.onnx"), conv_kernels(tmp_path / "masked.onnx")
    assert fast[(3, 3)] == 1 and fast[(3, 1)] == fast[(1, 2)] == 6
    assert masked[(3, 3)] == 7
    nodes = {node.op_type for node in onnx.load(str(tmp_path / "fast.onnx")).graph.node}
    assert "BatchNormalization" not in nodes  # folded into the sub-convs (after an Add no runtime folds it)


def test_onnx_records_form_opset_input_and_design_and_names_a_dynamic_batch(tmp_path):
    design = design_of(NETWORKS["hetconv"])
    export(design, "onnx", tmp_path / "m.onnx", form="masked")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["kernel_studio.form"] == "masked" and meta["kernel_studio.opset"] == "17"
    assert meta["kernel_studio.input"] == "input: float32 (batch, 3, 32, 32), batch dynamic"
    assert json.loads(meta["kernel_studio.design"]) == json.loads(design.dumps())
    assert proto.opset_import[0].version == 17
    (inp,) = proto.graph.input
    assert inp.name == "input" and inp.type.tensor_type.shape.dim[0].dim_param == "batch"


def test_cli_bench_onnxruntime_times_both_exports_in_the_bench_shape(capsys):
    rc = main(["bench", *NETWORKS["ask_5a"].split(), "--runtime", "onnxruntime", "--repeats", "1", "--warmup", "0",
               "--json"])
    result = json.loads(capsys.readouterr().out)
    assert rc == 0 and result["runtime"] == "onnxruntime" and result["threads"] == torch.get_num_threads()
    timing = result["backends"]["onnxruntime"]
    assert timing["speedup_vs_dense"] == pytest.approx(result["dense"]["median_ms"] / timing["median_ms"])


def test_cli_refuses_a_training_step_in_onnxruntime_and_an_unknown_form(capsys, tmp_path):
    assert main(["bench", "--arch", "resnet", "--depth", "8", "--runtime", "onnxruntime", "--mode", "train",
                 "--batch-size", "2"]) == 2
    assert "inference only" in capsys.readouterr().err
    assert main(["export", "--arch", "resnet", "--depth", "8", "--format", "onnx", "--onnx-form", "sparse",
                 "--out", str(tmp_path / "m.onnx")]) == 2


def test_lowrank_onnx_pads_each_rank_to_the_runtime_block_with_zero_filters(tmp_path):
    design = design_of(NETWORKS["lowrank"])
    ranks = [choice.rank for choice in design.layers if choice.kind == "lowrank"]
    assert any(rank % 16 for rank in ranks)  # else the test would show nothing
    export(design, "onnx", tmp_path / "m.onnx")
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    weights = {init.name: init.dims for init in graph.initializer}
    vertical = [weights[node.input[1]][0] for node in graph.node if node.op_type == "Conv"
                and tuple(next(a.ints for a in node.attribute if a.name == "kernel_shape")) == (3, 1)]
    assert vertical == [-(-rank // 16) * 16 for rank in ranks]


def test_onnx_export_is_deterministic(tmp_path):
    design = design_of(NETWORKS["ask_6"])
    model = trained_like(design)
    first, second = (export(design, "onnx", tmp_path / name, model).read_bytes() for name in ("a.onnx", "b.onnx"))
    assert first == second


def test_a_network_the_onnx_exporter_cannot_take_is_one_clear_error(tmp_path, capfd):
    # torchvision's VGG pools to 7x7 with an adaptive pool; from 2x2 (a 64x64 input) the exporter has no form
    design = design_of("--arch torchvision:vgg11 --num-classes 10 --input-size 64")
    with pytest.raises(DesignError, match="does not export to ONNX at 3x64x64: Unsupported: ONNX export of operator "
                                          "adaptive_avg_pool2d"):
        export(design, "onnx", tmp_path / "m.onnx")
    assert capfd.readouterr() == ("", "")  # the exporter's graph dump stays out of the terminal
    assert not list(tmp_path.iterdir())
