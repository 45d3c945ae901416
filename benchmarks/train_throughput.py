"""Training throughput: emoclf's default training path against the usual Trainer pipeline, in one run.

    python benchmarks/train_throughput.py [--shape minilm|bert-base] [--steps 50] [--batch-size 32]
                                          [--threads N] [--precision auto|fp32|bf16] [--compile] [--quality]

Both arms train the same model (same initial weights), with the same batch size, on the same
rows of ``train.txt``, on this machine, in this process:

- reference: the original project's pipeline, the transformers ``Trainer`` over a torch ``Dataset``
  whose ``__getitem__`` tokenises one text with ``padding="max_length", max_length=128``, random
  batches, fp32;
- emoclf: ``emoclf train``'s path, built from ``emoclf.training`` (texts tokenised once per split,
  max_length from the data profile, ``DataCollatorWithPadding`` (to a multiple of 8 on GPUs only), length-grouped
  batches, the imbalance loss, and ``--precision``: ``auto`` is bf16 autocast where the CPU has
  AMX/AVX512-BF16).

Each arm runs ``--warmup`` optimizer steps, then ``--steps`` timed ones (data loading included,
no evaluation or saving): examples/s = timed examples / seconds. The mean padded length comes from
the timed batches as the collator built them. Length grouping sorts each megabatch of 50 batches
longest first, so any 50 consecutive steps see every length rank once: keep ``--steps`` a multiple
of 50 for a figure that holds for a whole epoch.

Achieved GFLOP/s counts the FLOPs the CPU computes, padding included, with the usual estimate
for a training step of a transformer encoder over a batch of b sequences of s tokens:
``6 * N * b * s + 12 * L * h * b * s^2`` (N: non-embedding parameters; 6 = 2 forward + 4 backward
per parameter and token; the second term is attention's QK^T and AV, forward and backward, with L
layers of width h). Peak = usable cores * clock (``cpu MHz`` of /proc/cpuinfo) * FLOPs per cycle
per core, from the instruction sets ``emoclf.hardware`` finds: 64 for fp32 with AVX-512 (two 16-lane
FMA units), 32 with AVX2, and for bf16 1024 with AMX (one TDPBF16PS tile multiply, 16*16*32 FMAs,
per 16 cycles), 128 with AVX512-BF16 only. The JSON names the CPU and repeats the assumptions used.

``--quality`` (slow, off by default) then trains a fresh model per arm for one epoch on
``--quality-rows`` training rows, with the same learning rate, schedule and seed, and scores both
on the validation split the same way (fp32, up to 128 tokens): "equal final quality" is the
difference of those macro-F1 scores. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from emoclf import hardware

# OpenMP reads how its threads wait when torch loads: measured as the emoclf command runs.
hardware.configure_threads()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from emoclf import imbalance  # noqa: E402
from emoclf.config import Config  # noqa: E402
from emoclf.data import load_data  # noqa: E402
from emoclf.data.profile import profile  # noqa: E402
from emoclf.losses import make_loss  # noqa: E402
from emoclf.modeling import load_for_training, load_tokenizer  # noqa: E402
from emoclf.preprocess import Preprocessor  # noqa: E402
from emoclf.trainer import EmoclfTrainer, build_training_args, pad_multiple, resolve_precision, tokenize_split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_MAX_LENGTH = 128
EVAL_MAX_LENGTH = 128
SHAPES = ("minilm", "bert-base")
log = logging.getLogger("train_throughput")


class ReferenceDataset(torch.utils.data.Dataset):
    """The original project's dataset: one tokenizer call per item, every item padded to 128 tokens."""

    def __init__(self, texts: list[str], labels: list[int], tokenizer) -> None:
        self.texts, self.labels, self.tokenizer = texts, labels, tokenizer

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            self.texts[i], padding="max_length", truncation=True, max_length=REFERENCE_MAX_LENGTH, return_tensors="pt"
        )
        item = {k: v.squeeze(0) for k, v in enc.items()}
        item["labels"] = torch.tensor(self.labels[i])
        return item


class ShapeRecorder:
    """Wraps a collator and keeps (batch, padded length, real tokens) of every batch it builds."""

    def __init__(self, collate) -> None:
        self.collate, self.shapes = collate, []

    def __call__(self, features):
        batch = self.collate(features)
        mask = batch["attention_mask"]
        self.shapes.append((mask.shape[0], mask.shape[1], int(mask.sum())))
        return batch


class StepClock(TrainerCallback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter())


def build_model(shape: str, labels: list[str], seed: int):
    """The same initial weights for every arm: MiniLM's pretrained encoder, or a random bert-base shape."""
    set_seed(seed)
    if shape == "minilm":
        return load_for_training("minilm", labels)[1]
    id2label = dict(enumerate(labels))
    return BertForSequenceClassification(
        BertConfig(num_labels=len(labels), id2label=id2label, label2id={v: k for k, v in id2label.items()})
    )


def non_embedding_params(model) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)


def train_flops(shapes: list[tuple[int, int, int]], n_params: int, layers: int, hidden: int) -> float:
    return float(sum(6 * n_params * b * s + 12 * layers * hidden * b * s * s for b, s, _ in shapes))


def cpu_peak(threads: int) -> dict:
    """Peak operations per second of the cores this process uses, from the clock and the instruction sets it has."""
    hw = hardware.detect()
    return {"model": hw.cpu, "isa": hw.isa, **hw.peak(threads)}


def reference_args(cfg: Config, out: Path, max_steps: int, warmup_steps: int) -> TrainingArguments:
    t = cfg.train
    return TrainingArguments(
        output_dir=str(out / "reference"),
        per_device_train_batch_size=t.batch_size,
        max_steps=max_steps,
        num_train_epochs=1,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=warmup_steps,
        lr_scheduler_type="linear",
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        seed=t.seed,
        dataloader_drop_last=True,
    )


def emoclf_args(cfg: Config, precision: str, out: Path, max_steps: int, compile: bool) -> TrainingArguments:
    """``emoclf train``'s arguments, less evaluation, checkpoints and logging (they are not training)."""
    args = build_training_args(cfg.replace(output_dir=str(out / "emoclf")), precision)
    return dataclasses.replace(
        args,
        max_steps=max_steps,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_drop_last=True,
        torch_compile=compile,
    )


def train_quietly(trainer: Trainer) -> None:
    # The Trainer prints its final log line to stdout, which must hold the JSON line alone.
    with contextlib.redirect_stdout(sys.stderr):
        trainer.train()


def run_arm(trainer: Trainer, clock: StepClock, recorder: ShapeRecorder, warmup: int) -> tuple[dict, list]:
    """Throughput over the timed steps, and the shapes of their batches (batches are collated in step order)."""
    train_quietly(trainer)
    steps = len(clock.times) - warmup
    seconds = clock.times[-1] - clock.times[warmup - 1]
    timed = recorder.shapes[warmup : warmup + steps]
    examples = sum(b for b, _, _ in timed)
    return {
        "examples_per_second": round(examples / seconds, 2),
        "timed_steps": steps,
        "seconds": round(seconds, 2),
        "mean_padded_length": round(float(np.mean([s for _, s, _ in timed])), 1),
        "mean_real_tokens": round(sum(r for _, _, r in timed) / examples, 1),
    }, timed


def validation_macro_f1(model, val_ds, tokenizer, batch_size: int = 128) -> float:
    """Both arms scored alike: fp32, dynamic padding, texts up to EVAL_MAX_LENGTH tokens."""
    from sklearn.metrics import f1_score

    collate = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)
    model.eval()
    order = np.argsort([len(ids) for ids in val_ds["input_ids"]])
    features = val_ds.remove_columns(["labels"])
    preds = np.empty(len(val_ds), dtype=np.int64)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = collate([features[int(i)] for i in rows])
            preds[rows] = model(**batch).logits.argmax(-1).numpy()
    return float(f1_score(val_ds["labels"], preds, average="macro"))


def build_trainers(
    args,
    cfg: Config,
    data,
    tokenizer,
    max_length: int,
    precision: str,
    out: Path,
    train_rows: np.ndarray,
    max_steps: int,
):
    """(name, trainer, clock, recorder) for both arms, over the same rows and the same initial weights."""
    t = cfg.train
    train_df = data.splits["train"].iloc[train_rows]
    plan = imbalance.plan(t.imbalance, train_df["label_id"].to_numpy(), len(data.labels), t.imbalance_threshold)
    rows = imbalance.resample_indices(plan.strategy, train_df["label_id"].to_numpy(), t.seed)
    steps_per_epoch = max(1, len(rows) // t.batch_size)
    budget = max_steps if max_steps > 0 else steps_per_epoch
    warmup_steps = int(np.ceil(t.warmup_ratio * budget))
    arms = []

    recorder, clock = ShapeRecorder(default_data_collator), StepClock()
    dataset = ReferenceDataset(train_df["text"].tolist(), train_df["label_id"].tolist(), tokenizer)
    trainer = Trainer(
        model=build_model(args.shape, data.labels, t.seed),
        args=reference_args(cfg, out, max_steps, warmup_steps),
        train_dataset=dataset,
        data_collator=recorder,
        callbacks=[clock],
    )
    arms.append(("reference", trainer, clock, recorder))

    pad = pad_multiple() if args.pad_to_multiple_of is None else (args.pad_to_multiple_of or None)
    recorder, clock = ShapeRecorder(DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad)), StepClock()
    train_ds = tokenize_split(train_df, tokenizer, max_length).select(rows)
    trainer = EmoclfTrainer(
        model=build_model(args.shape, data.labels, t.seed),
        args=emoclf_args(cfg.replace(epochs=1.0), precision, out, max_steps, args.compile),
        train_dataset=train_ds,
        processing_class=tokenizer,
        data_collator=recorder,
        callbacks=[clock],
        compute_loss_func=make_loss(plan.loss, plan.class_weights, t.focal_gamma, t.focal_alpha),
    )
    arms.append(("emoclf", trainer, clock, recorder))
    return arms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "emotion" / "train.txt")
    parser.add_argument(
        "--shape",
        choices=SHAPES,
        default="minilm",
        help="minilm: the default pretrained model; bert-base: BertConfig() defaults, random weights.",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=50,
        help="Timed optimizer steps per arm; a multiple of 50 (the length-grouped sampler's megabatch "
        "of 50 batches) times every length rank equally often.",
    )
    parser.add_argument("--warmup", type=int, default=5, help="Untimed optimizer steps before timing (at least 1).")
    parser.add_argument("--batch-size", type=int, default=32, help="Training batch size, both arms.")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice).")
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="emoclf arm only (the reference is fp32); auto: bf16 where the CPU has AMX/AVX512-BF16.",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="emoclf arm: torch.compile the model (TrainingArguments.torch_compile). The first batches "
        "of new padded lengths recompile: give --warmup 20 or more to keep compiling out of the timing.",
    )
    parser.add_argument(
        "--pad-to-multiple-of",
        type=int,
        help="emoclf arm: pad each batch to a multiple of N tokens (0: no rounding); "
        "default: emoclf's choice, 8 on GPUs and none on CPUs.",
    )
    parser.add_argument(
        "--quality", action="store_true", help="Also train one epoch per arm and compare validation macro-F1 (slow)."
    )
    parser.add_argument("--quality-rows", type=int, default=2000, help="Training rows for --quality.")
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("transformers", "datasets", "emoclf"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_average = os.getloadavg()[0]

    cfg = Config().replace(data=str(args.data), batch_size=args.batch_size, precision=args.precision, tracking=False)
    data = load_data(cfg.data, Preprocessor(cfg.preprocess))
    tokenizer, limit = load_tokenizer("minilm")  # bert-base shape too: the same uncased 30522-token vocabulary
    max_length = min(profile(data, tokenizer, limit)["suggested_max_length"], limit)
    precision = resolve_precision(args.precision)
    n_train = len(data.splits["train"])
    peak = cpu_peak(torch.get_num_threads())

    result = {
        "benchmark": "train_throughput",
        "shape": args.shape,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "timed_steps": args.steps,
        "warmup_steps": args.warmup,
        "train_rows": n_train,
        "load_average_at_start": round(load_average, 2),
    }
    with tempfile.TemporaryDirectory(prefix="emoclf-throughput-") as tmp:
        arms = build_trainers(
            args, cfg, data, tokenizer, max_length, precision, Path(tmp), np.arange(n_train), args.warmup + args.steps
        )
        model = arms[0][1].model
        layers, hidden, n_params = model.config.num_hidden_layers, model.config.hidden_size, non_embedding_params(model)
        result["params_non_embedding"] = n_params
        for name, trainer, clock, recorder in arms:
            log.info("timing %s: %d warm-up + %d steps of %d", name, args.warmup, args.steps, args.batch_size)
            arm, timed = run_arm(trainer, clock, recorder, args.warmup)
            arm_precision = "fp32" if name == "reference" else precision
            flops_per_example = train_flops(timed, n_params, layers, hidden) / sum(b for b, _, _ in timed)
            gflops = flops_per_example * arm["examples_per_second"] / 1e9
            arm.update(
                precision=arm_precision,
                gflops_per_second=round(gflops, 1),
                pad_to_multiple_of=None if name == "reference" else recorder.collate.pad_to_multiple_of,
                percent_of_peak=round(100 * gflops / peak[f"{arm_precision}_peak_gops"], 2),
                max_length=REFERENCE_MAX_LENGTH if name == "reference" else max_length,
                sampler="random" if name == "reference" else trainer.args.train_sampling_strategy,
            )
            result[name] = arm
        result["speedup"] = round(
            result["emoclf"]["examples_per_second"] / result["reference"]["examples_per_second"], 2
        )

        if args.quality:
            rng = np.random.default_rng(cfg.train.seed)
            rows = np.sort(rng.choice(n_train, size=min(args.quality_rows, n_train), replace=False))
            val_ds = tokenize_split(data.splits["validation"], tokenizer, EVAL_MAX_LENGTH)
            quality = {"train_rows": len(rows), "epochs": 1, "validation_rows": len(val_ds)}
            for name, trainer, _, _ in build_trainers(
                args, cfg, data, tokenizer, max_length, precision, Path(tmp), rows, -1
            ):
                log.info("quality: one epoch of %s on %d rows", name, len(rows))
                train_quietly(trainer)
                quality[f"{name}_val_macro_f1"] = round(validation_macro_f1(trainer.model, val_ds, tokenizer), 4)
            quality["difference"] = round(quality["emoclf_val_macro_f1"] - quality["reference_val_macro_f1"], 4)
            result["quality"] = quality
    result["cpu"] = peak
    result["command"] = " ".join(["python", "benchmarks/train_throughput.py", *sys.argv[1:]])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
