"""The ``spectral-peft`` command: one subcommand per study of :mod:`spectral_peft.studies.catalog`.

    spectral-peft ablate-delta --preset quick
    spectral-peft ablate-basis --help
    spectral-peft analyze-update --preset smoke
    spectral-peft sweep --grid basis=dht,dct selector=random,mixed
    spectral-peft report results/ablate_delta_quick results/sweep_quick --out results/report
    spectral-peft list
"""
from __future__ import annotations

import sys

from .catalog import commands


def _command(name: str) -> str:
    return name.replace("_", "-")


def _usage(available: dict) -> str:
    lines = ["usage: spectral-peft <study> [options]   (spectral-peft <study> --help for its options)", "", "studies:"]
    width = max(len(_command(n)) for n in available)
    for name, study in available.items():
        lines.append(f"  {_command(name):<{width}}  {study.title}")
    lines += ["", "other commands:", f"  {'report':<{width}}  combined table (markdown + LaTeX) and figure from study folders"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from .runner import main as run_main

    argv = list(sys.argv[1:] if argv is None else argv)
    available = commands()
    if not argv or argv[0] in ("-h", "--help", "help", "list"):
        print(_usage(available))
        return 0
    by_command = {_command(name): study for name, study in available.items()}
    command, rest = argv[0], argv[1:]
    if command == "report":
        from .report import main as report_main

        return report_main(rest, prog="spectral-peft report")
    study = by_command.get(command) or available.get(command)
    if study is None:
        print(f"spectral-peft: unknown study {command!r}; studies: {', '.join(by_command)}", file=sys.stderr)
        return 2
    prog = f"spectral-peft {_command(study.name)}"
    if hasattr(study, "main"):  # a study that is not a grid of training runs brings its own command line
        return study.main(rest, prog=prog)
    return run_main(study, rest, prog=prog)


if __name__ == "__main__":
    sys.exit(main())
