"""`policyeval serve-local-model`: the embedded SmolLM2 server in the foreground.

Useful for poking at the default target with any OpenAI client, or for pointing several
runs at one server instead of each starting its own.
"""

from __future__ import annotations

import click


@click.command("serve-local-model")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to listen on (default: a free one).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind; keep it on loopback.")
@click.option("--n-ctx", default=2048, show_default=True, type=click.IntRange(128), help="Context length in tokens.")
@click.option("--n-threads", type=click.IntRange(1), help="CPU threads (default: llama.cpp's choice).")
def serve_local_model(port: int | None, host: str, n_ctx: int, n_threads: int | None) -> None:
    """Serve the embedded local model on loopback until Ctrl-C."""
    from ..runs.local_model import LocalModelServer

    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: serving on {host} exposes the model beyond this machine", err=True)
    server = LocalModelServer(port=port, host=host, n_ctx=n_ctx, n_threads=n_threads)
    click.echo("starting the local model server ...", err=True)
    with server:
        click.echo(f"base_url: {server.base_url}")
        click.echo(f"model:    {server.model_name}")
        click.echo("Ctrl-C to stop", err=True)
        try:
            code = server.wait()
        except KeyboardInterrupt:
            click.echo("stopping", err=True)
            return
        if code:
            raise click.ClickException(f"the local model server exited with code {code}:\n{server.log_tail()}")
