"""``ml-connector``: run the sandbox, the demo and one-shot syncs from a terminal."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import click
from dagster import BetaWarning, PreviewWarning

from .config import ConfigError, ConnectorConfig, SystemSettings, active_config, connector_home
from .progress import no_progress_option
from .sandbox.registry import SIMULATORS
from .shutdown import StopSignals, stop_process_group

if TYPE_CHECKING:
    from .core.consent import CodeFlow

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
@no_progress_option
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


@main.command()
@click.option("--port", default=3000, show_default=True, help="Dagster UI port.")
def demo(port: int) -> None:
    """Serve the sandbox, the webhook receiver and `dagster dev` with the sensors on: records flow with no clicks.

    Ctrl-C, SIGTERM and SIGHUP all stop every part of it; exits 128 + the signal's number for the
    latter two (143 for SIGTERM), 0 for Ctrl-C.
    """
    with StopSignals() as stop:
        returncode = 0
        with contextlib.suppress(KeyboardInterrupt):
            returncode = _serve_demo(port, stop)
    if stop.exit_code or returncode:
        sys.exit(stop.exit_code or returncode)


def _serve_demo(port: int, stop: StopSignals) -> int:
    """The demo until `dagster dev` exits (its return code) or a stop signal interrupts it."""
    home = connector_home()
    with _sandbox_stack() as (urls, receiver_url):
        for name, url in urls.items():
            click.echo(f"  sandbox {name:<10} {url}")
        click.echo(f"  webhook receiver    {receiver_url}/webhooks/<system>")
        click.echo(f"  Dagster UI          http://127.0.0.1:{port}  (instance: {home})")
        command = [
            sys.executable, "-m", "dagster", "dev",
            "-w", str(PROJECT_ROOT / "workspace.yaml"),
            "-h", "127.0.0.1", "-p", str(port),
        ]  # fmt: skip
        process: subprocess.Popen[bytes] | None = None
        try:
            # Its own session: one signal reaches it (from us, not twice from a terminal or `timeout`
            # too), and its group holds all it starts, so nothing is left when the group is stopped.
            with stop.deferred():
                process = subprocess.Popen(command, env=dict(os.environ), cwd=PROJECT_ROOT,
                                           stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
            return process.wait()
        finally:
            if process is not None:
                stop_process_group(process)


@contextlib.contextmanager
def _sandbox_stack() -> Iterator[tuple[dict[str, str], str]]:
    """The sandbox simulators of connector.yaml and the webhook receiver they deliver to, on 127.0.0.1.

    Shared by `demo` and `sync`: both run against the same persistent sandbox tenants and instance
    (`.dagster/`), and webhook registrations (Asana's handshake, monday's challenge) need the receiver up.
    """
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
    ledger = Ledger.open()
    try:
        receiver = ServedApp(configured_receiver(config, ledger), "webhook receiver",
                             config.webhooks.host, config.webhooks.port).start()
        try:
            with serve_sandbox(_sandboxed_systems(config), host=config.sandbox.host,
                               ports=dict(config.sandbox.ports), state_dir=home / "sandbox",
                               webhook_base_url=receiver.base_url, **_sandbox_settings()) as urls:
                yield urls, receiver.base_url
        finally:
            receiver.stop()
    finally:
        ledger.dispose()


@main.command()
@click.option("--partition", default=None, help="Daily partition (YYYY-MM-DD, UTC). Default: today.")
@no_progress_option
def sync(partition: str | None) -> None:
    """Materialize the reference data and today's partitions once, headless, and print what moved."""
    from .sync import run_sync

    partition_key = partition or datetime.now(UTC).date().isoformat()
    with _sandbox_stack():
        report = run_sync(partition_key)
    click.echo(report.render())
    if not report.success:
        sys.exit(1)


@main.command()
@click.option("--flow", default=None, help="Only this flow's replay job (visma_jira, visma_asana, visma_monday, ...).")
@no_progress_option
def replay(flow: str | None) -> None:
    """Push every flow's open dead letters again (its replay job), once, and print what went through.

    Fix the cause first (a mapping, an option, a closed period): each letter goes through the
    flow's own push, from the record's latest landed copy; the ones that pass are resolved. Exits 1
    when a replay job fails.
    """
    from .definitions import build_definitions
    from .replay import replay_jobs, run_replay

    with _sandbox_stack():
        defs = build_definitions(active_config())
        jobs = replay_jobs(defs, flow)
        if not jobs:
            flows = sorted({job.tags.get("ml_connector/flow", "") for job in replay_jobs(defs)})
            where = f"flow {flow!r} has" if flow else "no enabled flow has"
            raise click.UsageError(f"{where} no replay job; flows with one: {', '.join(flows) or 'none'}")
        report = run_replay(jobs)
    click.echo(report.render())
    if not report.success:
        sys.exit(1)


@main.command()
def ping() -> None:
    """Authenticate to every configured system, make one harmless read, print what each could see.

    Exits 1 when any system fails; the table says the error and how to fix it. Secrets are never shown.
    """
    from .definitions import build_definitions
    from .ping import configured_systems, ping_configured

    config = active_config()
    resources = build_definitions(config).resources
    # On stderr, so that stdout carries the table alone (scripts may parse it).
    with click.progressbar(length=len(configured_systems(config)), label="pinging", file=sys.stderr,
                           item_show_func=lambda name: name or "") as bar:
        report = ping_configured(config, resources, on_result=lambda result: bar.update(1, result.system))
    click.echo(report.render())
    if not report.ok:
        sys.exit(1)


@main.group()
def auth() -> None:
    """OAuth consent: a system's token, obtained once by a person, kept encrypted in the vault."""


def _consent_options(system: str, app: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The options of every `auth <system>` command: the answer, no prompt, the redirect URI."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        from .core.consent import LOCAL_REDIRECT_URI

        options = [
            click.option("--code", "answer", default=None, metavar="ADDRESS",
                         help="The address your browser was sent to after consenting: finishes the consent started "
                              "before."),
            click.option("--no-prompt", is_flag=True, help="Only print the authorize URL; finish later with --code."),
            click.option("--redirect-uri", envvar=f"{system.upper()}_REDIRECT_URI", show_envvar=True, default=None,
                         help=f"The callback URL registered on {app} (default {LOCAL_REDIRECT_URI})."),
        ]  # fmt: skip
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _oauth_settings(system: str) -> SystemSettings:
    """``system``'s settings, when it is configured for OAuth; the sandbox's demo app credentials set."""
    from .definitions import use_sandbox_credentials

    config = active_config()
    settings = getattr(config.systems, system)
    if settings is None:
        raise click.UsageError(f"systems.{system} is not configured in connector.yaml")
    if getattr(settings, "auth", None) != "oauth":
        raise click.UsageError(f"systems.{system}.auth is {settings.auth}: there is no consent to give "
                               "(set auth: oauth to use an OAuth app)")
    use_sandbox_credentials(config)
    return settings


class _ConsentResource(Protocol):
    vault_key: str

    def process_config_and_initialize(self) -> object: ...


def _run_consent(system: str, settings: SystemSettings, make_flow: Callable[..., CodeFlow],
                 resource: _ConsentResource, *, answer: str | None, no_prompt: bool, redirect_uri: str | None) -> None:
    """The consent of every `auth <system>` command: begin or finish it, store the token, then ping with it."""
    from .core.consent import LOCAL_REDIRECT_URI

    client_id = os.environ.get(settings.client_id_env, "")
    client_secret = os.environ.get(settings.client_secret_env, "")
    try:
        flow = make_flow(settings, client_id, client_secret, redirect_uri=redirect_uri or LOCAL_REDIRECT_URI)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if _consent(flow, resource.vault_key, sandbox=settings.mode == "sandbox", answer=answer, prompt=not no_prompt):
        _verify(system, settings, resource.process_config_and_initialize)


@auth.command("jira")
@_consent_options("jira", "the Atlassian app")
def auth_jira(answer: str | None, no_prompt: bool, redirect_uri: str | None) -> None:
    """Atlassian 3LO consent: print the authorize URL, take the answer, keep the refresh token in the vault."""
    from .systems.jira.consent import jira_code_flow
    from .systems.jira.resource import JiraResource

    settings = _oauth_settings("jira")
    _run_consent("jira", settings, jira_code_flow, JiraResource.from_settings(settings),
                 answer=answer, no_prompt=no_prompt, redirect_uri=redirect_uri)


@auth.command("asana")
@_consent_options("asana", "the Asana app")
def auth_asana(answer: str | None, no_prompt: bool, redirect_uri: str | None) -> None:
    """Asana OAuth consent: print the authorize URL, take the answer, keep the refresh token in the vault."""
    from .systems.asana.consent import asana_code_flow
    from .systems.asana.resource import AsanaResource

    settings = _oauth_settings("asana")
    _run_consent("asana", settings, asana_code_flow, AsanaResource.from_settings(settings),
                 answer=answer, no_prompt=no_prompt, redirect_uri=redirect_uri)


@auth.command("monday")
@_consent_options("monday", "the monday app")
def auth_monday(answer: str | None, no_prompt: bool, redirect_uri: str | None) -> None:
    """monday OAuth consent: print the authorize URL, take the answer, keep the (never-expiring) access
    token in the vault."""
    from .systems.monday.consent import monday_code_flow
    from .systems.monday.resource import MondayResource

    settings = _oauth_settings("monday")
    _run_consent("monday", settings, monday_code_flow, MondayResource.from_settings(settings),
                 answer=answer, no_prompt=no_prompt, redirect_uri=redirect_uri)


def _consent(flow: CodeFlow, vault_key: str, *, sandbox: bool, answer: str | None, prompt: bool) -> bool:
    """Run ``flow`` from the terminal and keep the token it keeps in the vault under ``vault_key``.

    Without ``answer``: print the authorize URL and (when ``prompt``) ask for the address the browser
    was sent to; with it: finish the consent begun by an earlier call. True once a token is stored.
    """
    from .core.consent import ConsentError
    from .core.http import ApiError
    from .core.ledger import Ledger
    from .core.vault import Vault, VaultKeyInvalid, VaultKeyMissing

    with Ledger.open() as ledger:
        try:
            vault = Vault.from_env(ledger.engine, sandbox=sandbox, home=connector_home())
        except (VaultKeyMissing, VaultKeyInvalid) as exc:
            raise click.ClickException(str(exc)) from None
        if answer is None:
            request = flow.begin(vault)
            click.echo(f"Open this address in a browser, sign in and allow access:\n\n  {request.url}\n")
            if not prompt:
                click.echo(f"Then run: ml-connector auth {flow.system} --code '<the address your browser was sent to>'")
                return False
            # Hidden: the address carries the (single-use) code.
            answer = click.prompt("Paste the address your browser was sent to (hidden)", hide_input=True)
        try:
            grant = flow.complete(vault, answer)
        except (ConsentError, ApiError) as exc:
            raise click.ClickException(str(exc)) from None
        vault.put(vault_key, flow.token_to_keep(grant))
    scopes = f" with {' '.join(grant.scopes)}" if grant.scopes else ""
    click.echo(f"{flow.system}: consent granted{scopes}; the {flow.kept_name} is stored encrypted in the vault "
               f"as {vault_key!r}")
    return True


def _verify(system: str, settings: SystemSettings, resource: Callable[[], object]) -> None:
    """Ping ``system`` with the new token; exit 1 (with the error and its fix) when it does not work."""
    from .ping import ping_system

    result = ping_system(system, settings, resource)
    if result.ok is False:
        click.echo(f"{system}: the new token does not work: {result.error}\n  fix: {result.hint}", err=True)
        sys.exit(1)
    click.echo(f"{system}: verified: {result.seen}")


@main.group("map")
def map_columns() -> None:
    """Column mappings: which column of a customer-configured board each Visma field goes to."""


@map_columns.command("monday")
@click.option("--board", "board_id", required=True, help="The monday board id (the number in its URL).")
@click.option("--entity", default=None, help="The Visma records the board holds (asked when not given).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of the connector.yaml in use.")
def map_monday(board_id: str, entity: str | None, output: Path | None) -> None:
    """Read the board's columns, propose a column per Visma field, confirm, and write the mapping table."""
    from contextlib import nullcontext
    from urllib.parse import urlsplit

    from .definitions import use_sandbox_credentials
    from .flows.visma_monday_wizard import config_in_use, run_map_wizard
    from .sandbox.launch import serve_sandbox
    from .systems.monday.resource import MondayResource

    config = active_config()
    settings = config.systems.monday
    if settings is None:
        raise click.UsageError("systems.monday is not configured in connector.yaml")
    use_sandbox_credentials(config)
    url = urlsplit(str(settings.base_url))
    # A sandboxed monday answers at its base URL: reuse the running simulator, or start it for the wizard.
    simulator = serve_sandbox(["monday"], host=url.hostname or config.sandbox.host, ports={"monday": url.port or 80},
                              state_dir=connector_home() / "sandbox", **_sandbox_settings())
    with simulator if settings.mode == "sandbox" else nullcontext():
        resource = MondayResource.from_settings(settings).process_config_and_initialize()
        with resource.client() as client:
            run_map_wizard(client, board_id, config_path=config_in_use(), entity=entity, output=output)


@main.group()
def deploy() -> None:
    """Chores of a production deployment (see deploy/README.md)."""


@deploy.command("pools")
@click.argument("path", type=click.Path(exists=True, dir_okay=False), default="deploy/pools.yaml")
def deploy_pools(path: str) -> None:
    """Write the per-vendor pool limits of PATH into the Dagster instance of $DAGSTER_HOME."""
    from dagster import DagsterInstance

    from .pools import apply_pool_limits, read_pool_limits

    try:
        limits = read_pool_limits(path)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    with DagsterInstance.get() as instance:
        apply_pool_limits(instance, limits)
    for pool, limit in limits.items():
        click.echo(f"  {pool:<15} {limit}")


@main.command()
@click.option("--schedules", "count", default=50, show_default=True, help="How many schedules to run.")
@click.option("--seed", default=0, show_default=True, help="Master seed: the same seed draws the same schedules.")
@click.option("--flow", "flows", multiple=True, help="Only this flow (repeatable). Default: every flow.")
@click.option("--workers", default=1, show_default=True, help="Worker processes running schedules side by side.")
@click.option("--no-kills", "kills", flag_value=False, default=True, help="Leave out the schedules that kill processes.")
@click.option("--replay", "replay_id", default=None, metavar="FLOW:SEED", help="Run one schedule again and say what it left wrong.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the figures as Markdown (docs/reliability.md).")
def chaos(count: int, seed: int, flows: tuple[str, ...], workers: int, kills: bool, replay_id: str | None,
          report_path: Path | None) -> None:
    """Prove exactly-once under faults: random workloads, fault plans and kills against the simulators, then
    every destination compared with its source. Ends with `N schedules, D duplicates, L lost, M mismatched`
    and exits 1 unless all three (and the secrets found) are 0."""
    from .chaos.command import chaos_command

    chaos_command(count, seed, flows, workers, kills, replay_id, report_path)


def run() -> None:
    """Entry point that turns configuration errors into a clear message instead of a traceback."""
    try:
        main()
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    run()
