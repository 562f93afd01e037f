"""Two-process DDP (gloo on CPU) through ``torchrun``: validation counts every image exactly once and matches a
single-process evaluation of the same weights; only rank 0 writes files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_train_support import cli_env, one_thread, tiny_tree, write_yaml  # noqa: F401 (autouse fixture)

from atlas_vision.train import evaluate_checkpoint


def test_torchrun_two_ranks_val_counts_every_image_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # 13 val images do not split evenly over 2 ranks (7 + 6); 2 micro-batches of 4 x 2 ranks x accumulation 2
    tree = tiny_tree(
        run_dir, data={"train_samples": 16, "val_samples": 13}, optim={"batch_size": 4, "global_batch": 16}
    )
    config = write_yaml(tmp_path / "ddp.yaml", tree)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "atlas_vision",
        "train",
        "--config",
        str(config),
    ]
    proc = subprocess.run(cmd, check=False, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "accumulation 2" in proc.stderr

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["val_count"] == 13
    assert summary["steps"] == 1  # 16 images / (4 x 2 ranks x 2 micro-batches) = 1 update
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["val_count"] == 13

    single = evaluate_checkpoint(run_dir, prefer="last", device="cpu", batch_size=5, out="")
    assert single["count"] == 13
    assert sum(map(sum, single["confusion"])) == 13
    assert summary["val_top1"] == single["top1"]
    assert abs(summary["val_loss"] - single["loss"]) < 1e-5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.yaml", "run"]  # nothing written elsewhere
