"""The ``cud-bench`` command.

Thin by design: each subcommand parses its arguments and calls one library
function; all logic lives in the library. A subcommand is a ``_add_<name>``
function (its parser) plus a ``_cmd_<name>`` function (its action), listed in
:data:`SUBCOMMANDS`. User-facing errors (:class:`CudBenchError`, unknown
registry names) print ``error: <message>`` to stderr and exit with status 2.
Library modules are imported inside the command functions, so ``--help`` and
``--version`` start without loading ``datasets``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Sequence

from cud_bench import __version__
from cud_bench.errors import CudBenchError
from cud_bench.io import cache_dir

Subparsers = Any  # argparse's private _SubParsersAction


def _add_tasks(commands: Subparsers) -> None:
    parser = commands.add_parser("tasks", help="list the registered tasks with their classes and split sizes")
    parser.add_argument("names", nargs="*", help="only these tasks (default: all)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(func=_cmd_tasks)


def _cmd_tasks(args: argparse.Namespace) -> int:
    from cud_bench.data.tasks import task_summary, tasks

    summaries = [task_summary(name) for name in (args.names or tasks.names())]
    print(json.dumps(summaries, indent=2) if args.format == "json" else _task_table(summaries))
    return 0


def _task_table(summaries: list[dict[str, Any]]) -> str:
    """Split sizes read ``-`` while a task's source is not fetched."""
    rows = []
    for s in summaries:
        sizes = s["splits"] or {}
        rows.append(
            [s["name"], s["version"], s["num_classes"]]
            + [sizes.get(split, "-") for split in ("train", "validation", "test")]
            + [s["source"]]
        )
    return _table(("id", "version", "classes", "train", "validation", "test", "source"), rows)


def _add_data(commands: Subparsers) -> None:
    parser = commands.add_parser("data", help="manage the data cache")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch = actions.add_parser("fetch", help="download task sources and registered resources into the cache")
    fetch.add_argument("--tasks", nargs="+", metavar="TASK", help="these tasks (default: every task that needs no hub)")
    fetch.add_argument(
        "--resources", nargs="+", default=(), metavar="NAME",
        help="also these resources not fetched by default (registered with fetch_by_default=False)",
    )
    fetch.add_argument("--no-progress", action="store_true", help="no progress bar")
    fetch.set_defaults(func=_cmd_data_fetch)


def _cmd_data_fetch(args: argparse.Namespace) -> int:
    from cud_bench.data.tasks import fetch_data

    for note in fetch_data(args.tasks, extra_resources=args.resources, progress=not args.no_progress):
        print(f"note: {note}", file=sys.stderr)
    print(f"cache: {cache_dir()}")
    return 0


def _add_methods(commands: Subparsers) -> None:
    parser = commands.add_parser("methods", help="list the registered methods with their three parts")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(func=_cmd_methods)


def _cmd_methods(args: argparse.Namespace) -> int:
    from cud_bench.methods import describe_methods

    rows = describe_methods()
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        print(_table(("method", "teacher", "transform", "student"), [[r[k] or "-" for k in ("method", "teacher", "transform", "student")] for r in rows]))
    return 0


def _add_shifts(commands: Subparsers) -> None:
    parser = commands.add_parser("shifts", help="list the registered distribution shifts and the tasks they apply to")
    parser.add_argument("--format", choices=("table", "json", "markdown"), default="table")
    parser.add_argument("--task", metavar="TASK", help="only the shifts that apply to this task")
    parser.set_defaults(func=_cmd_shifts)


def _cmd_shifts(args: argparse.Namespace) -> int:
    from shifts import applicability_table, describe

    rows = describe(args.task)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    elif args.format == "markdown":
        print(applicability_table(), end="")
    else:
        print(_table(
            ("id", "family", "kind", "severities", "max examples", "applies to"),
            [[r["id"], r["family"], r["kind"], len(r["severities"]), r["max_examples"] or "-", ", ".join(r["tasks"])] for r in rows],
        ))
    return 0


def _add_suites(commands: Subparsers) -> None:
    parser = commands.add_parser("suites", help="list the registered suites, or print one as a YAML file to edit")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="the registered suites and what they are for").set_defaults(func=_cmd_suites_list)
    show = actions.add_parser("show", help="a suite as a commented YAML template (every field, its meaning and value)")
    show.add_argument("name", help="a registered suite or a suite YAML file")
    show.set_defaults(func=_cmd_suites_show)


def _cmd_suites_list(args: argparse.Namespace) -> int:
    from cud_bench.suites import suites

    print(_table(("suite", "description"), [[name, suites.get(name).description] for name in suites.names()]))
    return 0


def _cmd_suites_show(args: argparse.Namespace) -> int:
    from cud_bench.suites import load_suite, to_yaml

    print(to_yaml(load_suite(args.name)), end="")
    return 0


def _add_run(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "run",
        help="train and score every cell of a suite (resumes where it stopped)",
        description="Expand a suite into task x method x seed x target protocol x student cells, train each "
        "teacher once (cached), train and score every student on the clean test set and every applicable "
        "shift, and write one JSON record (+ .npz predictions) per cell under OUT/<suite>/records/. "
        "Finished cells are skipped, so an interrupted run resumes.",
    )
    parser.add_argument("--suite", default="cpu", help="a registered suite (smoke, cpu, finetune) or a suite YAML file; `cud-bench suites show NAME` prints one with every field explained")
    parser.add_argument("--tasks", nargs="+", metavar="TASK", help="these tasks instead of the suite's (any registered task)")
    parser.add_argument("--methods", nargs="+", metavar="METHOD", help="these methods instead of the suite's (any registered method)")
    parser.add_argument("--seeds", nargs="+", type=int, metavar="SEED", help="these seeds instead of the suite's")
    parser.add_argument("--out", default="runs", help="output directory (default: ./runs)")
    parser.add_argument(
        "--jobs", type=int, metavar="N",
        help="local executor: worker processes, each running whole tasks on its share of the CPU cores (default: 1); "
        "2 on a 2-core machine roughly halves the training time. Reruns with the same N give the same numbers",
    )
    _add_executor_args(parser)
    _add_portable_arg(parser)
    parser.add_argument(
        "--group-size", type=int, default=None, metavar="N",
        help="train a task's students of one architecture together as stacks of at most N models (default: all "
        "of them; 1: one at a time). Every model gets exactly what it gets alone: the records do not change",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--no-recompute", action="store_true", help="stop (exit 2) if a stored record was made with other specs than the suite's now, instead of recomputing it")
    parser.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from cud_bench.runner import run_suite
    from cud_bench.suites import load_suite

    suite = load_suite(args.suite).restrict(tasks=args.tasks, methods=args.methods, seeds=args.seeds)
    summary = run_suite(
        suite, args.out, progress=not args.no_progress, recompute=not args.no_recompute, numerics_mode=_numerics_mode(args),
        executor=_executor(args), group_size=args.group_size,
    )
    print(summary.report())
    return 0


def _add_executor_args(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    parser.add_argument(
        "--executor", default="local", metavar="NAME",
        help=prefix + "where teachers and cells run: local (default; this machine, nothing to start) or ray "
        "(a Ray cluster; output folder and cache on a filesystem every node shares)",
    )
    parser.add_argument(
        "--address", metavar="auto|HOST:PORT",
        help="ray executor: the cluster to join (auto: the one `ray start` started on this machine; "
        "default: a Ray instance started for this run on this machine)",
    )
    parser.add_argument(
        "--max-retries", type=int, metavar="N",
        help="ray executor: times a task whose worker or node died is run again (default: 3)",
    )


def _add_portable_arg(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    parser.add_argument(
        "--portable", action="store_true",
        help=prefix + "portable numerics: baseline x86-64 kernels in torch, MKL, oneDNN, numpy and libm, one thread per "
        "worker, so the numbers repeat bit for bit on any x86-64 CPU (slower; own caches; never mixed with native runs)",
    )


def _numerics_mode(args: argparse.Namespace) -> str:
    return "portable" if args.portable else "native"


def _executor(args: argparse.Namespace) -> Any:
    from cud_bench.executors import create

    return create(args.executor, jobs=args.jobs, address=args.address, max_retries=args.max_retries)


def _add_sweep(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "sweep",
        help="run a suite over a grid of one method's hyperparameters (sensitivity)",
        description="Every grid point is a method variant named METHOD+PARAM=VALUE+..., run like any method "
        "(resumable, cached teachers). Name a parameter bare when one part of the method has it, else "
        "part.param (teacher, transform, student); `cud-bench methods --format json` lists them. Check the "
        "result with a claim whose side A is METHOD+* and which sets `robust: SHARE`.",
    )
    parser.add_argument("--method", required=True, help="the method to vary, e.g. cud")
    parser.add_argument("--grid", nargs="+", required=True, metavar="PARAM=V1,V2", help="values per hyperparameter, e.g. gamma=2,5,10 eta=0.3,0.5")
    parser.add_argument("--suite", default="smoke", help="a registered suite or a suite YAML file (default: smoke)")
    parser.add_argument("--tasks", nargs="+", metavar="TASK", help="these tasks instead of the suite's")
    parser.add_argument("--seeds", nargs="+", type=int, metavar="SEED", help="these seeds instead of the suite's")
    parser.add_argument("--with", dest="also", nargs="*", default=["kd"], metavar="METHOD", help="methods to run beside the grid (default: kd)")
    parser.add_argument("--out", default="runs", help="output directory (default: ./runs)")
    parser.add_argument("--jobs", type=int, metavar="N", help="local executor: worker processes (see `cud-bench run --help`)")
    _add_executor_args(parser)
    _add_portable_arg(parser)
    parser.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from cud_bench.suites import load_suite
    from cud_bench.sweep import parse_grid, run_sweep

    suite = load_suite(args.suite).restrict(tasks=args.tasks, seeds=args.seeds)
    variants, summary = run_sweep(
        suite, args.method, parse_grid(args.grid), args.out, also=args.also, executor=_executor(args), numerics_mode=_numerics_mode(args)
    )
    print("\n".join([f"{len(variants)} settings: {', '.join(variants)}", summary.report()]))
    return 0


def _add_check(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "check",
        help="check a claims file (YAML) with statistical tests; exit 1 if a required claim does not hold",
        description="Each claim compares two methods (or a method's teacher) on a metric with a paired bootstrap "
        "over seeds x examples or a sign test over seeds, and is judged holds / fails / inconclusive. Verdicts are "
        "printed and written as JSON and Markdown. Exit status: 0 when every required claim holds, 1 when one "
        "fails or is inconclusive, 2 on bad input. See claims/cud-paper.yaml.",
    )
    parser.add_argument("claims", help="the claims YAML file")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--results", help="a run's records folder (OUT/<suite>/records) or any folder above it")
    source.add_argument("--release", help="a leaderboard release, e.g. 1.0 (the newest 1.0.x) or 1.0.0")
    source.add_argument("--run", metavar="SUITE", help="run this suite first (missing cells only; cached teachers and features reused)")
    parser.add_argument("--runs", default="runs", help="output directory for --run (default: ./runs)")
    parser.add_argument("--jobs", type=int, metavar="N", help="local executor: worker processes for --run")
    _add_executor_args(parser, "for --run: ")
    _add_portable_arg(parser, "for --run: ")
    parser.add_argument("--root", help="folder holding the releases (default: the package's leaderboard/releases)")
    parser.add_argument("--out", default="claims-report", help="where the verdicts go as <claims name>.json and .md (default: ./claims-report)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar over the claims")
    parser.set_defaults(func=_cmd_check)


def _cmd_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cud_bench.executors import use
    from leaderboard.claims import exit_code, run_check, to_markdown, write_reports

    with use(_executor(args)):  # the suite --run names runs on it
        claims, verdicts, source = run_check(
            Path(args.claims), results=args.results, release=args.release, suite=args.run, runs=Path(args.runs),
            releases_root=args.root and Path(args.root), numerics_mode=_numerics_mode(args), progress=not args.no_progress,
        )
    print(to_markdown(verdicts, claims, source))
    for path in write_reports(claims, verdicts, source, Path(args.out), Path(args.claims).stem):
        print(path)
    return exit_code(verdicts)


def _add_simulate(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "simulate",
        help="validate the claims' statistics on synthetic benchmarks with a known truth",
        description="Simulated benchmarks of the cpu suite's shape (tasks x students x seeds x two methods, shared "
        "test texts, nested subsets, corrupted copies) with a known true difference; reports the coverage of the "
        "claims' intervals, the rate of false 'holds' and the power by corruption set size. See leaderboard/inference.py.",
    )
    parser.add_argument("--settings", nargs="+", metavar="NAME", help="only these settings (shell patterns; default: all)")
    parser.add_argument("--benchmarks", type=int, default=500, metavar="N", help="simulated benchmarks per setting (default: 500)")
    parser.add_argument("--resamples", type=int, default=500, metavar="R", help="bootstrap replicates per claim (default: 500)")
    parser.add_argument("--metrics", nargs="+", metavar="ID", help="metric ids (default: accuracy and ece/uniform/15/l1)")
    parser.add_argument("--kinds", nargs="+", metavar="KIND", help="only these claim kinds, e.g. pool/mean corruption/worst (default: each setting's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulation (default: 0)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="settings run in N worker processes")
    parser.add_argument("--out", default="simulation", help="writes OUT.json and OUT.md (default: ./simulation)")
    parser.add_argument("--combine", nargs="+", metavar="JSON", help="run nothing: write OUT.md from the outcomes of earlier runs' JSON files")
    parser.add_argument(
        "--seed-spread", metavar="VERSION",
        help="run no claims: print how much scores move between training seeds in release VERSION beside the "
        "simulator's default world (--metrics, --benchmarks, --seed apply)",
    )
    parser.add_argument("--root", help="for --seed-spread: folder holding the releases (default: the package's leaderboard/releases)")
    parser.set_defaults(func=_cmd_simulate)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from leaderboard.inference import combine_simulations, select_settings, write_simulation

    if args.combine:
        print(combine_simulations(args.combine, Path(args.out)))
        return 0
    if args.seed_spread:
        from leaderboard.inference import BASE_METRICS, seed_spread_report
        from leaderboard.store import open_release

        release = open_release(args.seed_spread, **({"root": Path(args.root)} if args.root else {}))
        print(seed_spread_report(release.entries(), release.version, args.metrics or BASE_METRICS, args.benchmarks, seed=args.seed))
        return 0
    settings = select_settings(args.settings, args.metrics, args.kinds)
    print(write_simulation(settings, args.benchmarks, Path(args.out), seed=args.seed, n_resamples=args.resamples, jobs=args.jobs))
    return 0


def _add_leaderboard(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "leaderboard",
        help="versioned result releases: import a run, verify, build the views, show, diff",
        description="Releases live under leaderboard/releases/<version>/ (one JSON entry + predictions per cell). "
        "Entries are append-only; a cell already present with different results is replaced only with --replace REASON.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", help="folder holding the releases (default: the package's leaderboard/releases)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    imp = actions.add_parser("import", parents=[common], help="add a run's records to the release of the current benchmark version")
    imp.add_argument("records", help="a run's records folder (OUT/<suite>/records) or any folder above it")
    imp.add_argument("--version", help="the release (default: the current benchmark version; nothing else is accepted)")
    imp.add_argument("--replace", metavar="REASON", help="replace cells present with different results, recording REASON")
    imp.set_defaults(func=_cmd_leaderboard_import)
    verify = actions.add_parser("verify", parents=[common], help="recompute every stored score from the stored predictions")
    verify.add_argument("versions", nargs="*", help="releases to check (default: all)")
    verify.set_defaults(func=_cmd_leaderboard_verify)
    rescore = actions.add_parser(
        "rescore", parents=[common], help="recompute entries scored with an older scoring version (replacements, with a reason)"
    )
    rescore.add_argument("version", help="the release, e.g. 1.0.0")
    rescore.add_argument("--reason", required=True, help="why, recorded in every replaced entry and in the release's notes")
    rescore.set_defaults(func=_cmd_leaderboard_rescore)
    build = actions.add_parser("build", parents=[common], help="render LEADERBOARD.md, the CSVs, claims.json and the site (index.html, assets, figures)")
    build.add_argument("version", nargs="?", help="the release (default: the newest)")
    build.add_argument("--out", help="output folder (default: <release>/views)")
    build.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples per interval and test (default 1000)")
    build.add_argument("--claims", nargs="+", default=(), metavar="FILE", help="claims files whose verdicts on the release the views show")
    build.set_defaults(func=_cmd_leaderboard_build)
    show = actions.add_parser(
        "show", parents=[common], help="print the site's overview: claims, methods by set family, the rows (mean ± std over seeds)",
        description="The overview views/index.html shows, with the same filters: the claims' verdicts (as the last build "
        "wrote them to views/claims.json, or --claims checked now), the method x set-family table and the rows of one "
        "suite, protocol and student, from the stored scores.",
    )
    show.add_argument("version", nargs="?", help="the release (default: the newest)")
    show.add_argument("--suite", help="the suite (default: the first)")
    show.add_argument("--task", default="all", help="one task, or all (default)")
    show.add_argument("--protocol", help="target protocol (default: the first, e.g. cross-fit)")
    show.add_argument("--student", help="student architecture (default: the first)")
    show.add_argument("--variant", choices=("raw", "ts"), default="raw", help="raw, or after temperature scaling")
    show.add_argument("--family", default="clean", help="set family of the rows: clean, corruption, domain, ambiguous, long-tail")
    show.add_argument("--metric", default="accuracy", help="metric id (default accuracy; e.g. ece/uniform/15/l1, nll, brier)")
    show.add_argument("--claims", nargs="+", default=(), metavar="FILE", help="check these claims files now instead of reading the built verdicts")
    show.add_argument("--format", choices=("text", "json"), default="text", help="plain-text tables or JSON")
    show.set_defaults(func=_cmd_leaderboard_show)
    diff = actions.add_parser("diff", parents=[common], help="list what changed between two releases")
    diff.add_argument("a", help="the older release")
    diff.add_argument("b", help="the newer release")
    diff.set_defaults(func=_cmd_leaderboard_diff)
    version = actions.add_parser("version", parents=[common], help="check the benchmark version against the code's specs")
    version.add_argument("--record", action="store_true", help="write the current spec manifest (bumping the version if released)")
    version.set_defaults(func=_cmd_leaderboard_version)


def _releases_root(args: argparse.Namespace) -> Any:
    from leaderboard.store import DEFAULT_ROOT

    return args.root or DEFAULT_ROOT


def _cmd_leaderboard_import(args: argparse.Namespace) -> int:
    from leaderboard import versions
    from leaderboard.release import import_run

    version = args.version or versions.read_benchmark()[0]
    print(import_run(args.records, version, root=_releases_root(args), replace_reason=args.replace))
    return 0


def _cmd_leaderboard_verify(args: argparse.Namespace) -> int:
    from leaderboard.release import verify_release
    from leaderboard.store import list_releases, open_release

    root = _releases_root(args)
    for version in args.versions or list_releases(root):
        print(verify_release(open_release(version, root)))
    return 0


def _cmd_leaderboard_rescore(args: argparse.Namespace) -> int:
    from leaderboard.release import rescore
    from leaderboard.store import open_release

    print(rescore(open_release(args.version, _releases_root(args)), args.reason))
    return 0


def _cmd_leaderboard_build(args: argparse.Namespace) -> int:
    from leaderboard.store import open_release
    from leaderboard.views import build

    release = open_release(args.version, _releases_root(args))
    for path in build(release, args.out, n_resamples=args.resamples, claims_files=args.claims):
        print(path)
    return 0


def _cmd_leaderboard_show(args: argparse.Namespace) -> int:
    from pathlib import Path

    from leaderboard.site import Filters, sections, show, to_json
    from leaderboard.store import open_release

    release = open_release(args.version, _releases_root(args))
    filters = Filters(args.suite, args.task, args.protocol, args.student, args.variant, args.family, args.metric)
    view = show(release, filters, claims_files=[Path(p) for p in args.claims])
    if args.format == "json":
        print(to_json(view), end="")
    else:
        print("\n\n".join(f"{title}\n{_table(header, rows)}" if rows else f"{title}\n(none)" for title, header, rows in sections(view)))
    return 0


def _cmd_leaderboard_diff(args: argparse.Namespace) -> int:
    from leaderboard.diff import diff_releases
    from leaderboard.store import open_release

    root = _releases_root(args)
    print("\n".join(diff_releases(open_release(args.a, root), open_release(args.b, root))))
    return 0


def _cmd_leaderboard_version(args: argparse.Namespace) -> int:
    from leaderboard import versions

    root = _releases_root(args)
    if args.record:
        version, changes = versions.record(root)
        print("\n".join([f"benchmark {version}", *(str(c) for c in changes)]))
    else:
        print(f"benchmark {versions.check(root)}: the manifest matches the code")
    return 0


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with left-aligned columns."""
    rows = [tuple(header)] + [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _add_faithfulness(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "faithfulness",
        help="train CE and DUS teachers over the faithfulness grid and judge them on validation data",
        description="The faithfulness rule of docs/cud-method.md (section 7): per offline task, the CE teacher and "
        "one DUS teacher per grid setting (gamma = 10) trained as one stack; a setting passes a task when its "
        "validation accuracy is within 1 point of CE's and its median top-1 confidence lies in [0.5, 0.9]. "
        "Writes faithfulness.json and faithfulness.md (per setting and task, the plausible region, the selected setting).",
    )
    parser.add_argument(
        "--tasks", nargs="+", metavar="TASK",
        help="a subset of the offline tasks (the region is then provisional), or other registered tasks (a spec of "
        "their own, judged for their per-task selections: how the default cud picks its DUS setting on a task)",
    )
    parser.add_argument("--out", default="runs/faithfulness", help="output directory (default: ./runs/faithfulness)")
    parser.add_argument("--group-size", type=int, metavar="N", help="at most N teachers per stack (default: all at once)")
    parser.add_argument(
        "--grid", nargs="+", metavar="PARAM=V1,V2", default=[],
        help="replace grid axes (lam_ce, tau_gate, rho, beta), e.g. --grid lam_ce=0.02,0.05 tau_gate=0: an extension of "
        "the committed grid, its own spec (use another --out); the criterion and the selection rule are unchanged",
    )
    parser.add_argument(
        "--update-table", nargs="+", metavar="REPORT",
        help="train nothing: write the per-task table the default cud reads (cud_bench/method_defs/dus_per_task.json) "
        "from these faithfulness.json reports (e.g. docs/faithfulness/faithfulness.json "
        "docs/faithfulness-suite/faithfulness.json)",
    )
    parser.set_defaults(func=_cmd_faithfulness)


def _cmd_faithfulness(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cud_bench.data.tasks import get_task
    from cud_bench.faithfulness import FaithfulnessSpec, per_task_table, run_faithfulness, to_markdown, with_grid, with_tasks
    from cud_bench.io import write_json_atomic
    from cud_bench.method_defs.dus_per_task import TABLE
    from cud_bench.sweep import parse_grid

    if args.update_table:
        table = per_task_table([Path(p) for p in args.update_table])
        write_json_atomic(TABLE, table)
        print(f"{TABLE}: {len(table['settings'])} tasks ({', '.join(table['settings'])})")
        return 0

    spec = with_grid(FaithfulnessSpec(), parse_grid(args.grid)) if args.grid else FaithfulnessSpec()
    if args.tasks and not set(args.tasks) <= set(spec.tasks):
        for task in args.tasks:
            get_task(task)  # an unknown name fails here, with the registered ones listed
        spec = with_tasks(spec, args.tasks)
    report = run_faithfulness(spec, Path(args.out), args.tasks, args.group_size, log=lambda line: print(line, file=sys.stderr))
    print(to_markdown(report), end="")
    return 0


def _add_testbed(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "testbed",
        help="apply the testbed rule: under which candidate teacher does vanilla KD beat the no-teacher student",
        description="The testbed rule of docs/cud-method.md (section 8): for each candidate teacher, the students kd "
        "and ce of the cpu suite's students and protocols on the seven offline tasks (clean data, the cpu suite's "
        "subsets and seeds); a pairing carries information when kd's validation accuracy beats ce's on a majority "
        "of tasks. Never looks at CUD or at test data. Writes testbed.json and testbed.md; resumes.",
    )
    parser.add_argument("--out", default="runs/testbed", help="output directory (default: ./runs/testbed)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="worker processes (whole tasks each; default 1)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.set_defaults(func=_cmd_testbed)


def _cmd_testbed(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cud_bench.testbed import TestbedSpec, run_testbed, to_markdown

    report = run_testbed(TestbedSpec(), Path(args.out), args.jobs, args.progress, log=lambda line: print(line, file=sys.stderr))
    print(to_markdown(report), end="")
    return 0


SUBCOMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _add_tasks, _add_data, _add_methods, _add_shifts, _add_suites, _add_run, _add_sweep, _add_leaderboard, _add_check,
    _add_simulate, _add_faithfulness, _add_testbed,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cud-bench",
        description="A robustness and calibration benchmark for calibrated knowledge distillation.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CudBenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
