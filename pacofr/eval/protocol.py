"""Protocol ``synthface-v2``: an evaluation to decide with. Every choice (method defaults, head
budgets) is made on the ``val`` split (SynthFace seed 3, its own identities); the ``test``
split (seed 2) is scored only for final tables. Heads train on the first label-budget faces of
``train`` (seed 1). Each head records its validation curve (the metric every
``curve_every`` steps), so that a budget can be shown to have converged.

``evaluate(model, protocol)`` returns flat metrics, one number per key, ready to average over
pre-training seeds::

    alignment/linear/1%/nme, .../auc, .../fr, .../nme/<subset>   (fractions, inter-ocular)
    parsing/linear/1%/f1                                          (mean F1, LaPa's 10 classes)
    identity/verification, identity/tar@1e-2, identity/knn_top1, identity/iq   (frozen, mean-pooled)

and the curves ``{"alignment/linear/1%": [[step, nme], ...], ...}``."""
import functools
from dataclasses import asdict, dataclass

from . import tasks
from .finetune import FitConfig, encode, encoder_of

__all__ = ["Protocol", "evaluate", "split_data"]

TASKS = ("alignment", "parsing", "identity")


@dataclass(frozen=True)
class Protocol:
    """What ``evaluate`` runs. Steps and learning rates are the heads' budgets (chosen on
    ``val``: benchmarks/README.md, "synthface-v2"); ``finetune_labels``: the label fractions
    that are also fine-tuned end to end (LP-FT, from the linear probe)."""
    split: str = "val"
    labels: tuple = (0.01,)
    tasks: tuple = ("alignment", "parsing")
    train_images: int = 2000
    eval_images: int = 500
    probe_steps: int = 1200        # linear probes of landmarks
    parsing_probe_steps: int = 2400   # linear probes of parsing (cheaper per step, slower to converge)
    probe_lr: float = 0.0          # 0: FitConfig's linear-probe default
    finetune_labels: tuple = ()
    finetune_steps: int = 600
    finetune_lr: float = 0.0
    curve_every: int = 100
    batch_size: int = 32
    seed: int = 0
    name: str = "synthface-v2"

    def __post_init__(self):
        object.__setattr__(self, "labels", tuple(float(x) for x in self.labels))
        object.__setattr__(self, "finetune_labels", tuple(float(x) for x in self.finetune_labels))
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if self.split not in ("val", "test"):
            raise ValueError(f"split must be 'val' (every choice) or 'test' (final tables), got {self.split!r}")
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            raise ValueError(f"tasks must be among {TASKS}, got {list(self.tasks)}")
        for x in self.labels + self.finetune_labels:
            tasks.label_budget(self.train_images, x)          # raises for a fraction outside (0, 1]
        if not set(self.finetune_labels) <= set(self.labels):
            raise ValueError("finetune_labels must be among labels (LP-FT starts from that budget's probe)")
        for name in ("train_images", "eval_images", "probe_steps", "parsing_probe_steps", "finetune_steps",
                     "curve_every", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, d):
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown protocol fields {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self):
        return asdict(self)


@functools.lru_cache(maxsize=4)
def _split(split, n, size, identities):
    return tasks.synthface_split(split, n, size, num_identities=identities)


def split_data(protocol, size=112):
    """(train, eval) SynthFace splits of the protocol at size x size (rendered once per
    process). Only the train faces that the largest label budget uses are rendered: budgets
    take the first faces, and with the whole split's identity count (a face is a function of
    its index and of that count) these are the same faces as in the whole split."""
    need = max(tasks.label_budget(protocol.train_images, x) for x in protocol.labels)
    ids = max(1, protocol.train_images // 10)
    return (_split("train", need, size, ids),
            _split(protocol.split, protocol.eval_images, size, max(1, protocol.eval_images // 10)))


def _pct(x):
    return f"{100 * x:g}%"


def _alignment_metrics(res, prefix):
    out = {}
    for subset, v in res["subsets"].items():
        if subset == "all":
            out.update({f"{prefix}/nme": v["nme"], f"{prefix}/auc": v["auc"], f"{prefix}/fr": v["fr"]})
        else:
            out[f"{prefix}/nme/{subset}"] = v["nme"]
    return out


def _head(protocol, task, mode, labels, evalset, eval_tokens):
    """(FitConfig, monitor) of one head: its validation curve on the eval split."""
    probe = protocol.parsing_probe_steps if task == "parsing" else protocol.probe_steps
    steps = probe if mode == "linear" else protocol.finetune_steps
    lr = protocol.probe_lr if mode == "linear" else protocol.finetune_lr
    cfg = FitConfig(task=task, head="heatmap" if task == "alignment" else "linear", mode=mode, steps=steps,
                    lr=lr, batch_size=protocol.batch_size, seed=protocol.seed)
    tok = eval_tokens if mode == "linear" else None
    if task == "alignment":
        def score(fitted):
            return {"nme": tasks.evaluate_alignment(fitted, evalset, tokens=tok)["subsets"]["all"]["nme"]}
    else:
        def score(fitted):
            return {"f1": tasks.evaluate_parsing(fitted, evalset, tokens=tok)["mean_f1"]}
    return cfg, (protocol.curve_every, score)


def _curve(history, name):
    return [[h["step"], h[name]] for h in history if name in h]


def evaluate(model, protocol=None):
    """Score a model (pre-trained or not) under the protocol -> {"metrics": {key: float},
    "curves": {key: [[step, value], ...]}, "protocol": dict}."""
    protocol = protocol or Protocol()
    enc = encoder_of(model)
    train, evalset = split_data(protocol, enc.config.img_size)
    tokens = (encode(enc, train["images"]), encode(enc, evalset["images"]))
    metrics, curves = {}, {}
    for labels in protocol.labels:
        k = tasks.label_budget(protocol.train_images, labels)      # the first k faces of the split
        tr, tr_tokens = tasks.take(train, k), (tokens[0][:k], tokens[1])
        for task in [t for t in protocol.tasks if t != "identity"]:
            run = tasks.run_alignment if task == "alignment" else tasks.run_parsing
            name = "nme" if task == "alignment" else "f1"
            probe = None
            for mode in ("linear", "finetune"):
                if mode == "finetune" and labels not in protocol.finetune_labels:
                    continue
                cfg, monitor = _head(protocol, task, mode, labels, evalset, tokens[1])
                res, fitted = run(model, tr, evalset, cfg, 1.0, tokens=tr_tokens, probe=probe, monitor=monitor)
                probe = fitted if mode == "linear" else probe
                prefix = f"{task}/{mode}/{_pct(labels)}"
                curves[prefix] = _curve(res["history"], name)
                if task == "alignment":
                    metrics.update(_alignment_metrics(res, prefix))
                else:
                    metrics[f"{prefix}/f1"] = res["mean_f1"]
    if "identity" in protocol.tasks:
        metrics.update(_identity_metrics(model, evalset, tokens[1]))
    return {"metrics": metrics, "curves": curves, "protocol": protocol.to_dict()}


def _identity_metrics(model, evalset, eval_tokens):
    rec = tasks.run_recognition(model, evalset, pools=("mean",), tokens=eval_tokens)["mean"]
    q = tasks.run_quality(model, evalset, pools=("mean",), tokens=eval_tokens)["mean"]
    v = rec["verification"]
    return {"identity/verification": v["mean"], "identity/tar@1e-2": v["tar_at_far"][0.01],
            "identity/knn_top1": rec["knn_top1"], "identity/iq": q["iq"]}
