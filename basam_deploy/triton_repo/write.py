"""Writing a planned repository: configs checked, files copied and checksummed, README and
manifest written, all in a staging folder renamed into place."""

import shutil
import warnings
from pathlib import Path
from typing import Union

from ..artifacts import MANIFEST, check_output_folder, sha256, staged_folder, write_json
from ..errors import BasamError, BasamWarning
from .checks import check_ensemble, check_parsed, model_config_schema, parse_model_config
from .config import model_config_text
from .manifest import RepoFile, RepoManifest, repo_manifest
from .model import TOOL, RepoPlan
from .readme import repo_readme


def _check_destination(plan: RepoPlan, output: Path, force: bool) -> None:
    source, target = plan.source.resolve(), output.resolve()
    if target == source or target in source.parents:
        raise BasamError(f"`output` {output} would replace the source folder: choose another")
    if output.exists() and not (output.is_dir() and not any(output.iterdir())):
        if not force:
            raise BasamError(
                f"output {output} already exists: pass `force` to replace it, or choose another "
                f"`output`"
            )
        # ``force`` replaces an earlier repository of this tool, never someone else's folder.
        check_output_folder(output, TOOL)


def write_triton_repo(
    plan: RepoPlan,
    output: Union[str, Path],
    *,
    force: bool = False,
) -> RepoManifest:
    """Write the repository atomically; returns its manifest.

    Every config is parsed with Triton's ModelConfig schema and compared with the plan before any
    file is copied, and the written files are parsed again before the folder is renamed into place.
    Without tritonclient the schema check is skipped with a BasamWarning (the manifest says so)."""
    output = Path(output)
    _check_destination(plan, output, force)
    schema = model_config_schema()
    if schema is None:
        warnings.warn(
            "tritonclient is not installed: the configs were not checked against Triton's "
            "ModelConfig schema (pip install 'tritonclient[grpc]')",
            BasamWarning,
            stacklevel=2,
        )
    texts = {m.name: model_config_text(m) for m in plan.models}
    if schema:
        for model in plan.models:
            check_parsed(parse_model_config(texts[model.name], model.name), model)
    check_ensemble(plan.models[2], plan.models)
    with staged_folder(output) as staging:
        for model in plan.models:
            version = staging / model.name / "1"
            version.mkdir(parents=True)  # an ensemble needs an (empty) version folder too
            config = staging / model.name / "config.pbtxt"
            config.write_text(texts[model.name])
            for source, relative in model.files:
                target = version / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
            if schema:
                check_parsed(parse_model_config(config.read_text(), str(config)), model)
        (staging / "README.md").write_text(repo_readme(plan))
        files = {
            path.relative_to(staging).as_posix(): RepoFile(sha256(path), path.stat().st_size)
            for path in sorted(staging.rglob("*"))
            if path.is_file()
        }
        for model in plan.models:  # a copy that differs from its source must not land
            for source, relative in model.files:
                entry = files[f"{model.name}/1/{relative}"]
                expected = next(
                    (g.sha256 for g in plan.graphs if g.file == source), None
                ) or sha256(source)
                if entry.sha256 != expected:
                    raise BasamError(f"copying {source} to {relative} changed it: write again")
        manifest = repo_manifest(plan, files, schema_checked=schema is not None)
        write_json(staging / MANIFEST, manifest.to_json())
    return manifest
