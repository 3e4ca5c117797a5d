"""`charseq export`: a trained model as an ONNX graph (the export extra).

A thin shell over charseq.export.onnx, registered through the same hook a third party's
command uses.
"""

from __future__ import annotations

from pathlib import Path

from charseq import hookimpl


@hookimpl
def register_commands(cli):
    import click  # here, not at import: loading the plugins must not load the CLI's packages

    @cli.command(short_help="Write a checkpoint's model as an ONNX file.")
    @click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path(path_type=Path))
    @click.option("--format", "format_", type=click.Choice(["onnx"]), default="onnx", show_default=True,
                  help="The file format: an ONNX graph (needs the export extra: onnx).")
    @click.option("-o", "--out", type=click.Path(),
                  help="The file to write.  [default: CHECKPOINT's name with .onnx, beside it]")
    @click.option("--force", is_flag=True, help="Replace a file at --out (never the checkpoint, nor other charseq "
                                                "checkpoints and metrics).")
    def export(checkpoint_path: Path, format_: str, out: str | None, force: bool) -> None:
        """Write a checkpoint's model as a file that other runtimes run without charseq.

        The ONNX graph reads ids (batch, seq) and a state, and returns the next symbol's
        logits after each id and the state after the last; the vocabulary is in its
        metadata. One step is seq=1: feed state_out back as state.

        \b
        Examples:
          charseq export alphabet.npz                 # writes alphabet.onnx
          charseq export novel.npz -o web/novel.onnx --force
        """
        from charseq.errors import counted
        from charseq.files import shown
        from charseq.export.onnx import OPSET, export_checkpoint

        written, size = export_checkpoint(checkpoint_path, out, force=force)
        click.echo(f"wrote {shown(written)} ({counted(size, 'byte')}, ONNX opset {OPSET})")
