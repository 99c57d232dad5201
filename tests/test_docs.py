"""The shell commands in README.md and docs/*.md, as written.

Every shell block is taken from the Markdown (fenced ```bash / ``` blocks and indented blocks):

- a block of real commands is run by bash itself, with every external command caught
  (``command_not_found_handle`` on an empty PATH), so variables, arrays and quoting are expanded
  exactly as a user's shell would; each ``t2i-unlearn`` command line (also under ``accelerate
  launch -m t2i_unlearn.cli``) is then parsed by the real CLI (Click: subcommand, every option,
  required options, types and choices) without running it; ``python bench/...`` / ``scripts/...``
  must name an existing file whose source knows every flag used;
- a synopsis block (``[--flag X]``, ``a|b``, ``...``) is checked flag by flag against its subcommand;
- the blocks marked ``<!-- doc-test: run -->`` are run for real, in document order, in one folder
  (slow test), with only budget flags appended (fewer pairs, steps, prompts; listed in ``BUDGET``).

The README's set-up blocks (``python3 -m venv`` ...) are CI's own script (``.ci/run``); they are
not run here.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
COMMANDS = ("t2i-unlearn", "accelerate", "python", "python3", "scripts/", "pip", ".venv/", "M=", "P=", "export ", "cd ")
RUN_MARK = "<!-- doc-test: run -->"
# Appended to the commands of the blocks run for real: the smallest budgets that still run every stage.
BUDGET = {
    ("data", "pairs"): ["--num-pairs", "2"],
    ("train", "duo"): ["--max-steps", "2", "--checkpoint-every", "2"],
    ("train", "esd"): ["--iterations", "2"],
    ("eval",): ["--limit", "2", "--steps", "2"],
    ("generate",): ["--steps", "2"],
    ("attack",): ["--iterations", "1", "--images-per-prompt", "1"],
}


def shell_blocks(path: Path) -> list[tuple[int, str, bool]]:
    """``(line, text, marked to run)`` of every shell block of a Markdown file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = re.match(r"^\s*```(\w*)\s*$", lines[i])
        marked = i > 0 and lines[i - 1].strip() == RUN_MARK
        if fence:
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            if fence.group(1) in SHELL_LANGS:
                blocks.append((i + 2, "\n".join(lines[i + 1 : j]), marked))
            i = j + 1
        elif lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or (not lines[j].strip() and j + 1 < len(lines) and lines[j + 1].startswith("    "))):
                j += 1
            blocks.append((i + 1, "\n".join(line[4:] for line in lines[i:j]), marked))
            i = j
        else:
            i += 1
    return [(n, text, marked) for n, text, marked in blocks if _first_word_is_command(text)]


def _first_word_is_command(text: str) -> bool:
    first = next((line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")), "")
    return first.startswith(COMMANDS)


def _is_synopsis(text: str) -> bool:
    unquoted = re.sub(r"\"[^\"]*\"|'[^']*'", "", text)
    return bool(re.search(r"\[-|\|| \.\.\.(\s|$)|(?<![$\w])[A-Z](?![\w=])", unquoted))


def _all_blocks() -> list[tuple[str, int, str, bool]]:
    return [(p.relative_to(ROOT).as_posix(), n, text, marked) for p in DOCS for n, text, marked in shell_blocks(p)]


def _root_command():
    import typer.main

    from t2i_unlearn.cli import app

    return typer.main.get_command(app)


def _options(cmd) -> set[str]:
    return {o for p in cmd.params for o in (*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ())) if o.startswith("-")} | {"--help"}


def parse_cli(argv: list[str]):
    """Parse ``t2i-unlearn argv`` as the CLI would, without running it; returns the leaf command. Raises Click's usage errors."""
    cmd = _root_command()
    ctx = cmd.make_context("t2i-unlearn", list(argv))
    while hasattr(cmd, "commands"):
        protected = getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", None) or []
        rest = [*protected, *ctx.args]
        name, sub, rest = cmd.resolve_command(ctx, rest)
        assert sub is not None, f"no command {name!r}"
        ctx = sub.make_context(name, rest, parent=ctx)
        cmd = sub
    return cmd


def _leaf_for_words(words: list[str]):
    """The commands a synopsis line names (``train duo|esd`` names two); words left over are placeholders."""
    cmds = [_root_command()]
    for word in words:
        if not all(hasattr(c, "commands") for c in cmds):
            break
        names = word.split("|")
        if not all(n in cmds[0].commands for n in names):
            break
        cmds = [c.commands[n] for c in cmds for n in names]
    return cmds


def _captured(text: str, tmp: Path) -> list[list[str]]:
    """The argv of every command the block runs, as bash expands them (nothing is executed)."""
    record = tmp / "argv.bin"
    # bash never calls the handler for a name with a slash: such commands (scripts/x.sh) become functions
    paths = sorted(set(re.findall(r"(?m)^\s*((?:scripts|bench)/[\w./-]+)", text)))
    text = "".join(f'{p}() {{ command_not_found_handle {p} "$@"; }}\n' for p in paths) + text
    script = (
        f"command_not_found_handle() {{ printf '%s\\0' \"$@\" >> {shlex.quote(str(record))}; printf '\\n' >> {shlex.quote(str(record))}; return 0; }}\n" + text
    )
    empty = tmp / "empty-path"
    empty.mkdir(exist_ok=True)
    res = subprocess.run(["/bin/bash", "-c", script], env={"PATH": str(empty), "HOME": str(tmp)}, capture_output=True, text=True, cwd=tmp)
    assert res.returncode == 0, res.stderr
    if not record.exists():
        return []
    return [chunk.rstrip("\0").split("\0") for chunk in record.read_text().split("\0\n") if chunk]


def _check_script(argv: list[str]) -> None:
    script = ROOT / argv[0]
    assert script.is_file(), f"{argv[0]} does not exist"
    source = script.read_text(encoding="utf-8")
    for flag in (a.split("=")[0] for a in argv[1:] if a.startswith("--")):
        assert f'"{flag}"' in source or f"'{flag}'" in source, f"{argv[0]} has no option {flag}"


def check_argv(argv: list[str]) -> None:
    """One command line from the docs: parse t2i-unlearn commands, check scripts, refuse unknown commands."""
    head = argv[0]
    if head == "t2i-unlearn":
        parse_cli(argv[1:])
    elif head == "accelerate":
        assert "t2i_unlearn.cli" in argv, argv
        parse_cli(argv[argv.index("t2i_unlearn.cli") + 1 :])
    elif head in ("python", "python3") and len(argv) > 1 and argv[1].endswith(".py"):
        _check_script(argv[1:])
    elif head.startswith("scripts/"):
        _check_script(argv)
    elif head == "pip":
        pass  # installing: what CI's own set-up runs
    else:
        pytest.fail(f"the docs run {head!r}, which this test does not know how to check")


CASES = [pytest.param(f, n, text, id=f"{f}:{n}") for f, n, text, _ in _all_blocks() if ".venv/" not in text]


@pytest.mark.parametrize(("doc", "line", "text"), CASES)
def test_doc_commands_parse(doc: str, line: int, text: str, tmp_path: Path) -> None:
    if _is_synopsis(text):
        joined = re.sub(r"\\\n\s*", " ", text)
        for raw in joined.splitlines():
            line_text = raw.split(" #")[0].strip()
            if line_text.startswith("accelerate") and "t2i_unlearn.cli" in line_text:
                line_text = "t2i-unlearn" + line_text.split("t2i_unlearn.cli", 1)[1]
            if not line_text.startswith("t2i-unlearn"):
                continue
            words = line_text.split()[1:]
            for cmd in _leaf_for_words(words):
                opts = _options(cmd) if not hasattr(cmd, "commands") else set()
                for flag in re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", line_text):
                    assert flag in opts, f"{doc}:{line}: {cmd.name} has no option {flag}"
        return
    argvs = _captured(text, tmp_path)
    assert argvs, f"{doc}:{line}: no command found"
    for argv in argvs:
        try:
            check_argv(argv)
        except Exception as exc:  # Click's usage errors: name the doc line
            raise AssertionError(f"{doc}:{line}: {shlex.join(argv)}: {exc}") from exc


def test_blocks_are_found() -> None:
    """The extraction sees the blocks this file is about (a changed Markdown style must not silence the test)."""
    blocks = _all_blocks()
    assert len(blocks) >= 15
    assert sum(marked for *_, marked in blocks) >= 2
    assert any("t2i-unlearn data pairs --model toy --concept toy_striped" in text for *_, text, _ in blocks)


def test_a_broken_command_is_caught(tmp_path: Path) -> None:
    """The checks fail on what the docs once had: a shell string used as an argument list, a folder flag that does not exist."""
    text = 'P=\'-p "a red circle" -p "a blue square"\'\nt2i-unlearn attack ring_a_bell --model toy --concept toy_striped $P --out A\n'
    (argv,) = _captured(text, tmp_path)
    assert argv[argv.index("-p") + 1] == '"a'  # the quotes stay literal: the prompt is cut into words
    with pytest.raises(Exception, match=r"(?i)unexpected extra argument|no such option|got unexpected"):
        parse_cli(argv[1:])
    with pytest.raises(Exception, match=r"(?i)no such option"):
        parse_cli(["eval", "--model", "toy", "--suite", "toy_striped", "--out", "r", "--folder", "x"])


def _budget_runner(tmp: Path) -> Path:
    runner = tmp / "t2i_unlearn_budget.py"
    runner.write_text(
        "import runpy, sys\n"
        f"BUDGET = {BUDGET!r}\n"
        "args = sys.argv[1:]\n"
        "for key, extra in BUDGET.items():\n"
        "    if tuple(args[: len(key)]) == key:\n"
        "        args += extra\n"
        "sys.argv = ['t2i-unlearn', *args]\n"
        "runpy.run_module('t2i_unlearn.cli', run_name='__main__', alter_sys=True)\n"
    )
    return runner


@pytest.mark.slow  # runs the marked blocks for real: pairs, DUO, ESD, two evaluations and a comparison on small budgets
def test_marked_blocks_run_in_order(tmp_path: Path) -> None:
    marked = [(f, n, text) for f, n, text, m in _all_blocks() if m]
    order = [ROOT.joinpath(f) for f, _, _ in marked]
    assert order == sorted(order, key=DOCS.index) and marked
    runner = _budget_runner(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    prelude = (
        f'set -e\nt2i-unlearn() {{ {shlex.quote(sys.executable)} {shlex.quote(str(runner))} "$@"; }}\n'
        'command_not_found_handle() { echo "skipped (not a t2i-unlearn command): $*" >&2; return 0; }\n'
    )
    env = {**os.environ, "PATH": str(tmp_path / "no-bin"), "HOME": str(tmp_path / "home"), "T2I_UNLEARN_CACHE": str(tmp_path / "cache")}
    for doc, line, text in marked:
        res = subprocess.run(["/bin/bash", "-c", prelude + text], cwd=work, env=env, capture_output=True, text=True)
        assert res.returncode == 0, f"{doc}:{line} failed:\n{res.stderr[-3000:]}"
    assert (work / "runs" / "compare" / "compare.md").exists() and (work / "striped.png").exists()
