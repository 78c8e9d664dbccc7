"""``ml-connector``: run the sandbox, the demo and one-shot syncs from a terminal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import click
from dagster import BetaWarning, PreviewWarning

from .config import ConfigError, ConnectorConfig, active_config, connector_home
from .sandbox.registry import SIMULATORS

# Beta/preview notices about Dagster's own APIs (e.g. backfill_policy) mean nothing to an operator.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _sandboxed_systems(config: ConnectorConfig) -> list[str]:
    """The systems connector.yaml runs against their sandbox simulator (a real one is never started)."""
    return [name for name in SIMULATORS if config.system_mode(name) == "sandbox"]


def _sandbox_settings() -> dict[str, object]:
    sandbox = active_config().sandbox
    return {"seed": sandbox.seed, "size": sandbox.size, "days": sandbox.days}


@click.group()
def main() -> None:
    """ml-connector: finance systems and work-management tools kept in agreement, on Dagster."""


@main.group()
def sandbox() -> None:
    """The sandbox simulators of the six vendor APIs."""


@sandbox.command("serve")
@click.option("--system", "systems", multiple=True, help="Serve only these (repeatable). Default: all.")
@click.option("--host", default=None, help="Default: sandbox.host from connector.yaml (127.0.0.1).")
@click.option("--port", "port_overrides", multiple=True, metavar="NAME=PORT", help="Override a default port.")
def sandbox_serve(systems: tuple[str, ...], host: str | None, port_overrides: tuple[str, ...]) -> None:
    """Serve the simulators on 127.0.0.1 until interrupted."""
    from .sandbox.launch import serve_sandbox

    config = active_config()
    ports = dict(config.sandbox.ports)
    for item in port_overrides:
        name, _, port = item.partition("=")
        if not port.isdigit():
            raise click.BadParameter(f"expected NAME=PORT, got {item!r}", param_hint="--port")
        ports[name] = int(port)
    with serve_sandbox(
        systems or None, host=host or config.sandbox.host, ports=ports, reuse_running=False, **_sandbox_settings()
    ) as urls:
        for name, url in urls.items():
            click.echo(f"  {name:<10} {url}")
        click.echo("sandbox running; Ctrl-C to stop")
        _wait_for_interrupt()


def _wait_for_interrupt() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        click.echo("stopping sandbox")


@main.group()
def webhooks() -> None:
    """The webhook receiver: verified deliveries go to the inbox, the inbox sensor does the rest."""


@webhooks.command("serve")
@click.option("--host", default=None, help="Default: webhooks.host from connector.yaml (127.0.0.1).")
@click.option("--port", default=None, type=int, help="Default: webhooks.port from connector.yaml (8800).")
def webhooks_serve(host: str | None, port: int | None) -> None:
    """Serve POST /webhooks/<system> until interrupted."""
    import uvicorn

    from .core.ledger import Ledger
    from .webhooks.configured import configured_receiver

    config = active_config()
    with Ledger.open() as ledger:
        app = configured_receiver(config, ledger)
        uvicorn.run(app, host=host or config.webhooks.host, port=port or config.webhooks.port, log_level="info")


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@main.command()
@click.option("--port", default=3000, show_default=True, help="Dagster UI port.")
def demo(port: int) -> None:
    """Serve the sandbox, the webhook receiver and `dagster dev` with the sensors on: records flow with no clicks."""
    from .core.ledger import Ledger
    from .definitions import use_sandbox_credentials
    from .sandbox.launch import serve_sandbox
    from .sandbox.serve import ServedApp
    from .webhooks.configured import configured_receiver

    home = connector_home()
    os.environ.update({"DAGSTER_HOME": str(home), "ML_CONNECTOR_HOME": str(home)})
    config = active_config()
    # The receiver verifies with the same (sandbox demo) secrets the simulators sign with.
    use_sandbox_credentials(config)
    env = dict(os.environ)
    ledger = Ledger.open()
    receiver = ServedApp(configured_receiver(config, ledger), "webhook receiver",
                         config.webhooks.host, config.webhooks.port).start()
    with serve_sandbox(_sandboxed_systems(config), host=config.sandbox.host, ports=dict(config.sandbox.ports),
                       state_dir=home / "sandbox", webhook_base_url=receiver.base_url, **_sandbox_settings()) as urls:
        for name, url in urls.items():
            click.echo(f"  sandbox {name:<10} {url}")
        click.echo(f"  webhook receiver    {receiver.base_url}/webhooks/<system>")
        click.echo(f"  Dagster UI          http://127.0.0.1:{port}  (instance: {home})")
        command = [
            sys.executable, "-m", "dagster", "dev",
            "-w", str(PROJECT_ROOT / "workspace.yaml"),
            "-h", "127.0.0.1", "-p", str(port),
        ]  # fmt: skip
        process = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT)
        # A SIGTERM (a supervisor, `timeout`) must stop `dagster dev` too, not orphan it.
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            process.wait()
        except KeyboardInterrupt:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        finally:
            receiver.stop()
            ledger.dispose()


@main.command()
@click.option("--partition", default=None, help="Daily partition (YYYY-MM-DD, UTC). Default: today.")
def sync(partition: str | None) -> None:
    """Materialize the reference data and today's partitions once, headless, and print what moved."""
    from .sandbox.launch import serve_sandbox
    from .sync import run_sync

    partition_key = partition or datetime.now(UTC).date().isoformat()
    config = active_config()
    with serve_sandbox(_sandboxed_systems(config), host=config.sandbox.host, ports=dict(config.sandbox.ports),
                       state_dir=connector_home() / "sandbox", **_sandbox_settings()):
        report = run_sync(partition_key)
    click.echo(report.render())
    if not report.success:
        sys.exit(1)


def run() -> None:
    """Entry point that turns configuration errors into a clear message instead of a traceback."""
    try:
        main()
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    run()
