"""Option and argument types shared by the commands, each declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

CheckpointDir = Annotated[Path | None, typer.Option(
    "--checkpoint-dir", help="Checkpoint folder [default: run.checkpoint_dir of the config, "
    "else checkpoints/].", show_default=False)]
ConfigPath = Annotated[Path | None, typer.Option(
    "--config", help="A stages.toml to use instead of ./stages.toml or the built-in one.",
    show_default=False)]
Device = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON to stdout instead of a table.")]
Compile = Annotated[bool | None, typer.Option(
    "--compile/--no-compile", help="torch.compile the model: a slower start, then faster "
    "steps [default: run.compile].", show_default=False)]
Precision = Annotated[str | None, typer.Option(
    "--precision", help="auto (bf16 autocast on CUDA, fp32 on the CPU), bf16 or fp32 "
    "[default: run.precision].", show_default=False)]
LogTo = Annotated[str | None, typer.Option(
    "--log-to", help="Also log each epoch's metrics and the config to tensorboard "
    "(CHECKPOINT_DIR/tensorboard/), mlflow (MLFLOW_TRACKING_URI, else ./mlruns), "
    "tensorboard+mlflow, or none [default: run.log_to].", show_default=False)]
Resume = Annotated[bool, typer.Option(
    "--resume", help="Carry on the interrupted run in the checkpoint folder (other flags "
    "but --checkpoint-dir and --device are taken from that run).")]
Model = Annotated[str, typer.Argument(help="Checkpoint to use, e.g. best_model_stage_5.")]
DataSpec = Annotated[str, typer.Argument(
    help="Data spec: synthetic[:k=v,...], a .npz path, gislr:DIR, pose:DIR, mediapipe:DIR or "
         "openpose:DIR.")]
DataOption = Annotated[str | None, typer.Option(
    "--data", help="Data spec: synthetic[:classes=60,signers=12,seed=0], a .npz path, "
    "gislr:DIR, pose:DIR, mediapipe:DIR or openpose:DIR.", show_default=False)]
Layout = Annotated[str | None, typer.Option(
    "--layout", help="mediapipe:DIR frames: the order of their parts, e.g. "
    "pose+face+left_hand+right_hand, or auto (found from the data) [default: [data] layout].",
    show_default=False)]
SignerFrom = Annotated[str | None, typer.Option(
    "--signer-from", help="mediapipe:DIR signers: csv (signers.csv, when there) or top (one "
    "signer per top folder, DIR/SIGNER/SIGN/SEQUENCE) [default: [data] signer_from].",
    show_default=False)]
Landmarks = Annotated[str | None, typer.Option(
    help="Landmark groups for corpora and MediaPipe-named .npz, e.g. hands+pose+lips "
         "[default: [data] landmarks of the config].", show_default=False)]
