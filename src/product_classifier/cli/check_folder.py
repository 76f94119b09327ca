"""`product-classifier data check DIR`: is this catalog folder ready to train on?

Runs the same loading as ``train --data DIR`` (every file decoded with the model's input spec,
duplicates, per-category minimum, the seeded split) and prints what it found, without training.
Registered on the ``data`` group by cli/data.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def check_folder(
    directory: Annotated[
        Path,
        typer.Argument(
            help="A folder with one sub-folder per category, or train/ and test/ holding them.",
            exists=True,
            file_okay=False,
            show_default=False,
        ),
    ],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Experiment YAML (input spec, split, minimum); default configs/catalog.yaml.",
        ),
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="Override a config value.")
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="Also write the split manifest (JSON) here.")
    ] = None,
) -> None:
    """Check a catalog folder: counts per category and split, skipped files, duplicates."""
    from rich.console import Console
    from rich.table import Table

    from product_classifier.cli.common import default_config, load_config_or_exit
    from product_classifier.data.dataset import load_dataset
    from product_classifier.data.folder import FolderDataError

    cfg = load_config_or_exit(config or default_config("catalog"), overrides or [])
    cfg.data.folder = directory
    console = Console()
    try:
        dataset = load_dataset(cfg.data, cfg.input.spec())
    except FolderDataError as exc:
        Console(stderr=True).print(f"not ready: {exc}", style="red", markup=False)
        raise typer.Exit(1) from None
    counts = dataset.counts()
    spec = cfg.input.spec()
    table = Table(
        title=f"{directory}: {spec.size}x{spec.size}, {spec.channels} channel(s), "
        f"{spec.canonicalization}"
    )
    table.add_column("category")
    for split in counts:
        table.add_column(split, justify="right")
    for name in dataset.class_names:
        table.add_row(name, *(str(counts[s][name]) for s in counts))
    table.add_row("[b]total[/b]", *(f"[b]{sum(counts[s].values())}[/b]" for s in counts))
    console.print(table)
    folder = next(s for s in dataset.manifest["sources"] if s["source"] == "folder")
    skipped, repeats = folder["skipped"], folder["repeats_dropped"]
    console.print(f"layout: {folder['layout']}; split: {folder['split']}")
    console.print(f"{len(skipped)} file(s) skipped, {len(repeats)} repeat(s) kept once")
    for row in skipped[:20]:
        console.print(f"  skipped {row['path']}: {row['code']} ({row['message']})", markup=False)
    if len(skipped) > 20:
        console.print(f"  ... and {len(skipped) - 20} more (see --manifest)")
    if manifest is not None:
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text(json.dumps(dataset.manifest, indent=1) + "\n", encoding="utf-8")
        console.print(f"manifest: {manifest}")
    console.print("[green]ready to train[/green]")
