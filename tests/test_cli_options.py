"""The command line's options: one declaration and one default per option across every entry point
(``cli/options.py``), flags named only in ``basam_deploy/cli/``, and every parameter the library
names in a message (`min_size`) reported as a flag that exists (``cli/flags.py``)."""

import argparse
import importlib.util
import inspect
import re
from collections import defaultdict
from pathlib import Path

import pytest

import basam_deploy
from basam_deploy.cli import amg, demo, export, parse_size, serve, trt, web
from basam_deploy.cli.flags import PARAMETER, RENAMED, flag, in_flags
from basam_deploy.cli.options import (
    add_backend_options,
    add_model_options,
    add_size_range_options,
)
from basam_deploy.errors import BasamError
from basam_deploy.sam_modules import Sam

PACKAGE = Path(basam_deploy.__file__).parent
SAMPLE = PACKAGE.parent / "samples" / "python" / "segment.py"
# Files that write another program's command line, whose flags are that program's own.
OTHER_PROGRAMS = {
    "tensorrt/trtexec.py": "trtexec's argv (--profile=N, --minShapes...)",
    "selftest/sample.py": "the C++ sample's argv (cpp/: --engines, --image, --point, --output)",
}
# Another concept under a shared option's flag (see DIFFERENT_BY_DESIGN).
OTHER_CONCEPT = {("basam-trt triton-repo", "--backend"), ("basam-export", "--onnx")}
# Files whose backticks are Markdown (a generated README), not parameters of a message.
MARKDOWN = {"triton_repo/readme.py"}
# Flags two commands declare for different things, so their defaults differ by design.
DIFFERENT_BY_DESIGN = {
    "--backend": "basam-trt triton-repo: the repository's Triton backend (auto/tensorrt/onnx), "
    "not what runs the model",
    "--onnx": "basam-export: a no-op switch (ONNX is the only format), elsewhere a folder",
    "--output": "each command's own output (folder, engine, image, repository)",
    "--json": "basam-trt inspect: print as JSON; elsewhere a file to write",
    "--max-batch": "basam-serve: PyTriton's batch (4); triton-repo: from the engine profiles",
}


def entry_points():
    """(command, parser) for every command, basam-trt subcommand and the Python sample."""
    yield "basam-demo", demo.build_parser()
    yield "basam-export", export.build_parser()
    yield "basam-serve", serve.build_parser()
    yield "basam-amg", amg.build_parser()
    yield "basam-web", web.build_parser()
    spec = importlib.util.spec_from_file_location("segment_sample", SAMPLE)
    sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sample)
    yield "segment.py", sample.build_parser()
    for action in trt.build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"basam-trt {name}", sub


def declared():
    """flag -> {command: action}."""
    flags = defaultdict(dict)
    for command, parser in entry_points():
        for action in parser._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    flags[option][command] = action
    return flags


def shared_reference():
    """flag -> action as ``cli/options.py`` declares it."""
    parser = argparse.ArgumentParser()
    add_model_options(parser)
    add_size_range_options(parser, what="x")
    add_backend_options(parser, threads=True)
    return {
        o: a
        for a in parser._actions
        for o in a.option_strings
        if o.startswith("--") and o != "--help"
    }


def test_shared_options_are_declared_once_with_one_default():
    flags = declared()
    reference = shared_reference()
    for option, expected in reference.items():
        assert len(flags[option]) >= 2, f"{option} is shared by fewer than two commands"
        for command, action in flags[option].items():
            if (command, option) in OTHER_CONCEPT:
                continue
            got = (action.default, action.type, action.choices, action.metavar)
            want = (expected.default, expected.type, expected.choices, expected.metavar)
            assert got == want, f"{command} declares {option} itself: {got} != {want}"


def test_a_flag_two_commands_declare_has_one_default():
    for option, commands in declared().items():
        defaults = {repr(action.default) for action in commands.values()}
        if len(commands) > 1 and option not in DIFFERENT_BY_DESIGN:
            assert len(defaults) == 1, f"{option}: {dict.fromkeys(commands)} disagree: {defaults}"


def test_no_flag_of_ours_outside_the_cli():
    """The library speaks in parameters: a flag of one of our commands named outside cli/ (in code,
    a message or a docstring, or in the web page's scripts) fails here; the message names the
    parameter (`min_size`), or takes its wording from the command (basam-web's pixel limit)."""
    pattern = re.compile(
        r"(?<![\w-])(" + "|".join(map(re.escape, sorted(declared(), key=len, reverse=True))) + ")"
        r"(?![\w-])"
    )
    found = []
    for path in sorted([*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.js")]):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("cli/") or relative in OTHER_PROGRAMS:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                found.append(f"{relative}:{number}: {line.strip()}")
    assert not found, "flags outside basam_deploy/cli/:\n" + "\n".join(found)


def test_every_parameter_the_library_names_is_a_flag():
    """Each `parameter` / `parameter=value` in the library's source turns into a declared flag (and
    a value among its choices), so a renamed option cannot leave a message naming nothing."""
    flags = declared()
    named = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if "cli" not in relative.parts and relative.as_posix() not in MARKDOWN:
            named.update(PARAMETER.findall(path.read_text()))
    assert named, "no parameter named in the library: the pattern no longer matches"
    for name, value in sorted(named):
        if value.startswith("{"):  # an f-string's field, e.g. `{name}`: checked where it is filled
            continue
        text = in_flags(f"`{name}={value}`" if value else f"`{name}`")
        option = text.split()[0]
        assert option in flags, f"`{name}` names {option}, which no command declares"
        choices = [a.choices for a in flags[option].values()]
        if value and text == f"{option} {value}" and all(choices):
            assert any(value in c for c in choices), f"`{name}={value}`: no {option} takes {value}"
    for parameter, option in RENAMED.items():
        assert option in flags, f"RENAMED {parameter} -> {option}, which no command declares"


@pytest.mark.parametrize(
    "message, expected",
    [
        ("`min_size` 250 is above `max_size` 200", "--min-size 250 is above --max-size 200"),
        ("export with `bias=subgraph`", "export with --bias subgraph"),
        ("`kind=cpu` applies to ONNX models only", "--cpu applies to ONNX models only"),
        ("drop `weak_fp16`", "drop --weakly-typed-fp16"),
        ("``min_size`` in a docstring", "``min_size`` in a docstring"),
    ],
)
def test_in_flags(message, expected):
    assert in_flags(message) == expected
    assert flag("max_batch") == "--max-batch"


def test_served_and_generated_models_never_share_a_name():
    """The naming rule (docs/serving.md, docs/triton_repo.md): basam-serve's models take an image
    and return original-size masks; a generated repository's carry SAM's modules' raw tensors
    (a preprocessed image, low-res logits) and are named after them. A client written for one
    contract must never reach the other under the same name and get other tensors silently."""
    from basam_deploy.serving.protocol import SERVED_MODELS
    from basam_deploy.triton_repo import REPO_MODELS

    assert len(set(SERVED_MODELS)) == 2 and len(set(REPO_MODELS)) == 3
    assert set(SERVED_MODELS).isdisjoint(REPO_MODELS)
    # Named after the modules of SAM whose tensors they carry (segment-anything's Sam's parts).
    encoder, decoder, _ = REPO_MODELS
    parts = inspect.signature(Sam.__init__).parameters
    assert {encoder.removeprefix("basam_"), decoder.removeprefix("basam_")} <= set(parts)


@pytest.mark.parametrize(
    "command, writes, not_theirs",
    [
        ("basam-trt triton-repo", "REPO_MODELS", "SERVED_MODELS"),
        ("basam-serve", "SERVED_MODELS", "REPO_MODELS"),
    ],
)
def test_each_help_names_the_models_it_writes_or_serves(command, writes, not_theirs):
    from basam_deploy import triton_repo
    from basam_deploy.serving import protocol

    names = {"REPO_MODELS": triton_repo.REPO_MODELS, "SERVED_MODELS": protocol.SERVED_MODELS}
    (parser,) = [p for c, p in entry_points() if c == command]
    words = set(re.findall(r"\w+", parser.format_help()))
    assert set(names[writes]) <= words
    assert not set(names[not_theirs]) & words


def test_sizes_are_n_or_hxw():
    """``--size`` values (basam-demo, basam-trt compare, bench): N is N x N, HxW height by width."""
    assert parse_size("512") == (512, 512) and parse_size("320x512") == (320, 512)
    with pytest.raises(BasamError, match="not N or HxW"):
        parse_size("12x")
