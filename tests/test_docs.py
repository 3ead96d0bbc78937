"""The documentation stays true to the code: the CLI page, the help texts, the README's links."""

import re
from pathlib import Path

import pytest

from fastnn import _cli_doc

REPO = Path(__file__).resolve().parents[1]
COMMANDS = _cli_doc.subcommands()


def test_the_cli_page_is_what_the_parser_prints():
    committed = (REPO / "docs" / "cli.md").read_text()
    assert committed == _cli_doc.render(), \
        "docs/cli.md is stale: python -m fastnn._cli_doc > docs/cli.md"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_of_every_command_is_on_the_cli_page_with_help(name):
    page = (REPO / "docs" / "cli.md").read_text()
    section = page.split(f"## fastnn {name}\n", 1)[1].split("\n## ", 1)[0]
    for action in COMMANDS[name]._actions:
        for flag in action.option_strings:
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", section), (name, flag)
        if action.dest != "help":
            assert action.help, f"fastnn {name}: {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_shows_a_default_only_where_it_says_something(name):
    text = COMMANDS[name].format_help()
    assert "(default: None)" not in text and "(default: False)" not in text
    for entry in re.split(r"\n  (?=-)", text):
        assert entry.count("default") <= 1, entry


def test_train_help_is_grouped():
    text = COMMANDS["train"].format_help()
    titles = re.findall(r"^(\S[^\n]*):$", text, flags=re.MULTILINE)
    assert titles == ["options", "data", "model", "optimizer and training length",
                      "regularisation and augmentation", "learning-rate schedule and stopping",
                      "output: model file, checkpoints, logging", "performance"]
    ungrouped = next(g for g in COMMANDS["train"]._action_groups if g.title == "options")
    assert [a.dest for a in ungrouped._group_actions] == ["help"]


@pytest.mark.parametrize("page", ["README.md", *sorted(p.name for p in (REPO / "docs").glob("*.md"))])
def test_the_docs_link_only_to_files_that_exist(page):
    path = REPO / page if page == "README.md" else REPO / "docs" / page
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", path.read_text()):
        if not target.startswith(("http://", "https://")):
            assert (path.parent / target).exists(), (page, target)


def test_the_readme_stays_short():
    assert len((REPO / "README.md").read_text().splitlines()) <= 200


def test_the_readmes_own_data_quick_start_runs(tmp_path):
    """The README's CSV -> train -> predict -> ONNX -> onnxruntime block, as written."""
    import os
    import subprocess
    import sys

    pytest.importorskip("onnxruntime")
    text = (REPO / "README.md").read_text()
    block = text.split("**Your own data**", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-e", "-c", block], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = (tmp_path / "predictions.csv").read_text().splitlines()
    assert rows[0] == "input,prediction,0,1,2" and len(rows) == 179
    probabilities = [float(v) for v in proc.stdout.split("[[", 1)[1].split("]")[0].split()]
    assert len(probabilities) == 3 and abs(sum(probabilities) - 1) < 1e-5
