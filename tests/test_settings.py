"""DATA/config.toml: written by `init`, derived from Config's metadata, every mistake one line and exit 2,
and the settings take effect in the real `run.py serve` process."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest

from dropbox.config import TEST_KDF_MEM, TEST_KDF_OPS, Config, MiB
from dropbox.settings import SettingsError, read_settings, render_settings, settings
from tests.support.server_process import REPO_ROOT, ServerProcess

OPERATOR_FIELDS = {f.name for f in dataclasses.fields(Config) if "section" in f.metadata}


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "run.py", *args], cwd=REPO_ROOT, input=stdin, text=True,
                          capture_output=True, timeout=120, check=False)


def set_values(path: Path, values: dict[str, str]) -> None:
    """Edit the file as an operator does: replace (or uncomment) `key = ...` lines."""
    lines = path.read_text().splitlines()
    for key, value in values.items():
        matches = [i for i, line in enumerate(lines) if line.lstrip("# ").startswith(f"{key} = ")]
        assert len(matches) == 1, key
        lines[matches[0]] = f"{key} = {value}"
    path.write_text("\n".join(lines) + "\n")


def test_init_writes_every_setting_commented_and_the_file_reads_back_as_the_defaults(tmp_path: Path) -> None:
    # Given a fresh folder, when init runs
    data = tmp_path / "data"
    assert run("init", "--data", str(data)).returncode == 0
    # Then config.toml holds every operator setting (set or commented out), each under a doc comment
    path = data / "config.toml"
    text = path.read_text()
    assert path.stat().st_mode & 0o077 == 0
    for name in OPERATOR_FIELDS:
        (line,) = [ln for ln in text.splitlines() if ln.lstrip("# ").startswith(f"{name} = ")]
        above = text.splitlines()[text.splitlines().index(line) - 1]
        assert above.startswith("# "), name
    # and fields without metadata are not settings
    assert "file_chunk_bytes" not in text and "data_dir" not in text
    # and reading it back changes nothing
    changes = read_settings(path)
    assert Config().replace(**changes) == Config()
    assert set(changes) | {s.name for s in settings() if getattr(Config(), s.name) is None} == OPERATOR_FIELDS


def test_a_field_declared_with_metadata_joins_the_file(tmp_path: Path) -> None:
    # The file is derived from the metadata: a setting is in the file iff its field has a section.
    parsed = tomllib.loads(render_settings(Config(organisation_name="X", smtp_host="mail")))
    for s in settings():
        field = next(f for f in dataclasses.fields(Config) if f.name == s.name)
        assert s.section == field.metadata["section"] and s.doc == field.metadata["doc"]
        if getattr(Config(), s.name) is not None or s.name in ("organisation_name", "smtp_host"):
            assert s.name in parsed[s.section], s.name


def test_every_number_an_operator_may_set_has_its_bounds() -> None:
    # "a value out of range stops the command" (docs/OPERATIONS.md) needs a range for every number:
    # without one, max_uploads_in_flight = -5 would refuse every upload without a word
    unbounded = [s.name for s in settings() if s.kind in (int, float) and (s.minimum is None or s.maximum is None)]
    assert unbounded == []


@pytest.mark.parametrize(("content", "expected"), [
    ("[uploads]\nmax_file_bytes = \"big\"\n", "[uploads] max_file_bytes: expected an integer, got \"big\""),
    ("[uploads]\nmax_files_per_submission = 0\n", "[uploads] max_files_per_submission: 0 is below the minimum 1"),
    ("[network]\nport = 70000\n", "[network] port: 70000 is above the maximum 65535"),
    ("[uploads]\nmax_uploads_in_flight = -5\n", "[uploads] max_uploads_in_flight: -5 is below the minimum 1"),
    # No channel keeps a closed report longer than 3650 days (the dk profile's ceiling): more would
    # be cut to 3650 without a word
    ("[retention]\ndefault_retention_days = 5000\n",
     "[retention] default_retention_days: 5000 is above the maximum 3650"),
    ("[organisation]\ndefault_language = \"de\"\n", "default_language: \"de\" is not one of \"en\", \"da\", \"sv\""),
    ("[uploads]\nmax_filez = 3\n", "[uploads] unknown key 'max_filez'"),
    ("[upload]\nmax_file_bytes = 3\n", "unknown section [upload]"),
    ("[smtp]\nsmtp_host = 'x'\nsmtp_security = 'none'\nsmtp_user = 'u'\nsmtp_password_file = '/etc/hostname'\n",
     "needs smtp_security"),
    ("[uploads\n", "not valid TOML"),
    ("[throttle]\nslowdown_seconds = true\n", "slowdown_seconds: expected a number, got true"),
])
def test_each_mistake_gives_its_line_and_exit_2(tmp_path: Path, content: str, expected: str) -> None:
    # Given an install and a settings file with one mistake
    data = tmp_path / "data"
    assert run("init", "--data", str(data)).returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text(content)
    # When a command starts with it (serve and a provisioning command alike)
    for args in (("serve", "--no-tor"), ("caseworker", "list")):
        done = run(*args, "--data", str(data), "--config", str(bad))
        # Then it stops with exit 2 and one line naming the file and the mistake, no traceback
        assert done.returncode == 2, done
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and str(bad) in lines[0], done.stderr
        assert "Traceback" not in done.stderr


def test_several_mistakes_give_one_line_each(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[uploads]\nmax_file_bytes = 'x'\nnope = 1\n[kdf]\nkdf_concurrency = 0\n")
    with pytest.raises(SettingsError) as caught:
        read_settings(bad)
    assert len(caught.value.problems) == 3


def test_a_missing_config_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = run("caseworker", "list", "--data", str(tmp_path), "--config", str(tmp_path / "none.toml"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "no such file" in done.stderr


def test_organisation_and_upload_limit_take_effect_in_the_served_pages(tmp_path: Path) -> None:
    # Given an install whose config.toml names the organisation and a 7 MiB upload limit
    data = tmp_path / "data"
    assert run("init", "--data", str(data)).returncode == 0
    set_values(data / "config.toml", {
        "organisation_name": '"Ministry of Testing Æøå"', "max_submission_bytes": str(7 * MiB),
        "max_file_bytes": str(7 * MiB), "kdf_ops": str(TEST_KDF_OPS), "kdf_mem": str(TEST_KDF_MEM),
        "default_language": '"da"',
    })
    # When the operator's own `run.py serve` runs on it
    server = ServerProcess(data_dir=data, log_path=tmp_path / "log", launcher="cli")
    server.start()
    try:
        with urllib.request.urlopen(server.url + "/", timeout=30) as answer:  # noqa: S310
            landing = answer.read().decode()
            assert answer.url.endswith("/da/")  # the default language
        with urllib.request.urlopen(server.url + "/en/submit", timeout=30) as answer:  # noqa: S310
            form = answer.read().decode()
    finally:
        server.stop()
    # Then the landing page names the organisation and the form states the limit
    assert "Ministry of Testing Æøå" in landing
    assert "7\u00a0MB" in form


def test_a_list_setting_added_by_metadata_renders_and_validates(tmp_path: Path) -> None:
    # A field another branch may add: tuple[str, ...] with choices. The file must stay valid TOML.
    @dataclasses.dataclass(frozen=True)
    class Extended(Config):
        languages: tuple[str, ...] = dataclasses.field(default=("en", "da"), metadata={
            "section": "organisation", "doc": "Languages offered.", "choices": ("en", "da", "sv")})

    text = render_settings(Extended())
    assert tomllib.loads(text)["organisation"]["languages"] == ["en", "da"]
    path = tmp_path / "c.toml"
    path.write_text('[organisation]\nlanguages = ["sv"]\n')
    assert read_settings(path, cls=Extended) == {"languages": ("sv",)}
    path.write_text('[organisation]\nlanguages = ["de"]\n')
    with pytest.raises(SettingsError, match="not one of"):
        read_settings(path, cls=Extended)
    path.write_text('[organisation]\nlanguages = "en"\n')
    with pytest.raises(SettingsError, match="expected a list"):
        read_settings(path, cls=Extended)
