"""docs/generate_config_reference.py turns traitlets into the configuration reference."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from traitlets import Bool, CaselessStrEnum, Dict, Integer, List, Unicode, default
from traitlets.config import Configurable

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "generate_config_reference.py"


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_config_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = load_generator()


class UpstreamBase(Configurable):
    """Stands in for a JupyterHub class: its settings are documented upstream."""

    __module__ = "upstream.project"
    upstream_setting = Unicode("x", config=True, help="Not ours.")


class TimeoutMixin(Configurable):
    """A mixin defined alongside the documented class."""

    timeout = Integer(30, config=True, help="Seconds to wait for the server.")


class SmallConfig(TimeoutMixin, UpstreamBase):
    """Settings of a small test component.

    Only the first paragraph of this docstring appears in the reference.
    """

    greeting = Unicode(
        "hello",
        config=True,
        help="""Text shown on the welcome page.

        Second paragraph of the help.
        """,
    )
    colour = CaselessStrEnum(["red", "blue"], default_value="red", config=True, help="Colour.")
    tags = List(Dict(), config=True, help="Extra tags.")
    verbose = Bool(config=True, help="Log more.")
    internal_counter = Integer(0, help="Not configurable, so not documented.")

    @default("verbose")
    def _default_verbose(self):
        return True


def generate(tmp_path, *extra_args):
    output = tmp_path / "reference" / "config.md"
    status = gen.main(
        [f"{__name__}.SmallConfig", *extra_args, "--output", str(output), "--package", __name__]
    )
    return status, output


def test_reference_lists_help_text_and_defaults(tmp_path):
    status, output = generate(tmp_path)
    assert status == 0
    text = output.read_text()
    assert "## SmallConfig" in text
    assert "Settings of a small test component." in text
    assert "Only the first paragraph" not in text
    assert "### `c.SmallConfig.greeting`" in text
    assert "- default: `'hello'`" in text
    assert "Text shown on the welcome page.\n\nSecond paragraph of the help." in text
    assert "- one of: `red`, `blue`" in text
    assert "- type: `List(Dict)`" in text


def test_reference_includes_mixin_traits_and_says_where_they_are_defined(tmp_path):
    _, output = generate(tmp_path)
    text = output.read_text()
    assert "### `c.SmallConfig.timeout`" in text
    assert "- default: `30`" in text
    assert f"- defined by `{__name__}.TimeoutMixin`" in text


def test_reference_skips_foreign_and_non_config_traits(tmp_path):
    _, output = generate(tmp_path)
    text = output.read_text()
    assert "internal_counter" not in text
    assert "upstream_setting" not in text
    # Configurable's own traits (config, parent, log) are not settings
    assert "c.SmallConfig.config" not in text


def test_dynamic_defaults_are_described_not_guessed(tmp_path):
    _, output = generate(tmp_path)
    section = output.read_text().split("### `c.SmallConfig.verbose`")[1]
    assert section.splitlines()[3].startswith("- default: computed when the object is created")


def test_a_class_that_fails_to_import_is_a_one_line_note(tmp_path):
    status, output = generate(tmp_path, "himalia.no_such_module.Missing")
    assert status == 0
    notes = [line for line in output.read_text().splitlines() if "no_such_module" in line]
    assert len(notes) == 1
    assert notes[0].startswith("> `himalia.no_such_module.Missing` is not documented here")
    assert "## SmallConfig" in output.read_text()


def test_check_passes_when_fresh_and_fails_when_stale(tmp_path, capsys):
    _, output = generate(tmp_path)
    assert generate(tmp_path, "--check")[0] == 0
    output.write_text(output.read_text().replace("hello", "bye"))
    assert generate(tmp_path, "--check")[0] == 1
    assert "out of date" in capsys.readouterr().err


def test_check_fails_when_the_file_is_missing(tmp_path):
    assert generate(tmp_path, "--check")[0] == 1


@pytest.mark.parametrize("name", gen.DEFAULT_CLASSES)
def test_default_classes_are_himalia_classes(name):
    assert name.startswith(("himalia.hub.", "himalia.extension."))


def test_committed_config_reference_is_current():
    """A trait changed without regenerating docs/reference/config.md fails here."""
    # The reference documents the Docker and Kubernetes spawners: the `test` extra installs
    # them, so a missing one is a failure here, never a skip.
    import dockerspawner  # noqa: F401
    import kubespawner  # noqa: F401

    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
