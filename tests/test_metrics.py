"""The METRICS registry (pacofr/eval/metrics.py): every entry is complete, a key's direction is a
lookup (an unknown metric is an error, never a guess), the committed sweep results aggregate to
the committed tables, and a metric added by one entry flows through the protocol, the sweep
aggregation and both reports without another file changing."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import pacofr.eval
from pacofr.eval import benchmark, metrics, protocol as P
from pacofr.model import create_model
from pacofr.sweep import aggregate, compare
from pacofr.sweep.runner import read_rows

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "experiments"


def test_every_entry_says_what_it_is():
    assert list(metrics.METRICS) == ["nme", "auc", "fr", "f1", "verification", "tar@1e-2", "knn_top1", "iq"]
    for name, m in metrics.METRICS.items():
        assert m.name == name and m.task in metrics.TASKS and callable(m.compute)
        assert m.better in ("lower", "higher") and m.unit and m.label and m.description
    assert [m.name for m in metrics.METRICS.values() if m.lower_is_better] == ["nme", "fr"]
    assert [m.name for m in metrics.of_task("alignment", headline=True)] == ["nme"]
    with pytest.raises(ValueError, match="better must be 'lower' or 'higher'"):
        metrics.Metric("x", "alignment", len, "smaller", "%", "x", "x")
    with pytest.raises(ValueError, match="task must be one of"):
        metrics.Metric("x", "pose", len, "lower", "%", "x", "x")
    with pytest.raises(ValueError, match="already registered"):
        metrics.register(metrics.METRICS["nme"])


def test_alignment_functions_match_the_per_subset_summary():
    nmes = np.array([0.02, 0.05, 0.08, 0.2, 0.04])
    row = pacofr.eval.alignment.summarize(nmes)["all"]
    assert [metrics.METRICS[k].compute(nmes) for k in ("nme", "auc", "fr")] == [row["nme"], row["auc"], row["fr"]]


@pytest.mark.parametrize("key,lower", [("alignment/linear/1%/nme", True), ("alignment/finetune/10%/nme/blur", True),
                                       ("alignment/linear/100%/fr", True), ("alignment/linear/1%/auc", False),
                                       ("parsing/linear/1%/f1", False), ("identity/tar@1e-2", False)])
def test_direction_is_the_registry_entry(key, lower):
    assert aggregate.lower_is_better(key) is lower and compare.lower_is_better(key) is lower


@pytest.mark.parametrize("key,message", [
    ("alignment/linear/1%/nme_p90", "unknown metric 'nme_p90'"),
    ("diag/token_cosine", "is not a metric key"),
    ("identity/nme", "belongs to task 'alignment', not 'identity'"),
    ("parsing/linear/1%/f1/occlusion", "is not scored per subset"),
])
def test_a_key_of_no_registered_metric_is_an_error(key, message):
    with pytest.raises(ValueError, match=message):
        aggregate.lower_is_better(key)


def test_labels_are_the_sweep_tables_headings():
    assert metrics.label("alignment/linear/1%/nme") == "NME LP 1%"
    assert metrics.label("alignment/finetune/10%/nme/large_pose") == "NME FT 10% large_pose"
    assert metrics.label("parsing/linear/100%/f1") == "F1 LP 100%" and metrics.label("identity/iq") == "iq"


@pytest.mark.parametrize("sweep", ["synthface_v2", "synthface_v2_subst", "synthface_v2_proxy"])
def test_committed_rows_aggregate_to_the_committed_tables(tmp_path, sweep):
    src = RESULTS / sweep
    shutil.copy(src / "rows.jsonl", tmp_path / "rows.jsonl")
    sd = json.loads((src / "sweep.json").read_text())
    summary = aggregate.summarize(read_rows(tmp_path))
    committed = (src / "table.md").read_text()
    table = aggregate.table_markdown(summary, sd)
    assert table.count("\n") > 2 and table in committed
    if (src / "pairs.json").exists():
        pairs = aggregate.pairs(summary, aggregate.pair_keys(sd["protocol"]))
        assert json.loads(json.dumps(aggregate.finite(pairs))) == json.loads((src / "pairs.json").read_text())
        assert aggregate.pairs_markdown(pairs) in committed


def worst_nme(nmes):
    """The largest NME of the faces scored."""
    return float(np.max(nmes))


@pytest.fixture
def added_metrics():
    """Two metrics added the way a contributor would: one entry each (the test removes them)."""
    added = [metrics.register(metrics.Metric("nme_max", "alignment", worst_nme, "lower", "% of the inter-ocular "
                                             "distance", "NME max", "the worst face's NME", headline=True)),
             metrics.register(metrics.Metric("roc_auc", "recognition", lambda r: r["verification"]["roc_auc"],
                                             "higher", "%", "roc_auc", "area under the verification ROC curve"))]
    yield added
    for m in added:
        metrics.METRICS.pop(m.name)


def test_a_registered_metric_flows_to_the_protocol_the_sweep_tables_and_eval_md(added_metrics):
    model = create_model("pacofr_test_tiny", seed=1)
    proto = P.Protocol(labels=(0.5,), tasks=("alignment", "identity"), train_images=20, eval_images=20, probe_steps=3,
                       curve_every=3, batch_size=4)
    res = P.evaluate(model, proto, details=True)
    m, full = res["metrics"], res["results"]["alignment/linear/50%"]
    assert m["alignment/linear/50%/nme_max"] == pytest.approx(np.max(full["per_image_nme"]))
    assert m["alignment/linear/50%/nme_max"] > m["alignment/linear/50%/nme"]
    assert m["identity/roc_auc"] == res["results"]["recognition"]["mean"]["verification"]["roc_auc"]
    assert "alignment/linear/50%/nme_max/occlusion" not in m             # not scored per subset
    assert [s for s, _ in res["curves"]["alignment/linear/50%"]] == [3]   # the curve stays the first headline's
    # aggregation: two arms, the one with the larger worst-face NME is the worse one
    rows = [{"arm": arm, "seed": 0, "steps": 1, "metrics": {**m, "alignment/linear/50%/nme_max": v}}
            for arm, v in (("a", 0.5), ("b", 0.7))]
    summary = aggregate.summarize(rows)
    sd = {"protocol": proto.to_dict()}
    assert "alignment/linear/50%/nme_max" in aggregate.columns(summary, sd["protocol"])
    assert "NME max LP 50% %" in aggregate.table_markdown(summary, sd) and "roc_auc %" in aggregate.table_markdown(
        summary, sd)
    pair = aggregate.pairs(summary, aggregate.pair_keys(sd["protocol"]))[0]["metrics"]["alignment/linear/50%/nme_max"]
    assert pair["diff"] == pytest.approx(0.2) and pair["better"] is False
    assert "NME max LP 50% 50.00%" in aggregate.headline(rows[0]["metrics"])
    # pacofr eval's report: a column of the alignment table, a value in each eval.json subset row
    results, _ = benchmark.evaluate(model, ("alignment",), train_images=20, test_images=20, steps=3, batch_size=4)
    assert results["alignment"]["subsets"]["all"]["nme_max"] == pytest.approx(
        np.max(results["alignment"]["per_image_nme"]))
    table = next(t for title, t in benchmark.tables(results).items() if title.startswith("Face alignment"))
    assert table.splitlines()[0] == "| subset | images | NME % | AUC@0.1 % | FR@0.1 % | NME max % |"


def test_the_one_driver_is_pacofr_eval_evaluate_and_pacofr_eval_is_its_preset():
    assert pacofr.eval.evaluate is P.evaluate and pacofr.eval.Protocol is P.Protocol
    p = benchmark.preset(("alignment", "quality"), mode="finetune", labels=0.5, steps=7)
    assert p == P.Protocol.preset("synthface-v1", tasks=("alignment", "quality"), labels=(0.5,),
                                  finetune_labels=(0.5,), probe_steps=7, parsing_probe_steps=7, finetune_steps=7)
    assert p.split == "test" and p.pools == ("cls", "mean") and p.curve_every == 0
    assert P.Protocol.preset("synthface-v2") == P.Protocol()
    with pytest.raises(ValueError, match="unknown protocol preset"):
        P.Protocol.preset("synthface-v3")
    with pytest.raises(ValueError, match="unknown task"):
        benchmark.preset(("pose",))
