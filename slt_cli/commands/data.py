"""``slt data inspect`` and ``slt data convert``: look at a data source, or turn any
source into the ``.npz`` format."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import typer

from slt_cli.commands import guarded
from slt_cli.commands.options import DataSpec, Json, Landmarks, Layout, SignerFrom
from slt_cli.errors import SltError
from slt_cli.show import console

data_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="markdown",
    help="Inspect a data source or convert it to .npz (GISLR, .pose, MediaPipe frame folders, "
         "OpenPose JSON, .npz, synthetic).")

ConfigPath = Annotated[Path | None, typer.Option(
    "--config", help="A stages.toml to take [data] settings from.", show_default=False)]


@data_app.command("inspect")
@guarded
def inspect(spec: DataSpec, landmarks: Landmarks = None, config: ConfigPath = None,
            layout: Layout = None, signer_from: SignerFrom = None, json: Json = False,
            plot: Annotated[Path | None, typer.Option(
                "--plot", help="Also draw a few sequences as skeleton filmstrips into this "
                ".png (or .svg, .pdf) file; needs slt[plot].", show_default=False)] = None,
            force: Annotated[bool, typer.Option(
                "--force", help="Replace the --plot file if it exists.")] = False,
            ) -> None:
    """Sequences, classes, signers (per class and per signer), lengths, missing and
    zero-filled landmarks, and classes too few people sign for a signer-held-out split."""
    from slt_cli.data.summary import summarise_raw, summarise_store

    if plot is not None:
        from slt_cli.show import plots

        plots.check_output(plot, replace=force)  # before anything is read
    store, raw, source = _open(spec, landmarks, config, layout, signer_from)
    summary = summarise_store(source, store) if store is not None else summarise_raw(source, raw)
    if plot is not None:
        _filmstrips(store, raw, source, plot)
    if json:
        console.print_json(summary.to_dict())
    else:
        console.out.print(console.summary_table(summary))


@data_app.command("convert")
@functools.partial(guarded, kept="no partial .npz file is left")
def convert(spec: DataSpec,
            out: Annotated[Path, typer.Argument(help="The .npz file to write.")],
            landmarks: Landmarks = None, config: ConfigPath = None,
            layout: Layout = None, signer_from: SignerFrom = None,
            overwrite: Annotated[bool, typer.Option(
                "--overwrite", help="Replace OUT if it exists.")] = False) -> None:
    """Write any data source as an .npz file (x, y, classes, lengths, joints, ...).

    An existing OUT is replaced only with --overwrite; an interrupted convert leaves
    no partial file behind."""
    from slt_cli.data.summary import check_output, raw_arrays, store_arrays, write_npz

    if out.suffix != ".npz":
        raise SltError(f"{out}: the output must be a .npz file")
    check_output(out, overwrite=overwrite)
    store, raw, _ = _open(spec, landmarks, config, layout, signer_from)
    shape, blocks, arrays = store_arrays(store) if store is not None else raw_arrays(raw)
    size = write_npz(out, shape, blocks, arrays)
    console.err.print(f"wrote {out}: {shape[0]:,} sequences x {shape[1]} frames x {shape[2]} "
                      f"landmarks x {shape[3]} ({size / 1e6:,.1f} MB)", highlight=False)


def _filmstrips(store: Any, raw: Any, source: str, path: Path) -> None:
    from slt_cli.show.filmstrip import pick, save_filmstrips

    data = store if store is not None else raw
    if store is not None:
        def read(row: int) -> Any:
            x, lengths = store.padded([row])
            return x[0, :lengths[0]]
    else:
        def read(row: int) -> Any:
            return raw.x[row, :raw.lengths[row]]
    strips = pick(data.y, data.lengths, data.classes, data.signer, read)
    save_filmstrips(strips, data.joints, source, path)
    console.err.print(f"wrote {path}", highlight=False)


def _open(spec: str, landmarks: str | None, config: Path | None, layout: str | None,
          signer_from: str | None) -> tuple[Any, Any, str]:
    """(store, None, source) for a corpus, else (None, RawData, source)."""
    from slt_cli.cfg.config import find_config, load_config, with_overrides
    from slt_cli.data import load_source
    from slt_cli.data.corpus import open_corpus
    from slt_cli.data.landmarks import parse_landmarks
    from slt_cli.data.sources import ReadOptions, source_for

    data = with_overrides(load_config(find_config(config)), data_layout=layout,
                          data_signer_from=signer_from).data
    chosen = landmarks or data.landmarks
    parse_landmarks(chosen)  # a bad --landmarks is an error before anything is read
    from slt_cli.show.progress import RichReporter

    reporter = RichReporter()
    kind, options = source_for(spec), ReadOptions.of(data)
    if not kind.corpus:  # an .npz with MediaPipe names takes the selection too
        return None, load_source(spec, landmarks=chosen, reporter=reporter), spec
    source = kind.canonical(spec)
    with reporter.running():
        store = open_corpus(source, chosen, reporter, options)
    return store, None, source
