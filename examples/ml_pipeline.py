"""A small machine-learning pipeline: load -> preprocess -> train one model per seed -> evaluate.

Run it from the repository's root::

    taskproc examples/ml_pipeline.py -o /tmp/taskproc-ml
    taskproc examples/ml_pipeline.py -o /tmp/taskproc-ml --kwargs '{"seeds": [0, 1, 2, 3]}'

The second command trains and evaluates seed 3 only: the data, the split and the other models
come from the cache. Each model file is kept in its training task's folder
(``/tmp/taskproc-ml/ml_pipeline.Train/results/<task id>/data/model.json``).

Training tasks carry the label ``gpu``. The defaults at the bottom let one of them run at a time
and start each through a prefix command. On a cluster the prefix submits the job, e.g.
``--prefixes '{"gpu": "srun --gres=gpu:1"}'`` (Slurm) or
``--prefixes '{"gpu": "jbsub -wait -queue x86_1h -cores 4+1"}'`` (LSF); this example uses
``env CUDA_VISIBLE_DEVICES=0`` as a stand-in that runs anywhere.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Sequence
from pathlib import Path

from taskproc import DefaultCliArguments, Future, FutureDict, FutureList, Task

Row = tuple[float, float, int]  # two features and a 0/1 label


class LoadShard(Task):
    """One shard of a data set of two noisy clusters (stands in for reading files)."""

    def __init__(self, shard: int, size: int) -> None:
        self.shard = shard
        self.size = size

    def run_task(self) -> list[Row]:
        rng = random.Random(self.shard)
        rows = []
        for _ in range(self.size):
            label = rng.randrange(2)
            center = 1.0 if label else -1.0
            rows.append((rng.gauss(center, 1.0), rng.gauss(center, 1.0), label))
        return rows


class Preprocess(Task):
    """Joins the shards, splits the rows into train/valid/test, standardizes the features."""

    def __init__(self, shards: Future[list[list[Row]]]) -> None:
        self.shards = shards

    def run_task(self) -> dict[str, list[Row]]:
        rows = [row for shard in self.shards.get_result() for row in shard]
        n = len(rows)
        parts = {
            "train": rows[: n * 6 // 10],
            "valid": rows[n * 6 // 10 : n * 8 // 10],
            "test": rows[n * 8 // 10 :],
        }
        train = parts["train"]
        means = [sum(r[i] for r in train) / len(train) for i in (0, 1)]
        stds = [math.sqrt(sum((r[i] - means[i]) ** 2 for r in train) / len(train)) for i in (0, 1)]

        def scale(r: Row) -> Row:
            return ((r[0] - means[0]) / stds[0], (r[1] - means[1]) / stds[1], r[2])

        return {name: [scale(r) for r in part] for name, part in parts.items()}


def predict(weights: list[float], row: Row) -> float:
    z = weights[0] + weights[1] * row[0] + weights[2] * row[1]
    return 1.0 / (1.0 + math.exp(-z))


def accuracy(weights: list[float], rows: list[Row]) -> float:
    return sum((predict(weights, row) > 0.5) == bool(row[2]) for row in rows) / len(rows)


class Train(Task):
    """Logistic regression by stochastic gradient descent from a seeded start; keeps the
    weights of the epoch that did best on the validation split."""

    task_label = "gpu"

    def __init__(
        self, train: Future[list[Row]], valid: Future[list[Row]], seed: int, epochs: int
    ) -> None:
        self.train = train
        self.valid = valid
        self.seed = seed
        self.epochs = epochs

    def run_task(self) -> Path:
        rows = list(self.train.get_result())
        valid = self.valid.get_result()
        rng = random.Random(self.seed)
        weights = [rng.gauss(0.0, 1.0) for _ in range(3)]
        best = (accuracy(weights, valid), list(weights))
        for _ in range(self.epochs):
            rng.shuffle(rows)
            for row in rows:
                error = predict(weights, row) - row[2]
                for i, x in enumerate((1.0, row[0], row[1])):
                    weights[i] -= 0.05 * error * x
            best = max(best, (accuracy(weights, valid), list(weights)))
        weights = best[1]
        device = os.environ.get("CUDA_VISIBLE_DEVICES", "none")
        print(f"seed {self.seed}: trained on device {device}")
        path: Path = self.task_directory / "model.json"  # this task's own folder in the cache
        path.write_text(json.dumps({"weights": weights, "seed": self.seed, "device": device}))
        return path


class Evaluate(Task):
    """Accuracy of a saved model on a split."""

    def __init__(self, model: Future[Path], rows: Future[list[Row]]) -> None:
        self.model = model
        self.rows = rows

    def run_task(self) -> float:
        weights = json.loads(self.model.get_result().read_text())["weights"]
        return accuracy(weights, self.rows.get_result())


class Main(Task):
    """Trains one model per seed and reports each one's test accuracy."""

    def __init__(self, seeds: Sequence[int] = (0, 1, 2), size: int = 1000, epochs: int = 5) -> None:
        dataset = Preprocess(FutureList([LoadShard(i, size // 4) for i in range(4)]))
        models = {seed: Train(dataset["train"], dataset["valid"], seed, epochs) for seed in seeds}
        self.models = FutureDict(models)
        self.accuracy = FutureDict(
            {seed: Evaluate(model, dataset["test"]) for seed, model in models.items()}
        )

    def run_task(self) -> dict[int, float]:
        models = self.models.get_result()
        accuracy = self.accuracy.get_result()
        for seed, acc in accuracy.items():
            print(f"seed {seed}: test accuracy {acc:.3f}  ({models[seed]})")
        best = max(accuracy, key=accuracy.__getitem__)
        print(f"best: seed {best}")
        return accuracy


DefaultCliArguments(
    rate_limits={"gpu": 1},
    prefixes={"gpu": "env CUDA_VISIBLE_DEVICES=0"},
).populate()
