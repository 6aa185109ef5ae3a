"""Training the local provider's category model, and measuring it.

    .venv/bin/python -m plugins.ai.local.training            # retrain: writes plugins/ai/local/model.json
    .venv/bin/python -m plugins.ai.local.training --check    # retrain in memory, compare with the shipped file

Multinomial logistic regression by averaged stochastic gradient descent, in
pure Python: ``EPOCHS`` passes over tests/fixtures/ai/corpus_train.jsonl in an
order drawn from a fixed seed, a learning rate that decays per pass, a small
L2 penalty on the weights a step touches, and the average of the weights over
all steps as the result (steadier than the last step's). Features seen in
fewer than ``MIN_COUNT`` training events are left out, and so are features
whose weights all round below ``PRUNE``. The same corpus always gives the
same weights: no clock, no unseeded randomness, no parallelism.

The held-out files are never read here except to print the figures after
training (``--check`` and the default run), and nothing they say feeds back.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugins.ai.local.classification import DEFAULT_CATEGORIES, classify, event_features
from plugins.ai.local.model import LABELS, WEIGHTS_PATH, Weights
from plugins.ai.spec import EventInput

CORPUS_DIR = Path(__file__).parents[3] / "tests" / "fixtures" / "ai"
TRAIN = CORPUS_DIR / "corpus_train.jsonl"
HOLDOUTS = {"corpus_holdout": CORPUS_DIR / "corpus_holdout.jsonl",
            "labelled_events": CORPUS_DIR / "labelled_events.jsonl"}
SEED = 7
EPOCHS = 8
LEARNING_RATE = 0.1
L2 = 1e-4
MIN_COUNT = 2
PRUNE = 0.005
DIGITS = 3


def load(path: Path) -> list[dict[str, Any]]:
    """The labelled events of a corpus file (JSON lines)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def event_of(row: dict[str, Any]) -> EventInput:
    return EventInput("ten_corpus", row["source_type"], row["event_type"], row["payload"], row.get("text", ""))


def train(rows: list[dict[str, Any]], epochs: int = EPOCHS, seed: int = SEED) -> Weights:
    """The weights learnt from ``rows``; deterministic."""
    docs = [(event_features(event_of(row))[1], LABELS.index(row["category"])) for row in rows]
    counts = Counter(name for found, _ in docs for name in found)
    vocabulary = sorted(name for name, count in counts.items() if count >= MIN_COUNT)
    index = {name: i for i, name in enumerate(vocabulary)}
    encoded = [([(index[n], v) for n, v in sorted(found.items()) if n in index], label) for found, label in docs]
    classes = len(LABELS)
    weights = [[0.0] * classes for _ in vocabulary]
    summed = [[0.0] * classes for _ in vocabulary]  # step-weighted updates, for the average
    bias, bias_summed = [0.0] * classes, [0.0] * classes
    order = list(range(len(encoded)))
    shuffler = random.Random(seed)
    step = 1
    for epoch in range(epochs):
        shuffler.shuffle(order)
        rate = LEARNING_RATE / (1.0 + epoch)
        for d in order:
            pairs, label = encoded[d]
            scores = bias[:]
            for i, value in pairs:
                row = weights[i]
                for c in range(classes):
                    scores[c] += row[c] * value
            top = max(scores)
            exps = [pow(2.718281828459045, s - top) for s in scores]
            total = sum(exps)
            gradient = [e / total for e in exps]
            gradient[label] -= 1.0
            for c in range(classes):
                delta = -rate * gradient[c]
                bias[c] += delta
                bias_summed[c] += step * delta
            for i, value in pairs:
                row, row_summed = weights[i], summed[i]
                for c in range(classes):
                    delta = -rate * (gradient[c] * value + L2 * row[c])
                    row[c] += delta
                    row_summed[c] += step * delta
            step += 1
    kept: dict[str, tuple[float, ...]] = {}
    for name, row, row_summed in zip(vocabulary, weights, summed, strict=True):
        averaged = tuple(round(w - s / step, DIGITS) for w, s in zip(row, row_summed, strict=True))
        if max(abs(w) for w in averaged) >= PRUNE:
            kept[name] = tuple(w + 0.0 for w in averaged)  # + 0.0: no "-0.0" in the file
    averaged_bias = tuple(round(b - s / step, DIGITS) + 0.0 for b, s in zip(bias, bias_summed, strict=True))
    return Weights(LABELS, averaged_bias, kept)


@dataclass(frozen=True)
class Figures:
    """How the classifier does on a labelled set."""

    events: int
    accuracy: float
    recall: dict[str, float]
    precision: dict[str, float]
    confusion: dict[str, dict[str, int]]  # true category → predicted category → events
    priority: float
    sentiment: float

    def table(self) -> str:
        """The confusion matrix (rows: the label; columns: the answer) with recall and precision."""
        labels = [c for c in DEFAULT_CATEGORIES if c in self.confusion or any(c in r for r in self.confusion.values())]
        corner = "label \\ answer"
        lines = [f"{corner:<15}" + "".join(f"{c:>9}" for c in labels) + f"{'recall':>9}"]
        for truth in labels:
            row = self.confusion.get(truth, {})
            lines.append(f"{truth:<15}" + "".join(f"{row.get(c, 0):>9}" for c in labels)
                         + f"{self.recall.get(truth, 0.0):>9.2f}")
        lines.append(f"{'precision':<15}" + "".join(f"{self.precision.get(c, 0.0):>9.2f}" for c in labels))
        return "\n".join(lines)


def measure(rows: Iterable[dict[str, Any]]) -> Figures:
    """Category accuracy, per-category recall and precision, the confusion matrix; priority and sentiment."""
    confusion: dict[str, Counter[str]] = {}
    right = priority = sentiment = events = 0
    for row in rows:
        answer = classify(event_of(row))
        confusion.setdefault(row["category"], Counter())[answer["category"]] += 1
        right += answer["category"] == row["category"]
        priority += answer["priority"] == row["priority"]
        sentiment += answer["sentiment"] == row["sentiment"]
        events += 1
    answered = Counter[str]()
    for counter in confusion.values():
        answered.update(counter)
    recall = {c: confusion[c][c] / sum(confusion[c].values()) for c in confusion}
    precision = {c: confusion.get(c, Counter())[c] / answered[c] for c in answered}
    return Figures(events, right / max(events, 1), recall, precision,
                   {c: dict(counter) for c, counter in confusion.items()}, priority / max(events, 1),
                   sentiment / max(events, 1))


def _report(name: str, rows: list[dict[str, Any]]) -> None:
    figures = measure(rows)
    print(f"\n{name}: {figures.events} events, category {figures.accuracy:.3f}, priority {figures.priority:.3f}, "
          f"sentiment {figures.sentiment:.3f}")
    print(figures.table())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare a fresh training with the shipped weights")
    parser.add_argument("--corpus", type=Path, default=TRAIN)
    args = parser.parse_args(argv)
    weights = train(load(args.corpus))
    text = weights.to_json()
    if args.check:
        same = WEIGHTS_PATH.read_text(encoding="utf-8") == text
        print("the shipped weights are what the corpus trains" if same else "the shipped weights have drifted")
        return 0 if same else 1
    WEIGHTS_PATH.write_text(text, encoding="utf-8")
    print(f"{len(weights.weights)} features written to {WEIGHTS_PATH} ({len(text) / 1e6:.2f} MB)")
    _report("training set (in-sample)", load(args.corpus))
    for name, path in HOLDOUTS.items():
        rows = [r for r in load(path) if r.get("split") == "holdout"]
        _report(f"{name} held out", rows)
        for batch in sorted({r["batch"] for r in rows if "batch" in r}):
            _report(f"{name} held out, batch {batch}", [r for r in rows if r.get("batch") == batch])
    return 0


if __name__ == "__main__":
    sys.exit(main())
