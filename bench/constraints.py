"""Size and latency limits: what measuring a trial costs, and what a size limit costs in accuracy.

    cd bench && ../.venv/bin/python constraints.py [--presets simple,medium,hard,boss] [--repeats 5]
    cd bench && ../.venv/bin/python constraints.py --search [--time-limit 3m] [--max-params N] [--seed 0]

Without ``--search``: for each preset (600 classes, 40 mels, random weights), the parameter count and the
search's own latency measurement (:func:`automel.engine.constraints.cpu_latency_ms`: one 3 s utterance,
batch 1, median of 5 calls after a warm-up), taken ``--repeats`` times to show its spread, and the wall
time one measurement costs a trial.

With ``--search``: two searches of the embedded synthetic corpus with the same time limit and seed, without a
limit and with ``--max-params`` (default: a third of the size of the first search's export), through the
Python API; for each, the exported model's size and latency,
the best trial's validation accuracy and the export's test accuracy against the corpus's answer key. The
searches run one after the other, so run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _common import BENCH_HOME, default_corpus, machine, report

from automel.engine.constraints import count_parameters, cpu_latency_ms
from automel.model import build_model
from automel.presets import preset_params

N_MELS, CLASSES = 40, 600


def measure_presets(presets: list[str], repeats: int) -> None:
    for name in presets:
        torch.manual_seed(0)
        model = build_model(preset_params(name), N_MELS, CLASSES)
        latencies, costs = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            latencies.append(cpu_latency_ms(model, N_MELS))
            costs.append((time.perf_counter() - started) * 1000.0)
        report("constraints-measure", preset=name, n_params=count_parameters(model),
               latency_ms_median=round(statistics.median(latencies), 2), latency_ms_min=round(min(latencies), 2),
               latency_ms_max=round(max(latencies), 2), measurement_ms=round(statistics.median(costs), 1),
               machine=machine())


def compare_searches(time_limit: str, max_params: int | None, seed: int) -> None:
    """The unlimited search first; then one limited to ``max_params`` (default: a third of the first's export)."""
    import automel
    from automel.score import score_submission

    corpus = default_corpus()
    limit: int | None = None
    for _ in range(2):
        label = "no limit" if limit is None else f"--max-params {limit}"
        home = BENCH_HOME / f"constraints-{limit or 'none'}-{seed}-{int(time.time())}"
        started = time.monotonic()
        result = automel.search(corpus, time_limit=time_limit, home=home, seed=seed, study=f"c{seed}",
                                max_params=limit, device="cpu")
        model = automel.load(result.path)
        report("constraints-search", run=label, time_limit=time_limit, seconds=round(time.monotonic() - started),
               kind=result.kind, trials=len(result.study.trials),
               pruned_over_limit=sum("over the limit" in str(t.user_attrs.get("pruned_reason", ""))
                                     for t in result.study.trials),
               exported_params=count_parameters(model.inference.model),  # an ensemble's members summed
               exported_latency_ms=round(cpu_latency_ms(model.inference.model, model.inference.record.n_mels), 2),
               best_valid_acc=round(result.study.best_value, 4),
               test_acc=round(score_submission(result.path / "output.csv", corpus / "answers.csv").accuracy, 4),
               config=f"{model.config['encoder']}/{model.config['pooling']}/{model.config['head']}",
               machine=machine())
        if limit is not None:
            break
        limit = max_params or count_parameters(model.inference.model) // 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="simple,medium,hard,boss")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--search", action="store_true")
    parser.add_argument("--time-limit", default="3m")
    parser.add_argument("--max-params", type=int, default=None,
                        help="The second search's limit [default: a third of the first search's export]")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.search:
        compare_searches(args.time_limit, args.max_params, args.seed)
    else:
        measure_presets(args.presets.split(","), args.repeats)


if __name__ == "__main__":
    Path(BENCH_HOME).mkdir(parents=True, exist_ok=True)
    main()
