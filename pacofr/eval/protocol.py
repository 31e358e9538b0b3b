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

import numpy as np

from . import metrics, tasks
from .finetune import FitConfig, encode, encoder_of

__all__ = ["Protocol", "PRESETS", "evaluate", "split_data"]

TASKS = ("alignment", "parsing", "identity", "recognition", "quality")    # identity: recognition and quality


@dataclass(frozen=True)
class Protocol:
    """What ``evaluate`` runs. Steps and learning rates are the heads' budgets (chosen on
    ``val``: docs/results.md, "synthface-v2"); ``finetune_labels``: the label fractions
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
    head: str = "heatmap"          # the landmark head: "heatmap" | "regression"
    parsing_head: str = "linear"   # "linear" | "upsample"
    layer_decay: float = 0.75
    normalizer: str = "inter_ocular"
    pools: tuple = ("mean",)       # the embeddings identity metrics are scored on; flat keys: "mean"
    identity_probe: bool = False   # also a linear identity classifier on the train split (80/20)

    def __post_init__(self):
        for name in ("labels", "finetune_labels"):
            object.__setattr__(self, name, tuple(float(x) for x in getattr(self, name)))
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "pools", tuple(self.pools))
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
                     "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.curve_every < 0:
            raise ValueError(f"curve_every must be >= 0 (0: no validation curves), got {self.curve_every}")
        if not self.pools or set(self.pools) - {"cls", "mean"}:
            raise ValueError(f"pools must be among ('cls', 'mean'), got {list(self.pools)}")
        FitConfig(task="alignment", head=self.head)                 # a clear error for an unknown head
        FitConfig(task="parsing", head=self.parsing_head)

    @classmethod
    def from_dict(cls, d):
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown protocol fields {unknown}; known: {sorted(known)}")
        return cls(**d)

    @classmethod
    def preset(cls, name, **changes):
        """A protocol of ``PRESETS`` by name, with some fields changed."""
        if name not in PRESETS:
            raise ValueError(f"unknown protocol preset {name!r}; presets: {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **changes, "name": name})

    def to_dict(self):
        return asdict(self)

    def scored(self, task):
        """Whether the protocol scores a task of ``metrics.TASKS`` ("identity" covers two)."""
        return task in self.tasks or (task in ("recognition", "quality") and "identity" in self.tasks)


PRESETS = {
    # every choice on val: the sweeps' protocol (the field defaults)
    "synthface-v2": {},
    # what ``pacofr eval`` runs: one budget, test split, both poolings, no validation curves
    "synthface-v1": dict(split="test", labels=(1.0,), tasks=("alignment", "parsing", "recognition", "quality"),
                         probe_steps=300, parsing_probe_steps=300, finetune_steps=300, curve_every=0,
                         pools=("cls", "mean"), identity_probe=True),
}


@functools.lru_cache(maxsize=4)
def _split(split, n, size, identities):
    return tasks.synthface_split(split, n, size, num_identities=identities)


def split_data(protocol, size=112):
    """(train, eval) SynthFace splits of the protocol at size x size (rendered once per
    process). Only the train faces that the largest label budget uses are rendered (all of
    them for the identity probe): budgets take the first faces, and with the whole split's
    identity count (a face is a function of its index and of that count) these are the same
    faces as in the whole split."""
    need = max(tasks.label_budget(protocol.train_images, x) for x in protocol.labels)
    if protocol.identity_probe and protocol.scored("recognition"):
        need = protocol.train_images
    ids = max(1, protocol.train_images // 10)
    return (_split("train", need, size, ids),
            _split(protocol.split, protocol.eval_images, size, max(1, protocol.eval_images // 10)))


def _pct(x):
    return f"{100 * x:g}%"


def _task_input(task, res):
    """What a task's registered metrics compute from (pacofr/eval/metrics.py)."""
    return res["per_image_nme"] if task == "alignment" else res


def score_subsets(res, subsets=None):
    """Every registered alignment metric on each row of an alignment result's ``subsets`` (in
    place: the whole split under "all", each subset on its faces; NaN for a subset without)."""
    nmes = np.asarray(res["per_image_nme"], np.float64)
    masks = {"all": np.ones(nmes.size, bool), **{k: np.asarray(v, bool) for k, v in (subsets or {}).items()}}
    for name, row in res["subsets"].items():
        for m in metrics.of_task("alignment"):
            row[m.name] = m.compute(nmes[masks[name]]) if masks[name].any() else float("nan")
    return res


def head_metrics(task, res, prefix):
    """The flat keys of one head's result: each registered metric of the task (alignment: on
    the whole split, then those scored per subset on each subset, from ``score_subsets``)."""
    if task != "alignment":
        return {f"{prefix}/{m.name}": m.compute(res) for m in metrics.of_task(task)}
    rows = res["subsets"]
    out = {f"{prefix}/{m.name}": rows["all"][m.name] for m in metrics.of_task(task)}
    out.update({f"{prefix}/{m.name}/{subset}": row[m.name] for subset, row in rows.items() if subset != "all"
                for m in metrics.of_task(task) if m.by_subset})
    return out


def identity_metrics(recognition=None, quality=None):
    """identity/<metric> of each registered recognition and quality metric, from one pooling's results."""
    out = {}
    for task, res in (("recognition", recognition), ("quality", quality)):
        if res is not None:
            out.update({f"identity/{m.name}": m.compute(res) for m in metrics.of_task(task)})
    return out


def _head(protocol, task, mode, evalset, eval_tokens):
    """(FitConfig, monitor or None, curve metric name) of one head; the monitor draws its
    validation curve on the eval split with the task's first headline metric."""
    probe = protocol.parsing_probe_steps if task == "parsing" else protocol.probe_steps
    steps = probe if mode == "linear" else protocol.finetune_steps
    lr = protocol.probe_lr if mode == "linear" else protocol.finetune_lr
    cfg = FitConfig(task=task, head=protocol.head if task == "alignment" else protocol.parsing_head, mode=mode,
                    steps=steps, lr=lr, batch_size=protocol.batch_size, seed=protocol.seed,
                    layer_decay=protocol.layer_decay)
    curve = metrics.of_task(task, headline=True)[:1]
    if not protocol.curve_every or not curve:
        return cfg, None, None
    tok = eval_tokens if mode == "linear" else None
    scorer = functools.partial(tasks.evaluate_alignment, normalizer=protocol.normalizer) \
        if task == "alignment" else tasks.evaluate_parsing

    def score(fitted):
        return {curve[0].name: curve[0].compute(_task_input(task, scorer(fitted, evalset, tokens=tok)))}
    return cfg, (protocol.curve_every, score), curve[0].name


def _curve(history, name):
    return [[h["step"], h[name]] for h in history if name in h]


def _run_heads(model, protocol, data, progress, out):
    """Every head of the protocol: per label budget, task and mode, fit on the budget's first
    faces and score; fills ``out``'s metrics, curves, results and fitted heads (by key prefix).
    data: {task: (train, eval, (train tokens, eval tokens) or None, train size budgets count from)}."""
    for labels in protocol.labels:
        for task in [t for t in ("alignment", "parsing") if t in protocol.tasks]:
            train, evalset, tokens, n = data[task]
            k = tasks.label_budget(n, labels)                  # the first k faces of the split
            tr, tr_tokens = tasks.take(train, k), None if tokens is None else (tokens[0][:k], tokens[1])
            run = tasks.run_alignment if task == "alignment" else tasks.run_parsing
            kw = {"normalizer": protocol.normalizer} if task == "alignment" else {}
            probe = None
            for mode in ("linear", "finetune"):
                if mode == "finetune" and labels not in protocol.finetune_labels:
                    continue
                cfg, monitor, curve = _head(protocol, task, mode, evalset, None if tokens is None else tokens[1])
                res, fitted = run(model, tr, evalset, cfg, 1.0, tokens=tr_tokens, probe=probe, monitor=monitor,
                                  progress=progress, **kw)
                res["labels"] = labels
                if task == "alignment":
                    score_subsets(res, evalset.get("subsets"))
                probe = fitted if mode == "linear" else probe
                prefix = f"{task}/{mode}/{_pct(labels)}"
                if curve:
                    out["curves"][prefix] = _curve(res["history"], curve)
                out["metrics"].update(head_metrics(task, res, prefix))
                out["results"][prefix], out["fitted"][prefix] = res, fitted


def _run_identity(model, protocol, train, evalset, eval_tokens, progress, out):
    """Recognition and quality of the frozen embeddings on the eval split, per pooling."""
    pools, flat = protocol.pools, "mean" if "mean" in protocol.pools else protocol.pools[0]
    rec = q = None
    if protocol.scored("recognition"):
        cfg = FitConfig(task="identity", head="cls", steps=protocol.probe_steps, lr=protocol.probe_lr,
                        batch_size=protocol.batch_size, seed=protocol.seed, layer_decay=protocol.layer_decay)
        rec = tasks.run_recognition(model, evalset, train if protocol.identity_probe else None, pools=pools,
                                    cfg=cfg, progress=progress, tokens=eval_tokens)
        out["results"]["recognition"] = rec
    if protocol.scored("quality"):
        q = tasks.run_quality(model, evalset, pools=pools, tokens=eval_tokens)
        out["results"]["quality"] = q
    out["metrics"].update(identity_metrics(rec and rec[flat], q and q[flat]))


def evaluate(model, protocol=None, data=None, progress=False, details=False):
    """Score a model (pre-trained or not) under the protocol -> {"metrics": {key: float},
    "curves": {key: [[step, value], ...]}, "protocol": dict}; with ``details`` also "results"
    (each head's and identity task's full result, by key prefix), "fitted" (the heads) and
    "data" (the SynthFace "train" and "eval" splits, and each head task's (train, eval)).
    data: {"alignment": (train, eval)}: landmark data sets that replace SynthFace for a head
    task (``tasks.landmark_data``; no shared tokens). progress: the heads' progress bars."""
    protocol = protocol or Protocol()
    if set(data or {}) - {"alignment", "parsing"}:
        raise ValueError(f"data replaces the splits of 'alignment' or 'parsing', got {sorted(data)}")
    enc = encoder_of(model)
    train, evalset = split_data(protocol, enc.config.img_size)
    eval_tokens = encode(enc, evalset["images"])
    shared = (train, evalset, None, protocol.train_images)
    if {"alignment", "parsing"} & set(protocol.tasks):
        need = max(tasks.label_budget(protocol.train_images, x) for x in protocol.labels)
        shared = (train, evalset, (encode(enc, train["images"][:need]), eval_tokens), protocol.train_images)
    splits = {task: shared for task in ("alignment", "parsing")}
    for task, (tr, ev) in (data or {}).items():
        splits[task] = (tr, ev, None, len(tr["images"]))
    out = {"metrics": {}, "curves": {}, "results": {}, "fitted": {}}
    _run_heads(model, protocol, splits, progress, out)
    if protocol.scored("recognition") or protocol.scored("quality"):
        _run_identity(model, protocol, train, evalset, eval_tokens, progress, out)
    res = {"metrics": out["metrics"], "curves": out["curves"], "protocol": protocol.to_dict()}
    if details:
        res.update(results=out["results"], fitted=out["fitted"],
                   data={"train": train, "eval": evalset, **{t: v[:2] for t, v in splits.items()}})
    return res
