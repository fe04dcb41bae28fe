"""The `policyeval` command line: one module per command, loaded only when used.

A user's mistake (a bad file, an unreachable endpoint) ends with a one-line cause and
a non-zero exit; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys

import click

from ..errors import PolicyevalError

# command name -> (module under policyeval.cli, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "validate": ("validate", "validate", "Check a policy pack's schema and meaning."),
    "release": ("validate", "release", "Record a pack's version label and content hash as released."),
    "diff": ("diff", "diff", "What changed between two policy versions, and what it invalidates."),
    "generate": ("generate", "generate", "Generate an eval set (Parquet) from a policy pack."),
    "respond": ("respond", "respond", "Run a checkpoint on eval items and store its responses."),
    "grade": ("grade", "grade", "Grade responses with the refusal classifier or a rubric judge."),
    "grade-file": ("grade", "grade_file", "Grade a CSV of prompts and responses gathered elsewhere."),
    "metrics": ("metrics", "metrics", "Under- and over-refusal rates with Wilson intervals."),
    "compare": ("metrics", "compare", "McNemar comparison of two checkpoints on the same items."),
    "agreement": ("agreement", "agreement", "Inter-rater agreement: percent, Cohen, Fleiss, Krippendorff."),
    "campaign": ("campaign", "campaign", "Human data campaigns: guidance, batches, annotations, agreement, adjudication, gold sets."),
    "train-grader": ("train_grader", "train_grader", "Train the learned grader (the shipped default, or on a gold set)."),
    "validate-grader": ("validate_grader", "validate_grader", "A grader against human labels: accuracy, kappa, confusion, sensitivity/specificity."),
    "demo": ("demo", "demo", "Run the whole chain on the demo pack and the embedded local model."),
    "serve-local-model": ("local_model", "serve_local_model", "Serve the embedded local model on loopback."),
    "report": ("report", "report", "Safety, comparison, policy-diff, coverage and drift reports (HTML and Markdown)."),
}


# Commands contributed by other installed packages (the orchestration shell adds `run`):
# entry points in the group below, named after the command, pointing at a click command.
PLUGIN_GROUP = "policyeval.commands"


def _plugins() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP) if ep.name not in COMMANDS}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS) + sorted(_plugins())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS:
            module_name, attribute, _ = COMMANDS[name]
            module = importlib.import_module(f"{__name__}.{module_name}")
            return getattr(module, attribute)
        plugin = _plugins().get(name)
        if plugin is None:
            return None
        try:
            return plugin.load()
        except ImportError as exc:
            raise PolicyevalError(f"`policyeval {name}` needs the orchestration extra: pip install -e '.[dagster]' ({exc})") from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, _, help_text) in COMMANDS.items()]
        for name in sorted(_plugins()):
            try:
                rows.append((name, self.get_command(ctx, name).get_short_help_str(80)))
            except PolicyevalError:
                rows.append((name, "(needs the dagster extra)"))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="policyeval")
def cli() -> None:
    """Policy-as-code evaluation: policies, eval sets, model runs, graders and metrics."""


def main(argv: list[str] | None = None) -> int:
    try:
        result = cli.main(args=argv, prog_name="policyeval", standalone_mode=False)
    except PolicyevalError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return result if isinstance(result, int) else 0


def run() -> None:
    sys.exit(main())
