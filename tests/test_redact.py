"""No credential reaches what a run records (issue #12, item 7): git remotes, command lines.

The end-to-end tests record a real run in a real git repository whose remote carries a token and
whose command line carries secrets, then look for the secrets in every byte of the run directory,
the store, and `tracklet show`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import serverproc
from hypothesis import given, settings
from hypothesis import strategies as st

import tracklet
from tracklet.core.redact import (REDACTED, looks_random, may_hold_secrets, may_name_secrets, redact_command,
                                  redact_text, redact_url, secret_name)
from tracklet.store import Store

REPO = Path(__file__).resolve().parents[1]

GH_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
SECRETS = {
    "github": GH_TOKEN,
    "password": "hunter2-is-my-pass",
    "api key": "0f3c9a7d1e2b4c6a8f0e1d3c5b7a9f2e",
    "hf": "hf_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ01",
    "openai": "sk-proj-" + "Zx8k2Lq9Vb3Nw7Rt5Yp1Qa4Sd6Fg",
    "aws": "AKIA" + "IOSFODNN7EXAMPLE",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "url password": "s3cr3t-db-pw",
    "tracklet key": "tlk_0123456789abcdef_" + "Qw3rTy5uI7oP9aS1dF3gH5jK7lZ9xC1v",
}
REMOTE = f"https://alice:{GH_TOKEN}@github.com/a/b.git"
ARGV = ["train.py", "--api-key", SECRETS["api key"], "--password", SECRETS["password"],
        f"--hub_token={SECRETS['hf']}", "--openai", SECRETS["openai"], f"AWS_ACCESS_KEY_ID={SECRETS['aws']}",
        "--header", f"Authorization: Bearer {SECRETS['jwt']}",
        f"--db=postgresql://bob:{SECRETS['url password']}@db.example.com:5432/runs",
        f"TRACKLET_API_KEY={SECRETS['tracklet key']}", "--lr", "3e-4", "--max_tokens", "512"]


# ------------------------------------------------------------------------------ the function


@pytest.mark.parametrize("url, expected", [
    (REMOTE, "https://github.com/a/b.git"),
    (f"https://{GH_TOKEN}@github.com/a/b.git", "https://github.com/a/b.git"),  # token as the user
    ("https://oauth2:glpat-abcdefghij0123456789@gitlab.com/g/p.git", "https://gitlab.com/g/p.git"),
    ("https://u:p@ss@host.example/x?y=a@b", "https://host.example/x?y=a@b"),  # an unescaped @ in the password
    ("ssh://git:pw@host.example:2222/r.git", "ssh://host.example:2222/r.git"),
    ("git@github.com:a/b.git", "git@github.com:a/b.git"),  # scp-like: a user name, no secret
    ("https://github.com/a/b.git", "https://github.com/a/b.git"),
    ("https://gitlab.example/p.git?private_token=abc123", f"https://gitlab.example/p.git?private_token={REDACTED}"),
    ("", ""),
])
def test_urls_lose_their_userinfo(url, expected):
    assert redact_url(url) == expected


@pytest.mark.parametrize("name", sorted(set(SECRETS) - {"password", "api key", "url password"}))  # shapeless: below
def test_every_known_token_shape_is_redacted_anywhere_in_a_string(name):
    secret = SECRETS[name]
    assert redact_text(f"run with {secret} please") == f"run with {REDACTED} please"


@pytest.mark.parametrize("arg", [
    "--password=hunter2", "password=hunter2", "db.password=hunter2", "--client-secret=x1",
    "AWS_SECRET_ACCESS_KEY=abc", "--apiKey=short1", "WANDB_API_KEY=0123", "--token=Zx8k2Lq9Vb3Nw7Rt5Yp1",
    "--key=3f2a9c1e5b7d4a6f8e0c2b4d6f8a0c2e", "https://h.example/cb?access_token=abc&x=1",
])
def test_values_of_secret_names_are_redacted(arg):
    name, _, value = arg.rpartition("=") if "?" not in arg else arg.partition("&")[0].rpartition("=")
    assert redact_text(arg) == arg.replace(f"{name}={value}", f"{name}={REDACTED}")


@pytest.mark.parametrize("arg", [
    "--max_tokens=512", "--bos_token=<s>", "--pad_token_id=0", "--monitor_key=val/loss", "--key=loss",
    "--tokenizer=bert-base-uncased", "--use_auth_token=True", "--lr=3e-4", "--run_name=sk-learn-baseline",
    "--output_dir=/data/secret_project", "model.key_dim=64", "--commit=3f2a9c1e5b7d4a6f8e0c2b4d6f8a0c2e4b6d8f0a",
    "token classification", "s3://bucket/prefix", "meta-llama/Llama-2-7b-hf",
])
def test_ordinary_arguments_are_kept(arg):
    assert redact_text(arg) == arg


def test_a_secret_in_the_argument_after_its_option_is_redacted():
    assert redact_command(["python", "t.py", "--api-key", "abc", "--password", "pw", "--token", "short",
                           "--token", "Zx8k2Lq9Vb3Nw7Rt5Yp1", "--secret", "--verbose", "--lr", "0.1"]) == [
        "python", "t.py", "--api-key", REDACTED, "--password", REDACTED, "--token", "short",
        "--token", REDACTED, "--secret", "--verbose", "--lr", "0.1"]


# ------------------------------------------------------------------------------ the prefilters
# The tracing worker skips redaction of a whole JSON payload when may_hold_secrets / may_name_secrets
# say no: they must say yes for every string redact_text changes and every name secret_name flags.

_FRAGMENTS = [*SECRETS.values(), REMOTE, *ARGV, "Bearer abcdefghijklmnop", "BEARER 0123456789ab", "a=b",
              "x://u:p@h", "\n", '"', "\\", " ", "é", "\u212aey", "hello", "tokens", "max_tokens"]


def _json_texts(value: str) -> tuple[str, str]:
    import json

    text = json.dumps({"k": [value]}, ensure_ascii=False, separators=(",", ":"))
    return text, text.lower()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=12)), max_size=6))
def test_the_text_prefilter_flags_every_string_redaction_changes(parts):
    value = "".join(parts)
    if redact_text(value) != value:
        assert may_hold_secrets(*_json_texts(value))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(["api", "Key", "_", "-", "password", "PassWord", "token", "AUTH", "x",
                                           "\u212aey", "secret", "Credentials", "pwd", "é", "İ"]),
                          st.text(max_size=6)), max_size=5))
def test_the_name_prefilter_flags_every_secret_name(parts):
    name = "".join(parts)
    if secret_name(name) is not None:
        assert may_name_secrets(_json_texts(name)[1])


@pytest.mark.parametrize("secret", sorted({SECRETS[name] for name in set(SECRETS) - {"password", "api key", "url password"}}
                                           | {"xoxb-0123456789ab", "Bearer abcdefghij0", "api_key=hunter2", REMOTE}))
def test_the_text_prefilter_flags_a_secret_in_a_long_text(secret):
    filler = "plain words " * 10_000  # past the length where single characters gate the hints
    text = filler + secret + filler
    assert redact_text(text) != text and may_hold_secrets(text, text.lower())


def test_the_prefilters_pass_plain_text():
    assert not may_hold_secrets(*_json_texts("What is the answer? The role of the assistant."))
    assert not may_name_secrets('{"messages":[{"role":"user","content":"hi"}],"model":"gpt-4o"}')


def test_text_without_any_hint_skips_the_patterns(monkeypatch):
    """A long text with nothing secret-shaped (a 1 MB op input) costs substring checks, not the
    regular expressions (~20 MB/s): the tracing worker redacts every string it records."""
    from tracklet.core import redact

    class Refuse:
        def sub(self, *args):
            raise AssertionError("a pattern ran")

    for name in ("_URL_USERINFO", "_TOKEN_SHAPES", "_BEARER", "_ASSIGNMENT"):
        monkeypatch.setattr(redact, name, Refuse())
    text = "plain words, paths/like/this and numbers 0123456789 " * 20_000
    assert redact.redact_text(text) is text


def test_redaction_is_idempotent():
    once = redact_command(["x", *ARGV])
    assert redact_command(once) == once


def test_generated_tokens_look_random_and_words_do_not():
    """The rule is a heuristic with a known miss rate: a 16-byte `token_urlsafe` of lower-case letters
    and '_' alone (~3 in 1,000,000; CI drew 'yvrmibojrae_mohoHnw_fw') reads as a name. The draws are
    seeded, so the test checks the rule, not the luck of 4,000 draws."""
    import base64
    import random

    rng = random.Random(20261203)

    def urlsafe(n: int) -> str:  # what secrets.token_urlsafe(n) makes, from seeded bytes
        return base64.urlsafe_b64encode(rng.randbytes(n)).rstrip(b"=").decode()

    assert all(looks_random(urlsafe(n)) for n in (16, 32) for _ in range(20_000))
    assert all(looks_random(rng.randbytes(16).hex()) for _ in range(20_000))
    # the rare draws that a letters-and-digits rule misses (CI drew one: ~1 in 170,000 has < 2 letters)
    assert looks_random("3" * 31 + "a") and looks_random("40221934" * 4) and looks_random("f" * 32)
    assert not any(looks_random(word) for word in ("val/loss_top1_accuracy", "val_loss_epoch_average",
                                                   "bert-base-uncased", "20240101_120000_run"))


# ------------------------------------------------------------------------------ end to end


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=repo, check=True,
                   capture_output=True)


def _record_in_credentialed_repo(root: Path, tmp_path: Path, project: str, patch: str = "") -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text("print('v1')\n")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "first")
    _git(repo, "remote", "add", "origin", REMOTE)
    (repo / "train.py").write_text("print('v2')\n")  # dirty: a diff.patch is recorded too
    script = patch + "\n" + textwrap.dedent(f"""
        import sys, tracklet
        run = tracklet.init(project={project!r}, id="r", dir={str(root)!r},
                            settings={{"console": "off", "system_metrics": False}})
        run.log({{"loss": 1.0}})
        run.finish()
    """)
    (repo / "train.py").write_text(script)
    subprocess.run([sys.executable, "train.py", *ARGV[1:]], cwd=repo, check=True, timeout=120,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    return root / "projects" / project / "runs" / "r"


def _leaks(data: bytes) -> list[str]:
    return [name for name, secret in SECRETS.items() if secret.encode() in data]


def test_no_secret_reaches_the_run_directory_the_store_or_tracklet_show(root, tmp_path):
    run_dir = _record_in_credentialed_repo(root, tmp_path, "cred")
    files = sorted(path for path in run_dir.rglob("*") if path.is_file())
    assert {path.name for path in files} >= {"run.tlog", "diff.patch", "requirements.txt"}
    for path in files:
        assert _leaks(path.read_bytes()) == [], path

    (run,) = tracklet.Api(root).runs("cred")
    assert run.metadata["git"]["remote"] == "https://github.com/a/b.git"  # still says where the code is
    command = run.metadata["command"]
    assert command[command.index("--lr") + 1] == "3e-4" and command[-1] == "512"  # ordinary arguments kept
    assert command[command.index("--api-key") + 1] == REDACTED

    store = Store(f"sqlite:///{root / 'store.sqlite'}", root=root)
    store.index()
    (row,) = store.runs("cred", fields=("metadata",))
    store.close()
    assert _leaks(repr(row["metadata"]).encode()) == []
    assert _leaks((root / "store.sqlite").read_bytes()) == []

    shown = serverproc.cli("--dir", str(root), "show", "cred/r", env={"COLUMNS": "400"})
    assert shown.returncode == 0, shown.stderr
    assert "github.com/a/b.git" in shown.stdout and "train.py" in shown.stdout
    assert _leaks(shown.stdout.encode()) == [] and "alice" not in shown.stdout


def test_runs_recorded_before_redaction_are_shown_redacted(root, tmp_path):
    """A log written by an older tracklet holds the secrets; readers and the store redact them."""
    unpatched = "import tracklet.core.redact as r\nr.redact_command = list\nr.redact_url = str"
    run_dir = _record_in_credentialed_repo(root, tmp_path, "old", patch=unpatched)
    assert _leaks((run_dir / "run.tlog").read_bytes())  # the old log does hold them

    (run,) = tracklet.Api(root).runs("old")
    assert _leaks(repr(run.metadata).encode()) == []
    assert run.metadata["git"]["remote"] == "https://github.com/a/b.git"
    store = Store(f"sqlite:///{root / 'store.sqlite'}", root=root)
    store.index()
    (row,) = store.runs("old", fields=("metadata",))
    store.close()
    assert _leaks(repr(row["metadata"]).encode()) == []


def test_tracklet_run_records_an_unmodified_script_without_its_secrets(root, tmp_path):
    script = tmp_path / "plain.py"
    script.write_text("print('training')\n")  # never imports tracklet: the launcher starts the run
    done = subprocess.run([sys.executable, "-m", "tracklet", "run", "--project", "launched", "--", sys.executable,
                           str(script), *ARGV[1:]], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    (run,) = tracklet.Api(root).runs("launched")
    assert run.metadata["command"][-4:] == ["--lr", "3e-4", "--max_tokens", "512"]
    for path in Path(run.dir).rglob("*"):
        if path.is_file():
            assert _leaks(path.read_bytes()) == [], path
