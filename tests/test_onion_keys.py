"""Onion keys, address derivation, client-auth keys, file modes and the `onion` CLI, without tor.

Fixed vectors come from RFC 8032 (ed25519) and tor's own unit tests (test_hs_common.c), so the
address derivation is checked against tor's definition, not against itself; test_onion_tor.py
checks it against a running tor as well.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import re
import stat
from pathlib import Path
from typing import NoReturn

import nacl.public
import nacl.signing
import pytest

from dropbox.config import Config, config_for_tests
from dropbox.install import init_install
from onion.cli import EXIT_FAILED, EXIT_MISUSE, EXIT_OK, add_onion_commands, run_onion_command
from onion.controller import ControlAddress, private_tor_options
from onion.errors import ClientExists, ClientNameInvalid, ClientNotFound, KeyFileError
from onion.keys import (
    CASEWORKER,
    SERVICES,
    WHISTLEBLOWER,
    AuthorizedClient,
    ServiceKey,
    add_client,
    clients_dir,
    ensure_service_keys,
    expand_seed,
    list_clients,
    onion_address,
    public_key_from_address,
    remove_client,
    rotate_service_key,
    service_dir,
)
from onion.protocol import MAX_STREAMS_PER_CIRCUIT, add_onion_command, onion_target, torrc_services_have_pow
from onion.support import client_auth_support, pow_support

# RFC 8032 section 7.1, test 1.
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
# tor's test_hs_common.c, test_build_address, for that public key.
TOR_ADDRESS = "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenl5sid.onion"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """An install (the onion commands refuse a folder without one)."""
    config = config_for_tests(tmp_path / "data")
    asyncio.run(init_install(config))
    return config


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- address derivation ---------------------------------------------------------------------


def test_address_of_rfc8032_key_is_the_one_in_tors_tests() -> None:
    assert onion_address(RFC8032_PUBLIC) == TOR_ADDRESS


def test_expanded_key_has_the_same_public_key_as_its_seed() -> None:
    # Given RFC 8032's seed, expanded the way tor stores it
    key = ServiceKey.from_expanded(expand_seed(RFC8032_SEED))
    # Then scalar * B gives RFC 8032's public key, and PyNaCl agrees
    assert key.public_key == RFC8032_PUBLIC
    assert bytes(nacl.signing.SigningKey(RFC8032_SEED).verify_key) == RFC8032_PUBLIC
    assert key.address == TOR_ADDRESS
    assert key.service_id == TOR_ADDRESS.removesuffix(".onion")


def test_add_onion_key_is_base64_of_the_64_byte_expanded_key() -> None:
    key = ServiceKey.generate()
    kind, blob = key.add_onion_key().split(":", 1)
    assert kind == "ED25519-V3"
    assert base64.b64decode(blob) == key.expanded_secret
    assert len(key.expanded_secret) == 64


def test_repr_leaves_the_secret_out() -> None:
    key = ServiceKey.generate()
    assert key.expanded_secret.hex() not in repr(key)
    assert "expanded_secret" not in repr(key)


def test_address_round_trips_and_rejects_damage() -> None:
    assert public_key_from_address(TOR_ADDRESS) == RFC8032_PUBLIC
    assert public_key_from_address(TOR_ADDRESS.upper().removesuffix(".ONION")) == RFC8032_PUBLIC
    flipped = ("a" if TOR_ADDRESS[0] != "a" else "b") + TOR_ADDRESS[1:]
    for bad in (flipped, TOR_ADDRESS[:-10] + ".onion", "1" * 56 + ".onion", ""):
        with pytest.raises(ValueError):
            public_key_from_address(bad)


def test_from_expanded_rejects_what_is_not_a_tor_key() -> None:
    for bad in (b"\0" * 64, b"\xff" * 64, expand_seed(RFC8032_SEED)[:63]):
        with pytest.raises(ValueError):
            ServiceKey.from_expanded(bad)


# -- service key files ----------------------------------------------------------------------


def test_keys_are_generated_once_as_private_files_in_tors_layout(config: Config) -> None:
    # When keys are ensured on a fresh install
    first = ensure_service_keys(config)
    # Then each service has a HiddenServiceDir-style folder, 0700, with 0600 files
    assert mode(config.keys_dir) == 0o700
    for service in SERVICES:
        folder = service_dir(config, service)
        assert mode(folder) == 0o700
        secret = (folder / "hs_ed25519_secret_key").read_bytes()
        assert secret[:32] == b"== ed25519v1-secret: type0 ==\0\0\0"
        assert secret[32:] == first[service].expanded_secret
        public = (folder / "hs_ed25519_public_key").read_bytes()
        assert public == b"== ed25519v1-public: type0 ==\0\0\0" + first[service].public_key
        assert (folder / "hostname").read_text() == first[service].address + "\n"
        for path in folder.iterdir():
            assert mode(path) == 0o600, path
    # and asking again gives the same keys (the addresses are stable)
    assert ensure_service_keys(config) == first
    assert first[WHISTLEBLOWER].address != first[CASEWORKER].address
    # and no temporary files are left behind
    assert not list(config.keys_dir.rglob(".*"))


def test_a_broken_secret_key_is_reported_not_replaced(config: Config) -> None:
    ensure_service_keys(config)
    path = service_dir(config, WHISTLEBLOWER) / "hs_ed25519_secret_key"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(KeyFileError, match="not a tor ed25519 secret key file"):
        ensure_service_keys(config)
    assert len(path.read_bytes()) == 50  # untouched: replacing it would change the address


def test_derived_files_are_repaired_from_the_secret_key(config: Config) -> None:
    keys = ensure_service_keys(config)
    folder = service_dir(config, CASEWORKER)
    (folder / "hostname").write_text("somebody-else.onion\n")
    (folder / "hs_ed25519_public_key").unlink()
    assert ensure_service_keys(config) == keys
    assert (folder / "hostname").read_text() == keys[CASEWORKER].address + "\n"
    assert (folder / "hs_ed25519_public_key").exists()


def test_wide_permissions_are_narrowed(config: Config) -> None:
    ensure_service_keys(config)
    folder = service_dir(config, WHISTLEBLOWER)
    folder.chmod(0o755)
    (folder / "hs_ed25519_secret_key").chmod(0o644)
    ensure_service_keys(config)
    assert mode(folder / "hs_ed25519_secret_key") == 0o600


def test_a_key_copied_from_a_hidden_service_dir_is_used_as_is(config: Config) -> None:
    # Given a HiddenServiceDir tor made (here: its secret key file for RFC 8032's key)
    folder = service_dir(config, WHISTLEBLOWER)
    folder.mkdir(parents=True, mode=0o700)
    (folder / "hs_ed25519_secret_key").write_bytes(
        b"== ed25519v1-secret: type0 ==\0\0\0" + expand_seed(RFC8032_SEED))
    # Then the install keeps that address
    assert ensure_service_keys(config)[WHISTLEBLOWER].address == TOR_ADDRESS


def test_rotation_changes_only_the_public_address(config: Config) -> None:
    before = ensure_service_keys(config)
    rotated = rotate_service_key(config, service=WHISTLEBLOWER)
    after = ensure_service_keys(config)
    assert rotated.address != before[WHISTLEBLOWER].address
    assert after[WHISTLEBLOWER] == rotated
    assert after[CASEWORKER] == before[CASEWORKER]
    assert (service_dir(config, WHISTLEBLOWER) / "hostname").read_text() == rotated.address + "\n"
    assert mode(service_dir(config, WHISTLEBLOWER) / "hs_ed25519_secret_key") == 0o600


# -- client authorization -------------------------------------------------------------------


def test_add_client_stores_only_the_public_key(config: Config) -> None:
    # When a caseworker device is authorized
    new = add_client(config, name="laptop")
    # Then its .auth file holds tor's format with the public key, mode 0600
    path = clients_dir(config) / "laptop.auth"
    public_b32 = base64.b32encode(new.client.public_key).decode().rstrip("=")
    assert path.read_text() == f"descriptor:x25519:{public_b32}\n"
    assert mode(path) == 0o600
    assert mode(clients_dir(config)) == 0o700
    # and the key pair is a real x25519 pair
    assert bytes(nacl.public.PrivateKey(new.private_key).public_key) == new.client.public_key
    # and the private key is nowhere on disk, in any spelling
    private_spellings = [
        new.private_key,
        base64.b32encode(new.private_key).rstrip(b"="),
        base64.b64encode(new.private_key),
    ]
    for file in config.data_dir.rglob("*"):
        if file.is_file():
            content = file.read_bytes()
            assert not any(spelling in content for spelling in private_spellings), file


def test_auth_private_line_is_what_tor_browser_takes(config: Config) -> None:
    new = add_client(config, name="phone")
    address = ensure_service_keys(config)[CASEWORKER].address
    line = new.auth_private_line(address)
    service_id, kind, key_type, key = line.split(":")
    assert service_id == address.removesuffix(".onion") and len(service_id) == 56
    assert (kind, key_type) == ("descriptor", "x25519")
    assert re.fullmatch(r"[A-Z2-7]{52}", key)  # base32, no padding
    assert base64.b32decode(key + "====") == new.private_key
    assert new.onion_client_auth_add_key() == "x25519:" + base64.b64encode(
        new.private_key).decode()
    assert new.private_key.hex() not in repr(new)


def test_clients_are_listed_by_name_and_removed(config: Config) -> None:
    add_client(config, name="zed")
    add_client(config, name="amy")
    assert [client.name for client in list_clients(config)] == ["amy", "zed"]
    remove_client(config, name="zed")
    assert [client.name for client in list_clients(config)] == ["amy"]
    assert list_clients(config)[0] == AuthorizedClient(
        name="amy", public_key=list_clients(config)[0].public_key)


@pytest.mark.parametrize("name", ["", "a b", "../etc", "x/y", "é", "a" * 33, "x.auth"])
def test_client_names_that_could_not_be_file_names_are_refused(config: Config, name: str) -> None:
    with pytest.raises(ClientNameInvalid):
        add_client(config, name=name)
    assert not clients_dir(config).exists() or not any(clients_dir(config).iterdir())


def test_duplicate_and_unknown_clients_are_refused(config: Config) -> None:
    first = add_client(config, name="laptop")
    with pytest.raises(ClientExists):
        add_client(config, name="laptop")
    assert list_clients(config)[0].public_key == first.client.public_key  # not overwritten
    with pytest.raises(ClientNotFound):
        remove_client(config, name="nobody")


def test_a_malformed_auth_file_is_an_error_not_skipped(config: Config) -> None:
    add_client(config, name="laptop")
    (clients_dir(config) / "typo.auth").write_text("descriptor:x25519:NOT-BASE32\n")
    with pytest.raises(KeyFileError, match="typo.auth"):
        list_clients(config)


# -- ADD_ONION, targets, control addresses, versions ----------------------------------------


def test_add_onion_command_carries_every_client_and_pow() -> None:
    key = ServiceKey.from_expanded(expand_seed(RFC8032_SEED))
    clients = [AuthorizedClient(name=n, public_key=bytes([i]) * 32) for i, n in enumerate("ab")]
    command = add_onion_command(key, target="127.0.0.1:8081", clients=clients, pow_on=True)
    assert command.startswith(f"ADD_ONION {key.add_onion_key()} Flags=DiscardPK,MaxStreamsCloseCircuit,V3Auth ")
    assert "PoWDefensesEnabled=1" in command
    assert "Port=80,127.0.0.1:8081" in command
    assert command.count("ClientAuthV3=") == 2
    public = add_onion_command(key, target="127.0.0.1:8080", pow_on=False)
    assert "V3Auth" not in public and "ClientAuthV3" not in public and "PoW" not in public
    # Both onions cap the streams of one circuit and close a circuit that asks for more
    for line in (command, public):
        assert f" MaxStreams={MAX_STREAMS_PER_CIRCUIT} " in line and "MaxStreamsCloseCircuit" in line


def test_pow_from_torrc_counts_every_hidden_service_dir() -> None:
    both = ["HiddenServiceDir=/a", "HiddenServicePort=80 127.0.0.1:8080",
            "HiddenServicePoWDefensesEnabled=1", "HiddenServiceDir=/b",
            "HiddenServicePoWDefensesEnabled=1"]
    assert torrc_services_have_pow(both)
    assert not torrc_services_have_pow(both[:-1])  # /b without it
    assert not torrc_services_have_pow([])


def test_onion_target_never_points_at_a_wildcard() -> None:
    assert onion_target("127.0.0.1", 8080) == "127.0.0.1:8080"
    assert onion_target("0.0.0.0", 8080) == "127.0.0.1:8080"  # noqa: S104
    assert onion_target("::1", 8081) == "[::1]:8081"


def test_control_addresses() -> None:
    assert ControlAddress.parse("/run/tor/control").socket_path == Path("/run/tor/control")
    assert ControlAddress.parse("unix:/run/tor/control").socket_path == Path("/run/tor/control")
    assert ControlAddress.parse("9051") == ControlAddress(host="127.0.0.1", port=9051)
    assert ControlAddress.parse("127.0.0.1:9151") == ControlAddress(host="127.0.0.1", port=9151)
    for bad in ("", "tor", "127.0.0.1:0", "127.0.0.1:99999", "relative/path"):
        with pytest.raises(ValueError):
            ControlAddress.parse(bad)


def test_private_tor_uses_a_socket_unless_the_path_is_too_long(tmp_path: Path) -> None:
    options = private_tor_options(tmp_path / "tor", {"SocksPort": "0", "DirAuthority": ["a", "b"]})
    assert options["ControlSocket"] == str(tmp_path / "tor" / "control.sock")
    assert options["CookieAuthentication"] == "1"
    assert options["SocksPort"] == "0"
    assert options["DirAuthority"] == ["a", "b"]
    long_dir = tmp_path / ("x" * 120)
    options = private_tor_options(long_dir)
    assert "ControlSocket" not in options
    assert options["ControlPort"] == "127.0.0.1:auto"


def test_feature_checks_by_tor_version() -> None:
    assert pow_support("0.4.9.11") == (True, "supported")
    assert pow_support("0.4.8.16")[0] is False
    assert "0.4.9.2" in pow_support("0.4.8.16")[1]
    assert pow_support("0.4.9.11", pow_module=False)[0] is False
    assert client_auth_support("0.4.9.11")[0] is True
    assert client_auth_support("0.4.5.10")[0] is False


# -- the `onion` CLI ------------------------------------------------------------------------


class OneLineParser(argparse.ArgumentParser):
    """Like run.py's top-level parser: misuse is one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_MISUSE, f"{self.prog}: {message}\n")


def parser() -> argparse.ArgumentParser:
    top = OneLineParser(prog="run.py")
    add_onion_commands(top.add_subparsers(dest="command", required=True))
    return top


def run(config: Config, *argv: str) -> tuple[int, str, str]:
    args = parser().parse_args(["onion", *argv])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = run_onion_command(args, config)
    return status, out.getvalue(), err.getvalue()


def test_show_works_without_tor(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no tor on PATH
    monkeypatch.setenv("PATH", str(config.data_dir))
    # When the operator asks
    status, out, _ = run(config, "show")
    # Then both addresses come from the keys, and what is missing is said
    keys = ensure_service_keys(config)
    assert status == EXIT_OK
    assert keys[WHISTLEBLOWER].address in out and keys[CASEWORKER].address in out
    assert "apt-get install tor" in out
    assert "no authorized clients" in out


def test_show_reports_clients_and_pow(config: Config) -> None:
    add_client(config, name="laptop")
    status, out, _ = run(config, "show")
    assert status == EXIT_OK
    assert "Client auth: on, 1 authorized client" in out
    assert "PoW DoS defence:" in out


def test_add_client_prints_the_line_once_and_says_so(config: Config) -> None:
    status, out, err = run(config, "add-client", "laptop")
    assert status == EXIT_OK and err == ""
    service_id = ensure_service_keys(config)[CASEWORKER].service_id
    lines = re.findall(rf"^\s+({service_id}:descriptor:x25519:[A-Z2-7]{{52}})$", out, re.M)
    assert len(lines) == 1
    assert "shown once and not stored" in out
    assert [client.name for client in list_clients(config)] == ["laptop"]


def test_list_and_remove_clients(config: Config) -> None:
    assert run(config, "list-clients")[1].startswith("No authorized caseworker clients")
    run(config, "add-client", "laptop")
    status, out, _ = run(config, "list-clients")
    assert status == EXIT_OK and out.splitlines()[0] == "laptop"
    status, out, _ = run(config, "remove-client", "laptop", "--disable-caseworker-onion")
    assert status == EXIT_OK and "last client" in out
    assert list_clients(config) == []


@pytest.mark.parametrize(("tor_mode", "truth"), [("launch", "withholds the caseworker onion"),
                                                  ("system", "client authorization OFF")])
def test_removing_the_last_client_is_refused_without_the_flag(config: Config, tor_mode: str, truth: str) -> None:
    config = config.replace(tor_mode=tor_mode)
    run(config, "add-client", "laptop")
    status, out, err = run(config, "remove-client", "laptop")
    assert status == EXIT_MISUSE and truth in err and "--disable-caseworker-onion" in err and out == ""
    assert [c.name for c in list_clients(config)] == ["laptop"]
    # with another client left, no flag is needed
    run(config, "add-client", "phone")
    assert run(config, "remove-client", "laptop")[0] == EXIT_OK


@pytest.mark.parametrize("argv", [("show",), ("add-client", "x"), ("remove-client", "x"), ("list-clients",),
                                  ("rotate", "--yes"), ("sync",)])
def test_every_onion_command_refuses_a_folder_with_no_install(tmp_path: Path, argv: tuple[str, ...]) -> None:
    # Given a mistyped --data
    config = config_for_tests(tmp_path / "typo")
    status, out, err = run(config, *argv)
    # Then one line, exit 2, and no folder or key was made
    assert status == EXIT_MISUSE and out == "" and len(err.strip().splitlines()) == 1
    assert "no install" in err and not (tmp_path / "typo").exists()


@pytest.mark.parametrize("argv", [
    ("add-client", "no/slashes"),
    ("remove-client", "nobody"),
    ("rotate",),
])
def test_misuse_is_one_line_and_status_2(config: Config, argv: tuple[str, ...]) -> None:
    status, out, err = run(config, *argv)
    assert status == EXIT_MISUSE
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_second_add_of_the_same_name_is_misuse(config: Config) -> None:
    run(config, "add-client", "laptop")
    status, _, err = run(config, "add-client", "laptop")
    assert status == EXIT_MISUSE and "already exists" in err


@pytest.mark.parametrize("argv", [(), ("add-client",), ("bogus",), ("rotate", "--force")])
def test_argparse_misuse_is_one_line_and_status_2(
    argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(["onion", *argv])
    assert exit_info.value.code == EXIT_MISUSE
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_rotate_needs_yes_and_then_warns(config: Config) -> None:
    old = ensure_service_keys(config)[WHISTLEBLOWER].address
    status, _, err = run(config, "rotate")
    assert status == EXIT_MISUSE and "--yes" in err and old in err
    assert ensure_service_keys(config)[WHISTLEBLOWER].address == old  # nothing changed
    status, out, _ = run(config, "rotate", "--yes")
    new = ensure_service_keys(config)[WHISTLEBLOWER].address
    assert status == EXIT_OK and new != old
    assert "WARNING" in out and old in out and new in out


def test_rotate_caseworker_changes_only_the_caseworker_onion(config: Config) -> None:
    before = ensure_service_keys(config)
    status, _, err = run(config, "rotate", "--caseworker")
    assert status == EXIT_MISUSE and "caseworker device" in err
    status, out, _ = run(config, "rotate", "--caseworker", "--yes")
    after = ensure_service_keys(config)
    assert status == EXIT_OK and "remove-client and add-client" in out
    assert after[CASEWORKER].address != before[CASEWORKER].address
    assert after[WHISTLEBLOWER] == before[WHISTLEBLOWER]


def test_a_broken_key_file_is_exit_status_1(config: Config) -> None:
    ensure_service_keys(config)
    (service_dir(config, CASEWORKER) / "hs_ed25519_secret_key").write_bytes(b"junk")
    status, out, err = run(config, "show")
    assert status == EXIT_FAILED
    assert len(err.strip().splitlines()) == 1 and "hs_ed25519_secret_key" in err


def test_private_tor_gets_absolute_paths_from_a_relative_data_folder(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`--data data` is relative by default; tor refuses a relative ControlSocket and does not start."""
    from onion.controller import private_tor_options

    monkeypatch.chdir(tmp_path)
    options = private_tor_options(Path("data/tor"))
    assert Path(options["DataDirectory"]).is_absolute()
    sockets = [str(v) for k, v in options.items() if k == "ControlSocket"]
    assert sockets and all(s.split()[0].lstrip("unix:").startswith("/") for s in sockets), sockets
