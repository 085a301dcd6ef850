"""``seglab compare --fn``: the evidence from the user's own training code.

The user's function ``run(loss, seed, **opts)`` trains with the built loss module (:func:`seglab.get_loss`) and
seed ``seed`` in the user's pipeline (their network, augmentation, schedule) and returns a mapping from metric
name to a float, or to a per-class mapping ``{class: float}``. :func:`compare_fn` calls it for every loss x seed
(seed-major, so that early pairs are complete), keeps each finished call in a resumable results folder (a
finished ``(loss, seed)`` is never called again), and reads the per-seed values with the paired statistics of
``seglab compare`` (:mod:`seglab.compare.analysis`): one Holm family per metric (its value, or its mean over the
returned classes) and one per metric's per-class values.

A problem with the function (not importable, not callable, raises, returns something else than the mapping)
stops the comparison at once with :class:`FnError`: one line naming the problem and the ``(loss, seed)``; the
calls that finished stay in the results folder, and rerunning the command resumes after them.

Example::

    from seglab.compare.fn import compare_fn

    def run(loss, seed, steps=100):
        ...                                   # train with `loss`, seeded by `seed`
        return {"dice": {"liver": 0.93, "tumour": 0.61}, "hd95": 4.2}

    cmp = compare_fn(["dice + ce", "ce"], fn=run, mode="multiclass", seeds=5, out="results/cmp_fn")
    print(cmp.text())
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import math
import os
import random
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from collections.abc import Callable, Sequence

import torch

from seglab.losses import get_loss
from seglab.losses.registry import canonical_spec
from seglab.metrics.registry import metric_info
from seglab.models.registry import load_user_file
from seglab.results import ResultsStore, check_out_dir, run_provenance

from .analysis import (
    DEFAULT_MARGIN, Comparison, Difference, LossResult, assess, check_common, config_error, fmt_value, metric_base,
    nanmean, paired, write_outputs,
)

MODES = ("multiclass", "binary", "multilabel")
FN_SCHEMA = 1  # the summary.json of one --fn call
WAIT_POLL_S = 1.0  # how often compare --fn checks the runs another process holds


class FnError(ValueError):
    """A problem with the user's function: one line naming it (and the loss and seed where it happened)."""


def _say(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


# ---------------------------------------------------------------- loading the function


def resolve_callable(spec: str, flag: str = "--fn") -> Callable[..., Any]:
    """The callable named by ``"package.module:name"`` or ``"path/to/file.py:name"`` (``name`` may be dotted).

    Raises :class:`FnError` (one line, naming ``flag`` and ``spec``) for a missing module or file, an error while
    importing it, a missing attribute or an attribute that is not callable."""
    if not isinstance(spec, str) or ":" not in spec:
        raise FnError(f"{flag} {spec!r}: expected package.module:function or path/to/file.py:function")
    target, _, attr = spec.strip().rpartition(":")
    target, attr = target.strip(), attr.strip()
    if not target or not attr:
        raise FnError(f"{flag} {spec!r}: expected package.module:function or path/to/file.py:function")
    is_file = target.endswith(".py") or "/" in target or os.sep in target
    if is_file:
        module = load_user_file(target, f"{flag} {spec!r}", FnError)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as e:
            if e.name and (target == e.name or target.startswith(e.name + ".")):
                raise FnError(f"{flag} {spec!r}: no module named {e.name!r} (is it on sys.path? e.g. PYTHONPATH=.; "
                              "for a file use path/to/file.py:function)") from None
            raise FnError(f"{flag} {spec!r}: importing {target!r} failed: {_say(e)}") from None
        except Exception as e:
            raise FnError(f"{flag} {spec!r}: importing {target!r} failed: {_say(e)}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise FnError(f"{flag} {spec!r}: {os.path.basename(target) if is_file else target} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise FnError(f"{flag} {spec!r}: {attr!r} is not callable (a {type(obj).__name__} value)")
    return obj


def fn_identity(spec: str) -> str:
    """The function's spec as the run ids hash it (a file path normalised, so ``./a.py:run`` == ``a.py:run``)."""
    target, _, attr = spec.strip().rpartition(":")
    if target.endswith(".py") or "/" in target or os.sep in target:
        target = os.path.normpath(target)
    return f"{target}:{attr}"


# ---------------------------------------------------------------- mode and metrics
def implied_mode(specs: Sequence[str]) -> str | None:
    """The one mode (multiclass, binary, multilabel) that builds every loss in ``specs``, else None."""
    ok = []
    for m in MODES:
        try:
            for s in specs:
                get_loss(s, m)
        except (ValueError, TypeError):
            continue
        ok.append(m)
    return ok[0] if len(ok) == 1 else None


#: names ``seglab evaluate`` gives metrics, and the registered metric each is (for its direction)
METRIC_ALIASES = {"hd": "hausdorff", "hd95": "hausdorff", "assd": "surface_distance", "asd": "surface_distance",
                  "masd": "surface_distance", "nsd": "surface_dice"}


def higher_is_better(name: str, lower: Sequence[str] = ()) -> bool:
    """Whether a larger value of metric ``name`` is better: False when named in ``lower``; else what seglab's metric
    registry says for a registered metric or a name ``seglab evaluate`` uses (``hd95``, ``assd``: False); False for
    a name ending in ``loss``; else True."""
    if name in lower:
        return False
    key = name.strip().lower()
    for cand in (key, METRIC_ALIASES.get(key)):
        if cand is None:
            continue
        try:
            return bool(metric_info(cand).higher_is_better)
        except ValueError:
            continue
    return not key.endswith("loss")


def _number(v: Any) -> float | None:
    """``v`` as a float when it is a real number (int, float, NumPy scalar, one-element tensor/array), else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if hasattr(v, "item") and (hasattr(v, "numel") or hasattr(v, "size")):  # NumPy scalar/array, torch tensor
        try:
            numel = int(v.numel()) if hasattr(v, "numel") else int(v.size)
            x = v.item() if numel == 1 else None
        except Exception:
            return None
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            return None
        return float(x)
    return None


def check_result(res: Any, where: str) -> dict[str, Any]:
    """The function's return value as ``{metric: float | {class: float}}``; :class:`FnError` naming ``where``
    (the function, loss and seed) when it is not such a mapping."""
    if not isinstance(res, Mapping):
        raise FnError(f"{where}: returned a {type(res).__name__}, expected a mapping metric -> float or "
                      "metric -> {class: float}")
    if not res:
        raise FnError(f"{where}: returned an empty mapping; expected at least the metric to compare")
    out: dict[str, Any] = {}
    for k, v in res.items():
        if not isinstance(k, str) or not k or "[" in k or "]" in k:
            raise FnError(f"{where}: metric name {k!r} is not a non-empty string without brackets")
        if isinstance(v, Mapping):
            if not v:
                raise FnError(f"{where}: metric {k!r} is an empty per-class mapping")
            per: dict[str, float] = {}
            for c, x in v.items():
                n = _number(x)
                if n is None:
                    raise FnError(f"{where}: metric {k!r} class {c!r} is a {type(x).__name__}, expected a float")
                per[str(c)] = n
            out[k] = per
        else:
            n = _number(v)
            if n is None:
                raise FnError(f"{where}: metric {k!r} is a {type(v).__name__}, expected a float or a mapping "
                              "class -> float")
            out[k] = n
    return out


def run_id(fn: str, fn_kw: dict[str, Any], spec: str, mode: str, seed: int) -> str:
    """The results-folder id of one call: a hash of everything that defines it."""
    key = json.dumps({"kind": "fn", "fn": fn, "fn_kw": fn_kw, "loss": spec, "mode": mode, "seed": seed},
                     sort_keys=True, default=str)
    return "fn-" + hashlib.sha1(key.encode()).hexdigest()[:16]


def _seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators with ``seed`` before each call (a convenience: the
    function still gets ``seed`` and should seed what else it uses, e.g. its data loader's workers)."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass
    torch.manual_seed(seed)


# ---------------------------------------------------------------- the comparison
def compare_fn(losses: Sequence[str], *, fn: str | Callable[..., Any], out: str | Path, mode: str | None = None,
               fn_kw: dict[str, Any] | None = None, seeds: int | Sequence[int] = 5, metric: str = "dice",
               lower_is_better: Sequence[str] = (), margin: float = DEFAULT_MARGIN,
               margins: dict[str, float | None] | None = None, confidence: float = 0.95,
               labels: dict[str, str] | None = None, show_progress: bool = False,
               fn_name: str | None = None, log: Callable[[str], None] | None = None) -> Comparison:
    """Call ``fn(loss, seed, **fn_kw)`` for every loss x seed and compare each loss with the first (the baseline).

    ``fn``: a callable, or ``"package.module:function"`` / ``"path/to/file.py:function"``. ``mode``: the mode the
    losses are built for (``seglab.get_loss(spec, mode)``); None: the one mode every spec implies. ``metric``:
    the primary endpoint (ranks the losses; it must be among the returned metrics); every returned metric is
    compared. ``lower_is_better``: metrics where smaller is better (registered metrics such as ``hd95`` are known).
    ``margin``: the equivalence margin of higher-is-better metrics, in the metric's units; ``margins``: per
    metric, a margin or None (no equivalence test; the default of lower-is-better metrics). ``fn_name``: the
    identity of a callable ``fn`` in the run ids (default its module and name). Returns a
    :class:`~seglab.compare.analysis.Comparison` and writes ``out/compare.json``. Raises :class:`FnError` for a
    problem with the function, ValueError for bad input (before any call).
    """
    specs = [str(x).strip() for x in losses]
    seed_list = check_common(specs, seeds, confidence, margin)
    mode, canon = _checked_losses(specs, mode, metric)
    fn_kw = dict(fn_kw or {})
    ident, call = _resolve_fn(fn, fn_name)
    try:
        json.dumps(fn_kw)
    except (TypeError, ValueError):
        raise config_error(f"--fn-opt: the options must be JSON values, got {fn_kw!r}") from None
    labels = labels or {}
    out = Path(out)
    check_out_dir(out, "--out")
    store = ResultsStore(out)
    store.clean_tmp()
    plan: list[tuple[str, str, int]] = [(c, g, s) for s in seed_list for c, g in zip(canon, specs, strict=True)]
    rows: list[dict[str, Any]] = []
    for c, g, s in plan:
        cfg = {"kind": "fn", "fn": ident, "fn_kw": fn_kw, "loss": c, "mode": mode, "seed": s}
        rows.append({"run_id": run_id(ident, fn_kw, c, mode, s), "label": f"{labels.get(g, g)} seed {s}", **cfg})
    store.write_config({"kind": "fn", "fn": ident, "fn_kw": fn_kw, "losses": canon, "seeds": seed_list, "mode": mode},
                       rows)
    calls = _Calls(store=store, call=call, fn_kw=fn_kw, mode=mode, metric=metric, labels=labels, ident=ident,
                   total=len(plan), show_progress=show_progress,
                   say=log or (lambda line: print(line, file=sys.stderr, flush=True)))
    calls.run_all(plan, rows, out)
    cmp = _assemble(specs, canon, seed_list, calls.values, [], ident=ident, fn_kw=fn_kw, mode=mode, metric=metric,
                    lower=lower_is_better, margin=margin, margins=margins, confidence=confidence, labels=labels,
                    out=str(out))
    write_outputs(cmp, out)
    return cmp


def _checked_losses(specs: list[str], mode: str | None, metric: str) -> tuple[str, list[str]]:
    """``(mode, canonical specs)``: the mode given or implied by the specs, every spec built for it, no two the same
    loss; the ``--metric`` checked to be a name."""
    if not isinstance(metric, str) or not metric or "[" in metric:
        raise config_error(f"--metric must be a metric name, got {metric!r}")
    if mode is None:
        mode = implied_mode(specs)
        if mode is None:
            raise config_error("--mode: give multiclass, binary or multilabel (the losses "
                                f"{', '.join(specs)} do not imply one mode)")
    if mode not in MODES:
        raise config_error(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    try:
        canon = [canonical_spec(given, mode) for given in specs]
    except (ValueError, TypeError) as e:
        raise config_error(f"--losses: {str(e).splitlines()[0]}") from None
    if len(set(canon)) != len(canon):
        raise config_error(f"--losses: two of the given losses are the same loss: {specs}")
    return mode, canon


def _resolve_fn(fn: str | Callable[..., Any], fn_name: str | None) -> tuple[str, Callable[..., Any]]:
    """``(identity in the run ids, the callable)`` of ``fn``: a callable, or a spec resolved by :func:`resolve_callable`."""
    if isinstance(fn, str):
        return fn_identity(fn), resolve_callable(fn)
    return fn_name or f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}", fn


@dataclass
class _Calls:
    """The calls of one :func:`compare_fn`, each run once (or reused from the results folder); ``values`` holds what
    each ``(canonical spec, seed)`` returned."""

    store: ResultsStore
    call: Callable[..., Any]
    fn_kw: dict[str, Any]
    mode: str
    metric: str
    labels: dict[str, str]
    ident: str
    total: int
    show_progress: bool
    say: Callable[[str], None]
    values: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)

    def run_all(self, plan: list[tuple[str, str, int]], rows: list[dict[str, Any]], out: Path) -> None:
        """Every call of ``plan`` in order; those another live process holds are waited for (never counted failed)."""
        deferred: list[tuple[int, tuple[str, str, int], dict[str, Any]]] = []
        for i, ((c, g, s), row) in enumerate(zip(plan, rows, strict=True), 1):
            if not self.one(i, c, g, s, row):
                deferred.append((i, (c, g, s), row))
        if deferred:  # concurrent compares on one folder
            owners = sorted({str(self.store.claim_owner(str(row["run_id"])) or "?") for _, _, row in deferred})
            self.say(f"seglab compare: waiting for {len(deferred)} run(s) that another process (pid {', '.join(owners)}) "
                     f"is running in {out}: " + ", ".join(f"{g} seed {s}" for _, (_, g, s), _ in deferred))
        while deferred:
            time.sleep(WAIT_POLL_S)
            deferred = [(i, k, row) for i, k, row in deferred if not self.one(i, *k, row)]

    def one(self, i: int, c: str, g: str, s: int, row: dict[str, Any]) -> bool:
        """Run (or reuse) one loss x seed; False when another live process holds its claim."""
        rid = str(row["run_id"])
        label = self.labels.get(g, g)
        if self.store.is_done(rid):
            self.values[(c, s)] = self.store.summary(rid)["metrics"]
            if self.show_progress:
                self.say(f"[{i}/{self.total}] {label} seed {s}: done before ({_brief(self.values[(c, s)], self.metric)})")
            return True
        claim = self.store.claim(rid)
        if claim is None:
            return False
        try:
            if self.store.is_done(rid):  # written by the process whose claim we waited for
                self.values[(c, s)] = self.store.summary(rid)["metrics"]
                return True
            got, wall = self._call(c, s, row, where=f"--fn {self.ident}: loss {g!r} seed {s}")
            self.values[(c, s)] = got
            if self.show_progress:
                self.say(f"[{i}/{self.total}] {label} seed {s}: {_brief(got, self.metric)} ({wall:.1f} s)")
            return True
        finally:
            claim.release()

    def _call(self, c: str, s: int, row: dict[str, Any], where: str) -> tuple[dict[str, Any], float]:
        """Call the function with the loss ``c`` built for the mode and seed ``s``, check what it returned and write
        the run; ``(metrics, wall seconds)``."""
        loss = get_loss(c, self.mode)
        _seed_everything(s)
        t0 = time.time()
        try:
            res = self.call(loss, s, **self.fn_kw)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # the user's code: one line naming the call
            raise FnError(f"{where}: raised {_say(e)}") from None
        wall = time.time() - t0
        got = check_result(res, where)
        if self.metric not in got:
            raise FnError(f"{where}: returned no {self.metric!r} (the --metric); it returned {', '.join(got)}")
        summary = {"run_id": row["run_id"], "status": "finished", "kind": "fn", "schema": FN_SCHEMA,
                   "label": row["label"], "config": {k: v for k, v in row.items() if k not in ("run_id", "label")},
                   "metrics": got, "wall_s": wall, "torch_threads": torch.get_num_threads(),
                   "provenance": run_provenance(seed=s, wall_s=wall)}
        self.store.write_run(SimpleNamespace(summary=summary, steps={"step": []}, evals=[]))
        return got, wall


def _brief(vals: dict[str, Any], metric: str) -> str:
    v = vals.get(metric)
    if isinstance(v, dict):
        return f"{metric} " + ", ".join(f"{k} {fmt_value(x)}" for k, x in v.items())
    return f"{metric} {fmt_value(v) if isinstance(v, (int, float)) else v}"


def _assemble(specs: list[str], canon: list[str], seeds: list[int], values: dict[tuple[str, int], dict[str, Any]],
              failed: list[str], *, ident: str, fn_kw: dict[str, Any], mode: str, metric: str, lower: Sequence[str],
              margin: float, margins: dict[str, float | None] | None, confidence: float, labels: dict[str, str],
              out: str) -> Comparison:
    # the metrics, in the order first returned, the primary first; per-class or scalar, never both
    if values and not any(metric in got for got in values.values()):  # e.g. resumed calls and another --metric
        returned = list(dict.fromkeys(k for got in values.values() for k in got))
        raise FnError(f"--metric {metric!r}: not among the metrics the function returned ({', '.join(returned)})")
    kinds: dict[str, list[str] | None] = {metric: None}
    for got in values.values():
        for k, v in got.items():
            classes = kinds.get(k)
            if isinstance(v, dict):
                if k in kinds and classes is None and any(isinstance(values[q].get(k), (int, float)) for q in values):
                    raise FnError(f"--fn {ident}: metric {k!r} is a float for some calls and per class for others")
                cl = list(classes or [])
                cl += [x for x in v if x not in cl]
                kinds[k] = cl
            elif classes is not None:
                raise FnError(f"--fn {ident}: metric {k!r} is a float for some calls and per class for others")
            else:
                kinds.setdefault(k, None)
    hib = {k: higher_is_better(k, lower) for k in kinds}
    mg: dict[str, float | None] = {k: (None if not hib[k] else margin) for k in kinds}
    mg.update(margins or {})
    results = []
    for c, g in zip(canon, specs, strict=True):
        per: dict[str, list[float]] = {}
        for k, classes in kinds.items():
            if classes is None:
                per[k] = [_value(values.get((c, s), {}).get(k)) for s in seeds]
                continue
            rows = [values.get((c, s), {}).get(k) for s in seeds]
            per[k] = [nanmean([_value(r.get(x)) for x in classes]) if isinstance(r, dict) else math.nan for r in rows]
            for x in classes:
                per[f"{k}[{x}]"] = [_value(r.get(x)) if isinstance(r, dict) else math.nan for r in rows]
        results.append(LossResult(spec=c, label=labels.get(g, g), seeds=list(seeds), mean_dice=[], fg_dice=[],
                                  class_dice=[], metrics=per, primary=metric, higher_is_better=hib[metric]))
    for i, r in enumerate(sorted(results, key=lambda r: r.rank_key), 1):
        r.rank = i
    base = results[0]
    diffs: list[Difference] = []
    for r in results[1:]:
        for key in r.metrics:
            d = paired(r.label, base.label, key, r.metrics[key], base.metrics[key], confidence)
            d.higher_is_better = hib[metric_base(key)]
            diffs.append(d)
    assess(diffs, margin, mg)
    metrics_info = {k: {"higher_is_better": hib[k], "per_class": kinds[k] is not None, "classes": kinds[k] or [],
                        "margin": mg.get(k)} for k in kinds}
    setup = {"kind": "fn", "fn": ident, "fn_kw": fn_kw, "mode": mode, "seeds": list(seeds), "losses": canon,
             "baseline": base.spec, "primary": metric, "metrics": metrics_info,
             "metric": f"what the function returned per (loss, seed); primary: {metric}"
                       + (" (mean over the returned classes)" if kinds[metric] is not None else ""),
             "ranked_by": f"mean {metric} over seeds" + (" and returned classes" if kinds[metric] else "")
                          + ("" if hib[metric] else " (lower is better)")}
    return Comparison(setup=setup, class_names=list(kinds[metric] or []), foreground=[], results=results,
                      differences=diffs, failed=failed, confidence=confidence, out=out, margin=float(margin))


def _value(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
