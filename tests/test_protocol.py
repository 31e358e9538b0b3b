"""Protocol synthface-v2 (pacofr/eval/protocol.py): its splits, its checks, and that its flat
metrics are those of the task functions it calls, with validation curves."""
import numpy as np
import pytest

from pacofr.eval import protocol as P
from pacofr.eval import tasks
from pacofr.eval.finetune import FitConfig, encode, encoder_of
from pacofr.model import create_model


def test_val_split_has_its_own_seed_and_identities():
    val = tasks.synthface_split("val", 40, size=32)
    train = tasks.synthface_split("train", 40, size=32)
    assert val["seed"] == 3 and train["seed"] == 1
    assert not np.array_equal(val["images_u8"], train["images_u8"])
    with pytest.raises(ValueError, match="split must be one of"):
        tasks.synthface_split("holdout", 4)


@pytest.mark.parametrize("fields,message", [
    ({"split": "train"}, "split must be 'val'"),
    ({"labels": [0.0]}, r"label fraction must be in \(0, 1\]"),
    ({"tasks": ["pose"]}, "tasks must be among"),
    ({"probe_steps": 0}, "probe_steps must be >= 1"),
    ({"finetune_labels": [1.0]}, "finetune_labels must be among labels"),
])
def test_protocol_checks(fields, message):
    with pytest.raises(ValueError, match=message):
        P.Protocol(**fields)
    with pytest.raises(ValueError, match="unknown protocol fields"):
        P.Protocol.from_dict({"heads": 1})


def test_metrics_are_the_task_functions_and_curves_are_recorded():
    model = create_model("pacofr_test_tiny", seed=4)
    proto = P.Protocol(labels=(0.25, 1.0), finetune_labels=(0.25,), train_images=40, eval_images=10, probe_steps=5,
                       parsing_probe_steps=3,
                       finetune_steps=3, curve_every=2, batch_size=4)
    res = P.evaluate(model, proto)
    m = res["metrics"]
    for key in ("alignment/linear/25%/nme", "alignment/linear/100%/auc", "alignment/finetune/25%/fr",
                "parsing/linear/100%/f1", "parsing/finetune/25%/f1", "alignment/linear/25%/nme/occlusion"):
        assert key in m
    assert "alignment/finetune/100%/nme" not in m
    assert [s for s, _ in res["curves"]["alignment/linear/25%"]] == [2, 4, 5]
    assert [s for s, _ in res["curves"]["parsing/finetune/25%"]] == [2, 3]
    assert [s for s, _ in res["curves"]["parsing/linear/100%"]] == [2, 3]     # its own probe budget
    # the last point of a probe's curve is its final score
    assert res["curves"]["alignment/linear/25%"][-1][1] == pytest.approx(m["alignment/linear/25%/nme"], rel=1e-6)
    # the 25% probe is tasks.run_alignment on the whole split (40 faces of 4 identities) at
    # labels 0.25: its first 10 faces, the same faces whatever the protocol renders
    train, val = tasks.synthface_split("train", 40, size=32), tasks.synthface_split("val", 10, size=32)
    small, _ = P.split_data(P.Protocol(labels=(0.25,), train_images=40, eval_images=10), size=32)
    assert len(small["images_u8"]) == 10
    np.testing.assert_array_equal(small["images_u8"], train["images_u8"][:10])
    enc = encoder_of(model)
    cfg = FitConfig(task="alignment", head="heatmap", mode="linear", steps=5, batch_size=4)
    direct, _ = tasks.run_alignment(model, train, val, cfg, 0.25, tokens=(encode(enc, train["images"]),
                                                                         encode(enc, val["images"])))
    assert direct["train_images"] == 10
    assert direct["subsets"]["all"]["nme"] == pytest.approx(m["alignment/linear/25%/nme"], rel=1e-6)
