"""The Dockerfiles under images/ follow the rules in images/README.md.

No Docker engine exists where these tests run, so the images are not built:
each Dockerfile is parsed (a small parser below; ``dockerfile-parse`` is not a
dependency) and its instructions are checked as data.
"""

import json
import re
from pathlib import Path

import pytest

IMAGES = Path(__file__).resolve().parents[2] / "images"

# Pinned tags: a docker-stacks build date or commit (optionally CUDA-prefixed),
# or a full release version. Moving tags like "python-3.13" or "5" do not match.
DOCKER_STACKS_TAG = re.compile(r"^(cuda\d*-)?(\d{4}-\d{2}-\d{2}|[0-9a-f]{12})$")
RELEASE_TAG = re.compile(r"^\d+\.\d+\.\d+$")


def parse_dockerfile(text):
    """Return the Dockerfile's instructions as (KEYWORD, arguments) pairs.

    Joins backslash continuations, drops comment and empty lines (also inside
    a continuation, as Docker does) and substitutes ARG defaults declared before
    the first FROM into FROM lines.
    """
    instructions = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        logical = (pending + stripped).strip()
        pending = ""
        if logical:
            keyword, _, arguments = logical.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    if pending.strip():
        raise ValueError("Dockerfile ends inside a line continuation")

    global_args = {}
    resolved = []
    seen_from = False
    for keyword, arguments in instructions:
        if keyword == "ARG" and not seen_from:
            name, _, value = arguments.partition("=")
            global_args[name] = value.strip('"')
        if keyword == "FROM":
            seen_from = True
            arguments = re.sub(
                r"\$\{(\w+)\}|\$(\w+)",
                lambda m: global_args.get(m.group(1) or m.group(2), ""),
                arguments,
            )
        resolved.append((keyword, arguments))
    return resolved


def split_image(reference):
    """Split 'registry/repo:tag' (a digest is not used here) into (repo, tag)."""
    name, _, tag = reference.rpartition(":")
    if "/" in tag or not name:
        return reference, ""
    return name, tag


def load(image):
    return parse_dockerfile((IMAGES / image / "Dockerfile").read_text())


def values(instructions, keyword):
    return [arguments for k, arguments in instructions if k == keyword]


def base_image(instructions):
    (from_line,) = values(instructions, "FROM")
    return split_image(from_line.split()[0])


def exec_form(arguments):
    """Parse the JSON (exec) form of CMD/ENTRYPOINT; shell form is not allowed."""
    return json.loads(arguments)


def test_parser_joins_continuations_and_skips_comments():
    text = (
        "# syntax=docker/dockerfile:1\n"
        "ARG BASE=quay.io/jupyter/base-notebook:2026-08-24\n"
        "FROM ${BASE} AS build\n"
        "RUN a && \\\n"
        "    # a comment inside the continuation\n"
        "\n"
        "    b \\\n"
        "    c\n"
        "\n"
        'CMD ["x", "y"]\n'
    )
    assert parse_dockerfile(text) == [
        ("ARG", "BASE=quay.io/jupyter/base-notebook:2026-08-24"),
        ("FROM", "quay.io/jupyter/base-notebook:2026-08-24 AS build"),
        ("RUN", "a && b c"),
        ("CMD", '["x", "y"]'),
    ]


def test_parser_rejects_a_dangling_continuation():
    with pytest.raises(ValueError, match="continuation"):
        parse_dockerfile("FROM x:1.0.0\nRUN a \\\n")


@pytest.mark.parametrize(
    "reference, expected",
    [
        ("quay.io/jupyter/scipy-notebook:2026-08-24",
         ("quay.io/jupyter/scipy-notebook", "2026-08-24")),
        ("localhost:5000/img", ("localhost:5000/img", "")),
        ("img", ("img", "")),
    ],
)
def test_split_image(reference, expected):
    assert split_image(reference) == expected


@pytest.mark.parametrize(
    "image, repositories",
    [
        ("base", {"quay.io/jupyter/scipy-notebook", "quay.io/jupyter/base-notebook"}),
        ("gpu", {"quay.io/jupyter/pytorch-notebook"}),
    ],
)
def test_single_user_images_build_on_pinned_docker_stacks(image, repositories):
    repository, tag = base_image(load(image))
    assert repository in repositories
    assert DOCKER_STACKS_TAG.match(tag), f"{image}: base tag {tag!r} is not pinned"


def test_gpu_image_uses_a_cuda_variant():
    _, tag = base_image(load("gpu"))
    assert tag.startswith("cuda")


def test_hub_image_builds_on_a_pinned_jupyterhub_release():
    repository, tag = base_image(load("hub"))
    assert repository == "quay.io/jupyterhub/jupyterhub"
    assert RELEASE_TAG.match(tag), f"hub: base tag {tag!r} is not a pinned release"
    assert tag.startswith("6."), "the hub image must match the jupyterhub>=6.1,<7 requirement"


@pytest.mark.parametrize("image", ["base", "gpu", "hub"])
def test_no_image_builds_on_latest(image):
    _, tag = base_image(load(image))
    assert tag and "latest" not in tag


@pytest.mark.parametrize("image", ["base", "gpu", "hub"])
def test_the_himalia_wheel_is_copied_and_pip_installed(image):
    # dist/ holds the himalia wheel, and for builds without an index its dependencies too.
    instructions = load(image)
    assert any("dist/" in arguments and ".whl" in arguments
               for arguments in values(instructions, "COPY"))
    installs = [run for run in values(instructions, "RUN") if "pip install" in run]
    assert any("himalia-" in run and ".whl" in run for run in installs)


def test_gpu_image_installs_the_gpu_extra():
    installs = [run for run in values(load("gpu"), "RUN") if "pip install" in run]
    assert any(re.search(r"\[[^\]]*\bgpu\b[^\]]*\]", run) for run in installs)


@pytest.mark.parametrize("image", ["base", "gpu"])
def test_single_user_images_install_the_data_science_stack(image):
    installs = [run for run in values(load(image), "RUN") if "pip install" in run]
    assert any(re.search(r"\[[^\]]*\bstack\b[^\]]*\]", run) for run in installs)


def test_hub_image_installs_the_spawner_backends_and_the_proxy():
    runs = values(load("hub"), "RUN")
    assert any(re.search(r"\[[^\]]*docker[^\]]*\]", run) and "k8s" in run for run in runs)
    from himalia.hub.proxy import CHP_VERSION

    # The exact version the platform runs (hub/himalia/hub/chp/package-lock.json), as on a machine.
    assert any(re.search(rf"npm install .*configurable-http-proxy@{re.escape(CHP_VERSION)}\b", run)
               for run in runs)


@pytest.mark.parametrize(
    "image, command",
    [
        ("base", ["jupyterhub-singleuser"]),
        ("gpu", ["jupyterhub-singleuser"]),
        ("hub", ["himalia", "up", "--ip", "0.0.0.0"]),
    ],
)
def test_image_command(image, command):
    instructions = load(image)
    (cmd,) = values(instructions, "CMD")
    assert exec_form(cmd) == command
    # each image keeps its base's entrypoint (tini in docker-stacks)
    assert values(instructions, "ENTRYPOINT") == []


def test_single_user_images_prepare_the_volume_mount_point():
    for image in ("base", "gpu"):
        runs = values(load(image), "RUN")
        assert any('mkdir -p "/home/${NB_USER}/work"' in run for run in runs), image


@pytest.mark.parametrize("image", ["base", "gpu", "hub"])
def test_every_image_takes_a_base_and_can_install_without_an_index(image):
    instructions = load(image)
    args = [a.split("=")[0] for a in values(instructions, "ARG")]
    assert "BASE_IMAGE" in args
    assert {"PIP_NO_INDEX", "PIP_FIND_LINKS"} <= set(args)  # images/build.sh --local-base
