#!/usr/bin/env python3
"""Training FLOPs a run spent to reach a test precision: time to accuracy on any CPU.

    python scripts/flops_to_accuracy.py --train_dir=runs/c1 --target=0.93

Reads the run's config.json and its evaluator's record (``eval/metrics.jsonl``) and
prints, as JSON, the first scored checkpoint at or above ``--target`` (precision @ 1 on
the test split): its step, the examples trained on to reach it, and the training FLOPs
(``trainkit.flops``: 3x the forward pass's convolution and weight-matmul FLOPs per
example, as ``make bench`` counts them), in PFLOP; and the best checkpoint scored,
whether or not it reached the target. Wall time follows from a CPU's sustained rate:
PFLOP * 1e15 / (peak FLOP/s * the fraction of peak ``make bench`` measured).
"""

import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train_dir", required=True)
    parser.add_argument("--target", type=float, default=0.93,
                        help="test precision @ 1 to reach, as a fraction")
    parser.add_argument("--eval_dir", default=None, help="default: TRAIN_DIR/eval")
    args = parser.parse_args()
    sys.path.insert(0, REPO)
    from trainkit import config as config_lib
    from trainkit import errors
    from trainkit import registry
    from trainkit.evaluator import read_records
    try:
        config = config_lib.read_train_config(args.train_dir)
        metrics = os.path.join(args.eval_dir or os.path.join(args.train_dir, "eval"),
                               "metrics.jsonl")
        if not os.path.exists(metrics):
            raise errors.UserError(f"{metrics} does not exist: score the run first "
                                   f"(python -m {config.dataset}.eval "
                                   f"--train_dir={args.train_dir} --eval_policy=all)")
        records = [r for r in read_records(metrics)
                   if r.get("eval_data", "test") == "test" and "precision_at_1" in r]
        if not records:
            raise errors.UserError(f"{metrics} holds no test-split score")
    except errors.UserError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    from trainkit import flops
    model = registry.load(config.dataset).build(config)
    per_example = flops.training_flops_per_example(model, model.inputs[0].shape[1:])

    def at(record):
        examples = record["step"] * config.batch_size
        return {"step": record["step"], "precision_at_1": record["precision_at_1"],
                "examples": examples, "pflop": examples * per_example / 1e15}

    records.sort(key=lambda r: r["step"])
    reached = next((r for r in records if r["precision_at_1"] >= args.target), None)
    best = max(records, key=lambda r: r["precision_at_1"])
    print(json.dumps({"train_dir": args.train_dir, "dataset": config.dataset,
                      "model": config.model, "batch_size": config.batch_size,
                      "training_flops_per_example": per_example, "target": args.target,
                      "reached": at(reached) if reached else None, "best": at(best)},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
