"""README.md and docs/: short, complete about the commands, and the generated reference current."""

import pathlib
import re

from recsys_pipeline import cli
from recsys_pipeline.pipeline.config import PipelineConfig, reference_page

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def _kubeflow_commands() -> list[str]:
    parser = cli.build_parser()
    top = next(a for a in parser._actions if a.dest == "command")
    kubeflow = top.choices["kubeflow"]
    return list(next(a for a in kubeflow._actions if a.dest == "kubeflow_command").choices)


def test_readme_is_at_most_200_lines_with_the_two_commands():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: move depth into docs/"
    text = "\n".join(lines)
    assert "make run" in text and "make test" in text


def test_readme_shows_every_recsys_subcommand():
    text = README.read_text()
    missing = [c for c in cli.commands() if not re.search(rf"^recsys {c}\b", text, re.M)]
    missing += [f"kubeflow {c}" for c in _kubeflow_commands()
                if not re.search(rf"^recsys kubeflow {c}(\s|$)", text, re.M)]
    assert not missing, f"README.md omits: {missing}"


def test_the_subcommand_check_sees_all_of_them():
    assert {"run", "recommend", "bulk", "rollback", "promote", "config", "runs", "report",
            "lineage", "synth", "kubeflow"} == set(cli.commands())
    assert {"compile", "run-local", "upload", "run", "schedule", "schedules", "runs", "status",
            "wait", "terminate", "pipelines"} == set(_kubeflow_commands())


def test_every_linked_doc_exists():
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+\.md)\)", page.read_text()):
            assert (page.parent / target).resolve().exists(), f"{page.name} links {target}"


def test_configuration_reference_is_generated_from_the_config():
    assert (ROOT / "docs" / "configuration.md").read_text() == reference_page(
        PipelineConfig()), "docs/configuration.md is stale: run `make docs`"


def test_no_process_words_in_code_or_docs():
    # What is, not how it came to be: git keeps the history.
    pattern = re.compile(r"\bissue \d+|\b(fourth|fifth|sixth|seventh|eighth|ninth|n-th) run\b"
                         r"|exploratory\s+run|\b(Serving|Training throughput|Scale|Quality), "
                         r"(second|third) run", re.I)
    found = []
    for path in sorted(ROOT.rglob("*")):
        if path.suffix not in (".py", ".md", ".toml") or any(
                part.startswith(".") for part in path.relative_to(ROOT).parts):
            continue
        if path == pathlib.Path(__file__):
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
