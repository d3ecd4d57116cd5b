"""The Benchmark page's runtime choice: onnxruntime times the fast ONNX export against the dense export."""
from tests.app.test_pages import at, fresh, ok  # noqa: F401  (fixtures)


def test_benchmark_in_onnxruntime_shows_the_export_against_dense_and_saves_it(at):
    at.selectbox(key="net_arch").set_value("resnet").run()
    at.button(key="apply_preset").click().run()
    at.switch_page("pages/benchmark.py").run()
    at.selectbox(key="bench_runtime").set_value("onnxruntime").run()
    assert at.multiselect(key="bench_backends").disabled and at.selectbox(key="bench_mode").disabled
    at.number_input(key="bench_repeats").set_value(1).run()
    at.button(key="run_bench").click().run()
    ok(at)
    assert [m.label for m in at.main.metric][:2] == ["dense (onnx)", "onnxruntime"]
    assert "x vs dense" in at.main.metric[1].delta
    assert list(at.dataframe[0].value["backend"])[1] == "onnxruntime"
