"""``seglab compare --fn``: the evidence from the user's own training code.

The user's function ``run(loss, seed, **opts)`` trains with the built loss module (:func:`seglab.get_loss`) and
seed ``seed`` in the user's pipeline (their network, augmentation, schedule) and returns a mapping from metric
name to a float, or to a per-class mapping ``{class: float}``. :func:`compare_fn` calls it for every loss x seed
(seed-major, so that early pairs are complete), keeps each finished call in a resumable results folder (a
finished ``(loss, seed)`` is never called again), and reads the per-seed values with the paired statistics of
``seglab compare`` (:mod:`seglab.compare.core`): one Holm family per metric (its value, or its mean over the
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
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from collections.abc import Callable, Sequence

from seglab.models.registry import load_user_file

from .core import DEFAULT_MARGIN, Comparison, Difference, LossResult, _f, _nanmean, _nansd, _p, _paired, \
    assess, metric_base

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
    from seglab.losses import get_loss

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
    from seglab.metrics.registry import metric_info

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
    import torch

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
    :class:`~seglab.compare.core.Comparison` and writes ``out/compare.json``. Raises :class:`FnError` for a
    problem with the function, ValueError for bad input (before any call).
    """
    import torch

    from seglab.losses import get_loss
    from seglab.losses.registry import canonical_spec
    from seglab.results import ResultsStore, check_out_dir, run_provenance
    from seglab.train.config import ConfigError

    from .core import _check_common, write_outputs

    specs = [str(x).strip() for x in losses]
    seed_list = _check_common(specs, seeds, confidence, margin)
    if not isinstance(metric, str) or not metric or "[" in metric:
        raise ConfigError(f"--metric must be a metric name, got {metric!r}")
    if mode is None:
        mode = implied_mode(specs)
        if mode is None:
            raise ConfigError("--mode: give multiclass, binary or multilabel (the losses "
                              f"{', '.join(specs)} do not imply one mode)")
    if mode not in MODES:
        raise ConfigError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    canon: list[str] = []
    for given in specs:
        try:
            canon.append(canonical_spec(given, mode))
        except (ValueError, TypeError) as e:
            raise ConfigError(f"--losses: {str(e).splitlines()[0]}") from None
    if len(set(canon)) != len(canon):
        raise ConfigError(f"--losses: two of the given losses are the same loss: {specs}")
    fn_kw = dict(fn_kw or {})
    if isinstance(fn, str):
        ident = fn_identity(fn)
        call = resolve_callable(fn)
    else:
        call = fn
        ident = fn_name or f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"
    try:
        json.dumps(fn_kw)
    except (TypeError, ValueError):
        raise ConfigError(f"--fn-opt: the options must be JSON values, got {fn_kw!r}") from None
    labels = labels or {}
    out = Path(out)
    check_out_dir(out, "--out")
    store = ResultsStore(out)
    store.clean_tmp()
    plan: list[tuple[str, str, int]] = [(c, g, s) for s in seed_list for c, g in zip(canon, specs)]
    rows: list[dict[str, Any]] = []
    for c, g, s in plan:
        cfg = {"kind": "fn", "fn": ident, "fn_kw": fn_kw, "loss": c, "mode": mode, "seed": s}
        rows.append({"run_id": run_id(ident, fn_kw, c, mode, s), "label": f"{labels.get(g, g)} seed {s}", **cfg})
    store.write_config({"kind": "fn", "fn": ident, "fn_kw": fn_kw, "losses": canon, "seeds": seed_list, "mode": mode},
                       rows)
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    values: dict[tuple[str, int], dict[str, Any]] = {}
    failed: list[str] = []
    deferred: list[tuple[int, tuple[str, str, int], dict[str, Any]]] = []  # runs another live process holds

    def one(i: int, c: str, g: str, s: int, row: dict[str, Any]) -> bool:
        """Run (or reuse) one loss x seed; False when another live process holds its claim."""
        rid = str(row["run_id"])
        label = labels.get(g, g)
        where = f"--fn {ident}: loss {g!r} seed {s}"
        if store.is_done(rid):
            values[(c, s)] = store.summary(rid)["metrics"]
            if show_progress:
                say(f"[{i}/{len(plan)}] {label} seed {s}: done before ({_brief(values[(c, s)], metric)})")
            return True
        claim = store.claim(rid)
        if claim is None:
            return False
        try:
            if store.is_done(rid):  # written by the process whose claim we waited for
                values[(c, s)] = store.summary(rid)["metrics"]
                return True
            loss = get_loss(c, mode)
            _seed_everything(s)
            t0 = time.time()
            try:
                res = call(loss, s, **fn_kw)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # the user's code: one line naming the call
                raise FnError(f"{where}: raised {_say(e)}") from None
            wall = time.time() - t0
            got = check_result(res, where)
            if metric not in got:
                raise FnError(f"{where}: returned no {metric!r} (the --metric); it returned {', '.join(got)}")
            summary = {"run_id": rid, "status": "finished", "kind": "fn", "schema": FN_SCHEMA, "label": row["label"],
                       "config": {k: v for k, v in row.items() if k not in ("run_id", "label")}, "metrics": got,
                       "wall_s": wall, "torch_threads": torch.get_num_threads(),
                       "provenance": run_provenance(seed=s, wall_s=wall)}
            store.write_run(SimpleNamespace(summary=summary, steps={"step": []}, evals=[]))
            values[(c, s)] = got
            if show_progress:
                say(f"[{i}/{len(plan)}] {label} seed {s}: {_brief(got, metric)} ({wall:.1f} s)")
            return True
        finally:
            claim.release()

    for i, ((c, g, s), row) in enumerate(zip(plan, rows), 1):
        if not one(i, c, g, s, row):
            deferred.append((i, (c, g, s), row))
    if deferred:  # concurrent compares on one folder: wait for (never count as failed) the runs others hold
        owners = sorted({str(store.claim_owner(str(row["run_id"])) or "?") for _, _, row in deferred})
        say(f"seglab compare: waiting for {len(deferred)} run(s) that another process (pid {', '.join(owners)}) is "
            f"running in {out}: " + ", ".join(f"{g} seed {s}" for _, (_, g, s), _ in deferred))
    while deferred:
        time.sleep(WAIT_POLL_S)
        deferred = [(i, k, row) for i, k, row in deferred if not one(i, *k, row)]
    cmp = _assemble(specs, canon, seed_list, values, failed, ident=ident, fn_kw=fn_kw, mode=mode, metric=metric,
                    lower=lower_is_better, margin=margin, margins=margins, confidence=confidence, labels=labels,
                    out=str(out))
    write_outputs(cmp, out)
    return cmp


def _brief(vals: dict[str, Any], metric: str) -> str:
    v = vals.get(metric)
    if isinstance(v, dict):
        return f"{metric} " + ", ".join(f"{k} {_f(x)}" for k, x in v.items())
    return f"{metric} {_f(v) if isinstance(v, (int, float)) else v}"


def _assemble(specs: list[str], canon: list[str], seeds: list[int], values: dict[tuple[str, int], dict[str, Any]],
              failed: list[str], *, ident: str, fn_kw: dict[str, Any], mode: str, metric: str, lower: Sequence[str],
              margin: float, margins: dict[str, float | None] | None, confidence: float, labels: dict[str, str],
              out: str) -> Comparison:
    # the metrics, in the order first returned, the primary first; per-class or scalar, never both
    if values and not any(metric in got for got in values.values()):  # e.g. resumed calls and another --metric
        returned = list(dict.fromkeys(k for got in values.values() for k in got))
        raise FnError(f"--metric {metric!r}: not among the metrics the function returned ({', '.join(returned)})")
    kinds: dict[str, list[str] | None] = {metric: None}
    for (c, s), got in values.items():
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
    for c, g in zip(canon, specs):
        per: dict[str, list[float]] = {}
        for k, classes in kinds.items():
            if classes is None:
                per[k] = [_value(values.get((c, s), {}).get(k)) for s in seeds]
                continue
            rows = [values.get((c, s), {}).get(k) for s in seeds]
            per[k] = [_nanmean([_value(r.get(x)) for x in classes]) if isinstance(r, dict) else math.nan for r in rows]
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
            d = _paired(r.label, base.label, key, r.metrics[key], base.metrics[key], confidence)
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


# ---------------------------------------------------------------- text and HTML
def _columns(d_losses: list[dict[str, Any]], primary: str) -> list[str]:
    keys = list(d_losses[0]["metrics"]) if d_losses else []
    return [primary] + [k for k in keys if k != primary]


def fn_text(cmp: Comparison) -> str:
    """Plain-text ranking (every metric's mean over seeds) and the paired differences of a ``--fn`` comparison."""
    from .core import ranking_and_verdict_lines

    s = cmp.setup
    kw = "".join(f" {k}={v}" for k, v in sorted(s["fn_kw"].items()))
    lines = [f"seglab compare --fn: {len(cmp.results)} losses x {len(s['seeds'])} paired seeds, function {s['fn']}{kw}, "
             f"mode {s['mode']}", f"baseline: {s['baseline']}; ranked by {s['ranked_by']}", ""]
    ranked = sorted(cmp.results, key=lambda r: r.rank)
    cols = _columns([{"metrics": r.metrics} for r in ranked], s["primary"])
    head = ["rank", "loss", f"{cols[0]} (mean ± sd)"] + cols[1:]
    rows = []
    for r in ranked:
        cells = [str(r.rank), r.label, f"{_f(r.mean)} ± {_f(_nansd(r.metrics[cols[0]]))}"]
        cells += [_f(_nanmean(r.metrics[k])) for k in cols[1:]]
        rows.append(cells)
    lines += ranking_and_verdict_lines(cmp, head, rows, f"±{cmp.margin:g} unless the metric sets its own",
                                       "not run (left out of the pairs)")
    return "\n".join(lines) + "\n"


def fn_html(d: dict[str, Any]) -> str:
    """HTML section of a ``--fn`` comparison dict (``compare.json``)."""
    from html import escape

    from seglab.stats import DISAGREEMENT

    s = d["setup"]
    cols = _columns(d["losses"], s["primary"])
    head = "".join(f"<th>{escape(h)}</th>" for h in ["rank", "loss", f"{cols[0]} (mean ± sd)"] + cols[1:])
    rows = []
    for r in d["losses"]:
        m = r["metrics"]
        cells = [str(r["rank"]), escape(r["label"]), f"{_f(m[cols[0]]['mean'])} ± {_f(m[cols[0]]['sd'])}"]
        cells += [_f(m[k]["mean"]) for k in cols[1:]]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    conf = d.get("confidence", 0.95)
    diffs = []
    for x in d["differences"]:
        ci = (f"{x['mean']:+.3f} [{x['low']:+.3f}, {x['high']:+.3f}]" if x.get("mean") is not None else "—")
        flag = f" ({DISAGREEMENT})" if x.get("disagreement") else ""
        margin = "—" if x.get("margin") is None else f"±{x['margin']:g}"
        diffs.append(f"<tr><td>{escape(x['a'])}</td><td>{escape(x['metric'])}</td><td>{ci}</td>"
                     f"<td>{_p(x.get('p_raw'))}</td><td>{_p(x.get('p_holm'))}</td><td>{margin}</td>"
                     f"<td>{_p(x.get('tost_p'))}</td><td>{x['n_pairs']}</td>"
                     f"<td class='verdict'>{escape(x['verdict'])}{escape(flag)}</td></tr>")
    kw = "".join(f" {k}={v}" for k, v in sorted(s["fn_kw"].items()))
    return (f"<section id='compare'><h2>Loss comparison in your training code (paired seeds)</h2>"
            f"<p>function <code>{escape(s['fn'])}</code>{escape(kw)}, mode {escape(s['mode'])}, seeds {s['seeds']}; "
            f"baseline <code>{escape(d['baseline'])}</code>; ranked by {escape(s['ranked_by'])}.</p>"
            f"<table><tr>{head}</tr>{''.join(rows)}</table>"
            f"<h3>Differences from the baseline</h3><table><tr><th>loss</th><th>metric</th><th>mean difference "
            f"[{conf:.0%} t-interval]</th><th>p (sign-flip)</th><th>p (Holm)</th><th>margin</th><th>TOST p</th>"
            f"<th>pairs</th><th>verdict</th></tr>{''.join(diffs)}</table>"
            f"<p class='rule'>{escape(d['rule'])}</p></section>")
