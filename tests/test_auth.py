"""The optional password gate: the hash, the CLI that makes one, and every page behind it."""

from pathlib import Path

import pytest
from click.testing import CliRunner
from streamlit.testing.v1 import AppTest

from devmode import auth
from devmode.cli import cli
from tests.conftest import ROOT

PAGES = ["app.py", *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("pages/*.py"))]
PASSWORD = "correct horse battery"
# few iterations: the gate reads them from the hash, and tests need not wait 0.5 s a check
FAST_HASH = auth.hash_password(PASSWORD, iterations=1000)


def test_a_hash_verifies_its_password_only():
    encoded = auth.hash_password(PASSWORD)
    assert encoded.startswith("pbkdf2_sha256$600000$") and PASSWORD not in encoded
    assert auth.verify_password(PASSWORD, encoded)
    assert not auth.verify_password(PASSWORD + "!", encoded)
    assert auth.hash_password(PASSWORD) != encoded  # a fresh salt each time


@pytest.mark.parametrize(
    "broken", ["plain-text-password", "md5$1$abc$def", "pbkdf2_sha256$x$!!$??"]
)
def test_a_malformed_hash_says_how_to_make_one(broken):
    with pytest.raises(auth.InvalidPasswordHash, match="python -m devmode hash-password"):
        auth.verify_password(PASSWORD, broken)


def test_the_cli_prints_a_hash_and_refuses_short_passwords():
    result = CliRunner().invoke(cli, ["hash-password"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    encoded = result.output.strip().splitlines()[-1]
    assert auth.verify_password(PASSWORD, encoded)
    short = CliRunner().invoke(cli, ["hash-password", "--password", "short"])
    assert short.exit_code == 1 and "at least 8 characters" in short.output


def test_the_password_can_come_from_standard_input():
    """The secret off the command line (and out of the shell's history), for scripts."""
    piped = CliRunner().invoke(cli, ["hash-password", "--password-stdin"], input=f"{PASSWORD}\n")
    assert piped.exit_code == 0, piped.output
    assert auth.verify_password(PASSWORD, piped.output.strip()) and PASSWORD not in piped.output
    both = CliRunner().invoke(
        cli, ["hash-password", "--password", PASSWORD, "--password-stdin"], input="x\n"
    )
    assert both.exit_code == 1 and "one way" in both.output
    helped = " ".join(CliRunner().invoke(cli, ["hash-password", "--help"]).output.split())
    assert "shell's history" in helped and "never appears on a command line" in helped


@pytest.fixture
def gated(db_path, monkeypatch):
    monkeypatch.setenv("DEVMODE_DB", db_path)
    monkeypatch.setenv(auth.PASSWORD_HASH_ENV, FAST_HASH)
    return db_path


@pytest.mark.parametrize("script", PAGES)
def test_every_page_is_behind_the_password(gated, script):
    at = AppTest.from_file(str(ROOT / script), default_timeout=60).run()
    assert not at.exception
    assert [t.value for t in at.title] == ["devmode"] and len(at.text_input) == 1
    assert not at.tabs and not at.metric  # nothing of the page itself


def test_signing_in_opens_the_pages_and_a_wrong_password_does_not(gated):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.text_input(key="auth_password").set_value("guess")
    at.button[0].click().run()
    assert at.error[0].value == "Wrong password." and not at.metric
    at.text_input(key="auth_password").set_value(PASSWORD)
    at.button[0].click().run()
    assert not at.exception and [m.label for m in at.metric][0] == "Datasets"
    at.button(key="auth_sign_out").click().run()
    assert not at.metric and len(at.text_input) == 1
    assert PASSWORD.encode() not in Path(gated).read_bytes()


def test_without_a_hash_there_is_no_gate(db_path, monkeypatch):
    monkeypatch.setenv("DEVMODE_DB", db_path)
    monkeypatch.delenv(auth.PASSWORD_HASH_ENV, raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert at.metric and not at.text_input


def test_logout_in_the_address_signs_out_even_the_wall(gated):
    """The wall has no sidebar, so no Sign out button: ?logout=1 on any address signs out."""
    at = AppTest.from_file(str(ROOT / "pages" / "3_Monitor.py"), default_timeout=60)
    at.query_params["kiosk"] = "1"
    at.run()
    at.text_input(key="auth_password").set_value(PASSWORD)
    at.button[0].click().run()
    assert not at.exception and not at.text_input  # the wall, signed in
    at.query_params["logout"] = "1"
    at.run()
    assert [t.value for t in at.title] == ["devmode"] and len(at.text_input) == 1
    assert "logout" not in at.query_params and at.query_params["kiosk"] == "1"
