"""Console output and the environment (git, packages, host) are recorded off the caller's thread."""

from __future__ import annotations

import hashlib
import marshal
import os
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

import tracklet

from conftest import run_script


def test_console_lines_are_recorded_and_still_printed(root):
    done = run_script(
        """
        import sys, tracklet
        run = tracklet.init(project="console", settings={"capture_environment": False})
        print("hello", "world")
        print("to stderr", file=sys.stderr)
        for i in range(3):
            sys.stdout.write(f"\\rprogress {i}/3")
        sys.stdout.write("\\n")
        sys.stdout.write("no newline at the end")
        run.finish()
        print("after finish is not recorded")
        """,
        check=True,
    )
    assert "hello world" in done.stdout and "to stderr" in done.stderr
    assert "progress 0/3" in done.stdout  # the terminal still gets every redraw
    (recorded,) = tracklet.Api(root).runs("console")
    lines = [(line.stream, line.text) for line in recorded.console]
    assert lines == [
        ("stdout", "hello world"),
        ("stderr", "to stderr"),
        ("stdout", "progress 2/3"),
        ("stdout", "no newline at the end"),
    ]


def test_console_off_records_nothing(root):
    run_script(
        """
        import tracklet
        run = tracklet.init(project="quiet", settings={"console": "off", "capture_environment": False})
        print("not recorded")
        run.finish()
        """,
        check=True,
    )
    (recorded,) = tracklet.Api(root).runs("quiet")
    assert recorded.console == []


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout.strip()


def _repo_with_one_commit(tmp_path: Path) -> Path:
    """A git repository with one commit of ``train.py``."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "train.py").write_text("print('v1')\n")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "first")
    return repo


def test_git_state_is_recorded_in_a_process_holding_over_a_thousand_files(root, tmp_path):
    """A training process with many open files (data shards, DataLoader workers' pipes, sockets) has
    descriptors past 1,023, where ``select.select`` raises: the git capture read its pipe so and
    recorded no git state ("capturing the environment (git) failed: ValueError('filedescriptor out
    of range in select()')")."""
    repo = _repo_with_one_commit(tmp_path)
    commit = _git(repo, "rev-parse", "HEAD")
    done = run_script(
        """
        import os, resource, tracklet
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 1300:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(1300, hard), hard))
        held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # the pipe to git gets a number past 1,023
        run = tracklet.init(project="fds", settings={"capture_wait": 60})
        run.finish()
        """,
        cwd=repo,
    )
    assert done.returncode == 0 and "capturing the environment" not in done.stderr, done.stderr
    (recorded,) = tracklet.Api(root).runs("fds")
    assert recorded.metadata["git"]["commit"] == commit


def test_environment_records_git_state_packages_and_host(root, tmp_path):
    repo = _repo_with_one_commit(tmp_path)
    (repo / "train.py").write_text("print('v2')\n")
    commit = _git(repo, "rev-parse", "HEAD")
    run_script(
        """
        import tracklet
        run = tracklet.init(project="env", settings={"capture_wait": 60})  # what is recorded, however loaded the machine
        run.log({"a": 1})
        run.finish()
        """,
        cwd=repo,
        check=True,
    )
    (recorded,) = tracklet.Api(root).runs("env")
    meta = recorded.metadata
    assert meta["git"]["commit"] == commit and meta["git"]["dirty"] is True
    diff = (Path(recorded.dir) / "files" / "diff.patch").read_bytes()
    assert b"+print('v2')" in diff
    assert meta["git"]["diff_sha256"] == hashlib.sha256(diff).hexdigest()
    assert "protobuf" in {name.lower() for name in meta["packages"]}
    requirements = (Path(recorded.dir) / "files" / "requirements.txt").read_text()
    assert "protobuf==" in requirements.lower()
    assert meta["cpu_count"] >= 1 and meta["hostname"] and meta["memory_total_bytes"] > 0
    assert meta["command"][1:] == ["-c"] and meta["cwd"] == str(repo)
    assert set(recorded.files()) == {"diff.patch", "requirements.txt"}


def test_environment_outside_git_has_no_git_section(root, tmp_path):
    run_script(
        """
        import tracklet
        run = tracklet.init(project="nogit")
        run.finish()
        """,
        cwd=tmp_path,
        check=True,
        env={"GIT_CEILING_DIRECTORIES": str(tmp_path.parent)},
    )
    (recorded,) = tracklet.Api(root).runs("nogit")
    assert recorded.metadata["git"] is None


def _packages_of_new_run(root: Path, site: Path, project: str) -> dict[str, str]:
    run_script(
        f"""
        import sys
        sys.path.append({str(site)!r})
        import tracklet
        tracklet.init(project={project!r}, settings={{"console": "off", "system_metrics": False}}).finish()
        """,
        check=True,
    )
    (recorded,) = tracklet.Api(root).runs(project)
    assert "environment_incomplete" not in recorded.metadata
    requirements = (Path(recorded.dir) / "files" / "requirements.txt").read_text()
    packages = recorded.metadata["packages"]
    # index installs as name==version; direct and editable ones (tracklet itself here) say where from
    direct = {source["name"] for source in recorded.metadata["package_sources"]}
    assert sorted(line for line in requirements.splitlines() if "==" in line and " " not in line) == \
        sorted(f"{n}=={v}" for n, v in packages.items() if n not in direct)
    return packages


def _install_fake_distribution(site: Path, name: str, version: str) -> Path:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return info


def test_package_inventory_is_cached_and_follows_installs_and_removals(root, tmp_path):
    """The inventory is read from a cache under the data root while the directories packages live
    in are unchanged; installing, upgrading or removing a package is seen by the next run."""
    import shutil

    site = tmp_path / "extra" / "site-packages"
    site.mkdir(parents=True)
    first = _packages_of_new_run(root, site, "inv1")
    assert "protobuf" in {name.lower() for name in first} and "tracklet-fake-pkg" not in first
    (cache,) = (root / "cache").glob("packages5-*.marshal")

    info = _install_fake_distribution(site, "tracklet-fake-pkg", "1.0")
    assert _packages_of_new_run(root, site, "inv2")["tracklet-fake-pkg"] == "1.0"

    shutil.rmtree(info)  # an upgrade: the old dist-info goes, a new one comes
    _install_fake_distribution(site, "tracklet-fake-pkg", "2.0")
    assert _packages_of_new_run(root, site, "inv3")["tracklet-fake-pkg"] == "2.0"

    # A cache that says something else is believed only while nothing changed: prove the runs above
    # read it by planting a marker in it and seeing it come back, then remove the package.
    data = marshal.loads(cache.read_bytes())
    data["packages"].append(("planted-marker", "9", {}))
    cache.write_bytes(marshal.dumps(data))
    assert _packages_of_new_run(root, site, "inv4")["planted-marker"] == "9"
    shutil.rmtree(site / "tracklet_fake_pkg-2.0.dist-info" if (site / "tracklet_fake_pkg-2.0.dist-info").exists()
                  else site / "tracklet-fake-pkg-2.0.dist-info")
    after = _packages_of_new_run(root, site, "inv5")
    assert "tracklet-fake-pkg" not in after and "planted-marker" not in after

    cache.write_bytes(cache.read_bytes()[:-7])  # a damaged (cut) cache is a miss, never an error
    assert "protobuf" in {name.lower() for name in _packages_of_new_run(root, site, "inv6")}


def _fake_site_install(site: Path, name: str, version: str, url: str = "") -> None:
    """A distribution as pip leaves it: a ``*.dist-info`` directory (with PEP 610's
    ``direct_url.json`` for a direct or editable install), any older one of that name removed."""
    import shutil

    for old in site.glob(f"{name}-*.dist-info"):
        shutil.rmtree(old)
    info = _install_fake_distribution(site, name, version)
    (info / "RECORD").write_text("")
    if url:
        (info / "direct_url.json").write_text(f'{{"url": "{url}", "dir_info": {{"editable": true}}}}')


def test_an_inventory_cache_miss_reads_only_what_changed_and_equals_a_full_scan(tmp_path, monkeypatch):
    """After ``pip install`` (a watched directory changed) the cache is brought up to date by
    reading only the entries added or changed, the removed ones dropped: a few ms instead of a
    full scan (~150 ms of CPU with 250 packages), so the first run after an install still records
    its packages within ``capture_wait``. Its result is the full scan's, through installs,
    removals, upgrades, a reinstall of the same version as an editable install, and a package
    shadowed by one installed earlier on ``sys.path``."""
    from tracklet.core import environment

    first, second = tmp_path / "a" / "site-packages", tmp_path / "b" / "site-packages"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    import sys

    def holds_distributions(entry: str) -> bool:  # site-packages, or a checkout with its *.egg-info
        return "-packages" in entry or any(Path(entry or ".").glob("*.*-info"))

    monkeypatch.setattr("sys.path", [str(first), str(second),
                                     *(entry for entry in sys.path if not holds_distributions(entry))])
    cache = tmp_path / "cache"
    for name in ("alpha", "beta", "gamma"):
        _fake_site_install(second, name, "1.0")
    environment._save_inventory(cache, environment._scan_packages()[1])

    def versions() -> dict[str, str]:
        found = environment._cached_inventory(cache)
        assert found == environment._scan_packages()[0]
        return {name: version for name, version, _ in found or []}

    def plant(name: str) -> None:  # a mark only a cache read of the unchanged entry keeps
        (cache_file,) = cache.glob("packages5-*.marshal")
        data = marshal.loads(cache_file.read_bytes())
        data["entries"] = marshal.dumps([(path, mtime, [(c, s, n, "planted" if n == name else v, src)
                                                        for c, s, n, v, src in entries])
                                         for path, mtime, entries in marshal.loads(data["entries"])])
        cache_file.write_bytes(marshal.dumps(data))

    assert versions() == {"alpha": "1.0", "beta": "1.0", "gamma": "1.0"}
    _fake_site_install(second, "delta", "1.0")  # an install beside the others
    plant("alpha")
    found = environment._cached_inventory(cache)
    assert {name: version for name, version, _ in found or []} == \
        {"alpha": "planted", "beta": "1.0", "gamma": "1.0", "delta": "1.0"}  # alpha was not read again
    plant("nothing")  # the cache file rewritten without the mark
    _fake_site_install(second, "alpha", "2.0")  # an upgrade
    import shutil

    shutil.rmtree(second / "beta-1.0.dist-info")  # a removal
    assert versions() == {"alpha": "2.0", "gamma": "1.0", "delta": "1.0"}
    _fake_site_install(second, "gamma", "1.0", url="file:///src/gamma")  # reinstalled, editable
    (gamma,) = [source for name, _, source in environment._cached_inventory(cache) or [] if name == "gamma"]
    assert gamma == {"url": "file:///src/gamma", "editable": True}
    versions()
    _fake_site_install(first, "delta", "3.0")  # earlier on sys.path: it wins, as on import
    assert versions()["delta"] == "3.0"
    shutil.rmtree(first / "delta-3.0.dist-info")
    assert versions()["delta"] == "1.0"

    (cache_file,) = cache.glob("packages5-*.marshal")
    _fake_site_install(second, "epsilon", "1.0")  # a change: the entries are read, and must be whole
    data = marshal.loads(cache_file.read_bytes())
    for foreign in (marshal.dumps({"packages": [("x", "1", {})], "watched": {}}),  # the older format
                    marshal.dumps({**data, "entries": marshal.dumps([("a", "b", "c")])}),
                    marshal.dumps({**data, "entries": data["entries"][:-9]}), b"\x00junk"):
        cache_file.write_bytes(foreign)
        assert environment._cached_inventory(cache) is None  # a full scan follows


def test_the_inventory_update_reads_metadata_as_importlib_metadata_does(tmp_path):
    """An update reads new entries without importing ``importlib.metadata`` (20-35 ms of CPU in a
    fresh process): every distribution installed here, and headers written oddly, read the same."""
    from importlib import metadata

    from tracklet.core.environment import _MetadataEntry, _read_distribution

    for distribution in metadata.distributions():
        where = str(distribution._path)  # type: ignore[attr-defined]
        assert _read_distribution(_MetadataEntry(where)) == _read_distribution(distribution), where
    odd = {"folded": "Metadata-Version: 2.1\nname:  folded\nVERSION: 1.0\n  .post1\nName: second\n\nName: body\n",
           "no-version": "Metadata-Version: 2.1\r\nName: no-version\r\n",
           "body-only": "\nName: body-only\nVersion: 1\n", "not-a-header": "Name: x\nnot a header\nVersion: 2\n"}
    for key, text in odd.items():
        info = tmp_path / f"{key}-1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(text, newline="")
        (info / "direct_url.json").write_text('{"url": "https://example.com/x.whl"}')
        assert _read_distribution(_MetadataEntry(str(info))) == \
            _read_distribution(metadata.PathDistribution(info)), key
    egg = tmp_path / "eggfile-1.0.egg-info"  # setup.py install's single-file egg-info
    egg.write_text("Metadata-Version: 1.0\nName: eggfile\nVersion: 1.0\n")
    assert _read_distribution(_MetadataEntry(str(egg)))[:2] == ("eggfile", "1.0")
    assert _read_distribution(_MetadataEntry(str(egg))) == _read_distribution(metadata.PathDistribution(egg))


def test_a_checkout_on_pythonpath_with_an_egg_info_is_recorded_as_that_checkout_and_its_commit(root, tmp_path):
    """A source tree put on ``sys.path`` (PYTHONPATH, ``setup.py develop``) whose ``*.egg-info`` makes
    it a distribution is recorded as an editable install is: the checkout's path and the commit
    checked out there, not ``name==version`` (which no index may have, or not with this code)."""
    checkout = tmp_path / "mylib"
    (checkout / "src" / "mylib.egg-info").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("[project]\nname = 'mylib'\nversion = '0.7'\n")
    (checkout / "src" / "mylib.egg-info" / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: mylib\nVersion: 0.7\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=checkout, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "one"], cwd=checkout, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, check=True, capture_output=True,
                          text=True).stdout.strip()
    packages = _packages_of_new_run(root, checkout / "src", "eggs")
    assert packages["mylib"] == "0.7"
    (recorded,) = tracklet.Api(root).runs("eggs")
    (source,) = [s for s in recorded.metadata["package_sources"] if s["name"] == "mylib"]
    assert source["url"] == checkout.as_uri() and source["editable"]
    assert (source["vcs"], source["commit"]) == ("git", head)
    requirements = (Path(recorded.dir) / "files" / "requirements.txt").read_text().splitlines()
    assert f"-e {checkout.as_uri()}  # mylib==0.7 at git {head}" in requirements
    assert "mylib==0.7" not in requirements


def test_finish_does_not_wait_for_a_slow_capture_and_records_what_is_ready(root, tmp_path):
    """A git that hangs (a network file system, a huge repository) must not hold up finish():
    after capture_wait the record is written with the host part and names what is missing."""
    slow_bin = tmp_path / "bin"
    slow_bin.mkdir()
    git = slow_bin / "git"
    git.write_text("#!/bin/sh\nsleep 60\n")
    git.chmod(0o755)
    done = run_script(
        """
        import tracklet
        run = tracklet.init(project="slow", settings={"console": "off", "system_metrics": False,
                                                       "capture_wait": 2})  # the host part: in time even under load
        run.log({"a": 1})
        run.finish()
        """,
        env={"PATH": f"{slow_bin}:{os.environ['PATH']}"},
        timeout=30,  # GIT_TIMEOUT is 10 s: waiting for the capture would take longer than this
    )
    assert done.returncode == 0, done.stderr
    (recorded,) = tracklet.Api(root).runs("slow")
    assert recorded.state == "finished" and recorded.history()["a"] == [1]
    meta = recorded.metadata
    assert meta["environment_incomplete"] == ["git", "packages", "code"]
    reasons = meta["environment_incomplete_reasons"]
    assert set(reasons) == {"git", "packages", "code"}
    assert all(r.startswith("not captured within the ") and r.endswith(" s finish() waited for it (capture_wait)")
               for r in reasons.values()), reasons
    assert meta["hostname"] and meta["cpu_count"] >= 1 and meta["git"] is None


def test_packages_the_cache_answers_are_recorded_when_git_outlasts_capture_wait(root, tmp_path):
    """With the inventory cached, the packages part is a read the cache already answered: it is
    captured before git, so a git that outlasts ``capture_wait`` (slow file system calls, a huge
    repository) leaves out git and the code snapshot only, never the packages."""
    script = """
        import tracklet
        run = tracklet.init(project="{project}", settings={{"console": "off", "system_metrics": False,
                                                           "capture_wait": {wait}}})
        run.log({{"a": 1}})
        run.finish()
    """
    done = run_script(script.format(project="warm", wait=60), timeout=120)  # writes the inventory cache
    assert done.returncode == 0, done.stderr
    slow_bin = tmp_path / "bin"
    slow_bin.mkdir()
    (slow_bin / "git").write_text("#!/bin/sh\nsleep 60\n")
    (slow_bin / "git").chmod(0o755)
    done = run_script(script.format(project="slowgit", wait=2), env={"PATH": f"{slow_bin}:{os.environ['PATH']}"},
                      timeout=30)
    assert done.returncode == 0, done.stderr
    (recorded,) = tracklet.Api(root).runs("slowgit")
    meta = recorded.metadata
    assert meta["environment_incomplete"] == ["git", "code"], meta.get("environment_incomplete_reasons")
    assert "protobuf" in {name.lower() for name in meta["packages"]}


def test_a_monitor_still_starting_at_finish_takes_nothing_from_the_capture_wait(root, monkeypatch):
    """The system monitor still starting its samplers (psutil importing, a driver's init hanging)
    at finish() is not waited for at all: the environment capture gets the whole capture_wait, and
    the monitor records nothing (a run ended before its first sample has no system metrics)."""
    from tracklet.core.system import host

    entered, release = threading.Event(), threading.Event()
    original_start = host.HostSampler.start

    def start(self):
        entered.set()
        release.wait(60)
        return original_start(self)

    monkeypatch.setattr(host.HostSampler, "start", start)
    guard = threading.Timer(30, release.set)  # should finish() wait for the monitor, the test fails, not hangs
    guard.start()
    try:
        run = tracklet.init(project="shared", dir=str(root), settings={"console": "off", "system_interval": 0.01,
                                                                       "capture_wait": 60})
        run.log({"a": 1})
        assert entered.wait(30)
        run.finish()
        returned_while_starting = not release.is_set()
    finally:
        release.set()
        guard.cancel()
    assert returned_while_starting
    (recorded,) = tracklet.Api(root).runs("shared")
    assert recorded.state == "finished" and recorded.history()["a"] == [1]
    assert "environment_incomplete" not in recorded.metadata and recorded.metadata["packages"]
    assert recorded.system_info == {} and recorded.system_metrics().num_rows == 0


def test_a_part_whose_capture_fails_is_recorded_as_incomplete_with_the_reason(root, monkeypatch):
    """A part that raised is named in environment_incomplete with the error, never silently
    missing; the other parts are recorded whole."""
    from tracklet.core.environment import EnvironmentCapture

    def broken(self, environment):
        raise PermissionError("site-packages unreadable")

    monkeypatch.setattr(EnvironmentCapture, "_capture_packages", broken)
    with pytest.warns(tracklet.TrackletWarning, match=r"capturing the environment \(packages\) failed"):
        run = tracklet.init(project="broken", dir=str(root), settings={"console": "off", "system_metrics": False})
        run.finish()
    (recorded,) = tracklet.Api(root).runs("broken")
    meta = recorded.metadata
    assert meta["environment_incomplete"] == ["packages"]
    assert meta["environment_incomplete_reasons"] == {
        "packages": "failed: PermissionError('site-packages unreadable')"}
    assert meta["hostname"] and meta["packages"] == {}


def test_finish_sets_the_sender_to_work_before_it_waits_for_capture(root, monkeypatch):
    """A short run whose worker has not woken yet (fewer rows than batch_size, its timer far off)
    starts encoding as finish() begins, while capture still running is waited for: the two
    waits overlap instead of adding up."""
    from tracklet.core.environment import EnvironmentCapture

    seen: list[bool] = []
    original_finish = EnvironmentCapture.finish

    def finish(self, timeout):
        sender = run._sender
        for _ in range(1000):  # up to 10 s for the worker to build its encoder: it was woken
            if sender._encoder is not None:
                break
            time.sleep(0.01)
        seen.append(sender._encoder is not None)
        original_finish(self, timeout)

    monkeypatch.setattr(EnvironmentCapture, "finish", finish)
    run = tracklet.init(project="overlap", dir=str(root), settings={"console": "off", "system_metrics": False,
                                                                    "flush_interval": 600})
    run.log({"a": 1.0})
    run.finish()
    assert seen == [True]
    (recorded,) = tracklet.Api(root).runs("overlap")
    assert recorded.history()["a"] == [1.0]


def test_the_worker_loads_the_encoder_as_init_returns_not_at_its_first_drain(root):
    """protobuf and the encoder (~30 ms of CPU in a fresh process) are imported by the worker as
    soon as init() has returned, not when the first batch or the timer wakes it: a script that
    sets up for a while before logging (or logs little) doesn't pay for them in finish()."""
    run = tracklet.init(project="early", dir=str(root), settings={"console": "off", "capture_environment": False,
                                                                  "system_metrics": False, "flush_interval": 600})
    sender = run._sender
    deadline = time.monotonic() + 30  # with the timer 300 s away and nothing logged, only the start loads it
    while sender._encoder is None and time.monotonic() < deadline:
        time.sleep(0.01)
    loaded = sender._encoder is not None
    run.finish()
    assert loaded


def test_a_run_that_does_not_wait_for_the_package_scan_still_leaves_its_cache(root):
    """The first run after an install finds no inventory cache and finish() does not wait for
    the scan (capture_wait): the process's exit waits for it instead (bounded), so the cache is
    written and the next short run reads it. Before, a short script's daemon thread died with
    the process mid-scan, and every later run of it scanned too late again."""
    script = """
        import tracklet
        from tracklet.core import environment
        environment.INVENTORY_EXIT_WAIT = 60  # this machine may be loaded: the bound is not under test
        run = tracklet.init(project="{project}", settings={{"console": "off", "system_metrics": False,
                                                           "capture_wait": {wait}}})
        run.finish()
    """
    done = run_script(script.format(project="first", wait=0), timeout=120)
    assert done.returncode == 0, done.stderr
    assert list((root / "cache").glob("packages5-*.marshal"))
    (first,) = tracklet.Api(root).runs("first")
    assert "packages" in first.metadata["environment_incomplete"]
    done = run_script(script.format(project="second", wait=60), timeout=120)
    assert done.returncode == 0, done.stderr
    (second,) = tracklet.Api(root).runs("second")
    assert "environment_incomplete" not in second.metadata and second.metadata["packages"]


def test_a_clean_repository_is_captured_without_loading_openssl_or_json(tmp_path):
    """``hashlib`` loads OpenSSL (~3 ms of CPU a short run's finish() may wait for); the capture of
    a clean repository hashes nothing but its inventory cache's name (BLAKE2b, built in), so it
    never imports it, twice in a row (the second run reads the cache the first wrote). Nor json
    (the cache is a marshal file) nor subprocess (git is started with ``os.posix_spawnp``): the
    capture thread gets the GIL from a busy training loop only once per switch interval and gives
    it up at every file-system call, and those imports were a dozen such calls a module."""
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "train.py").write_text("print('train')\n")
    for args in (["init", "-q"], ["add", "train.py"], ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    script = f"""
        import sys, tracklet
        run = tracklet.init(project="p", dir={str(tmp_path / "data")!r}, settings={{"capture_wait": 30}})
        run.log({{"loss": 1.0}})
        run.finish()
        print(["hashlib" in sys.modules, "_hashlib" in sys.modules, "json" in sys.modules, "subprocess" in sys.modules])
    """
    imported = []
    for _ in range(2):
        done = run_script(script, cwd=repo, check=True)
        imported.append(done.stdout.strip().splitlines()[-1])
    assert imported[0].startswith("[False, False, ")  # the first run scans: importlib.metadata imports json
    assert imported[1] == "[False, False, False, False]"
    for recorded in tracklet.Api(tmp_path / "data").runs("p"):
        meta = recorded.metadata
        assert "environment_incomplete" not in meta, meta.get("environment_incomplete_reasons")
        assert meta["git"]["commit"] and meta["git"]["dirty"] is False
        assert "protobuf" in {name.lower() for name in meta["packages"]}
    assert len(list((tmp_path / "data" / "cache").glob("packages5-*.marshal"))) == 1


def test_a_tight_training_loop_leaves_the_capture_no_imports_and_git_already_running(tmp_path):
    """A loop that holds the GIL lets the capture thread run once per switch interval (5 ms), and
    each import's file-system calls hand the GIL back: imports left to that thread, and git's
    processes started by it, ended up inside ``finish()`` (where file-system calls are slow, as
    under gVisor, past ``capture_wait``). The capture's modules are imported by ``init()`` before
    its thread starts, and git's commands are started before ``init()`` returns (the gate)."""
    script = """
        import sys, threading
        import tracklet
        from tracklet.core import environment
        seen = {}
        run_thread, make_probe, start = (environment.EnvironmentCapture._run, environment.GitProbe.__init__,
                                         environment.EnvironmentCapture.start)
        probe_made = threading.Event()

        def capture_thread(self):
            seen["imported"] = sorted(m for m in ("tracklet.core.provenance", "select", "_blake2") if m in sys.modules)
            run_thread(self)

        def probe(self, cwd):
            make_probe(self, cwd)
            seen["gate set at git's start"] = gate[0].is_set()
            probe_made.set()

        def started(self, gate_event=None):
            gate.append(gate_event)
            start(self, gate_event)
            probe_made.wait(10)  # init() returns (sets the gate) only once git started, or 10 s passed

        gate = []
        environment.EnvironmentCapture._run = capture_thread
        environment.GitProbe.__init__ = probe
        environment.EnvironmentCapture.start = started
        run = tracklet.init(project="p", dir=DATA, settings={"console": "off", "system_metrics": False,
                                                             "capture_wait": 30})
        run.finish()
        print(seen)
    """
    done = run_script(script.replace("DATA", repr(str(tmp_path / "data"))), cwd=tmp_path, check=True)
    assert done.stdout.strip().splitlines()[-1] == str(
        {"imported": ["_blake2", "select", "tracklet.core.provenance"], "gate set at git's start": False})


def test_git_is_asked_about_the_imported_files_while_the_diff_still_runs(tmp_path):
    """The code snapshot's question to git (which imported files are untracked) starts as soon
    as the work tree's top level is known, beside ``git diff HEAD`` (which reads every tracked
    file's state), not after it: one process start and run less that a short run's ``finish()``
    waits for in turn. Checked with a git wrapper whose diff waits (up to 5 s) for ls-files to
    start; the snapshot is still right: the untracked module is in it, the tracked one is not."""
    import shutil

    repo, marks, bin_dir = tmp_path / "repo", tmp_path / "marks", tmp_path / "bin"
    for folder in (repo, marks, bin_dir):
        folder.mkdir()
    (repo / "tracked_helper.py").write_text("X = 1\n")
    (repo / "untracked_helper.py").write_text("Y = 2\n")
    for args in (["init", "-q"], ["add", "tracked_helper.py"],
                 ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    real_git = shutil.which("git")
    (bin_dir / "git").write_text(f"""#!/bin/sh
case " $* " in
  *" ls-files "*) touch {marks}/ls-files ;;
  *" diff "*) i=0
    while [ ! -e {marks}/ls-files ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
    if [ -e {marks}/ls-files ]; then echo beside > {marks}/diff; else echo after > {marks}/diff; fi ;;
esac
exec {real_git} "$@"
""")
    (bin_dir / "git").chmod(0o755)
    script = f"""
        import tracklet, tracked_helper, untracked_helper
        run = tracklet.init(project="p", dir={str(tmp_path / "data")!r}, settings={{"console": "off",
                            "system_metrics": False, "capture_wait": 60}})
        run.finish()
    """
    run_script(script, cwd=repo, env={"PATH": f"{bin_dir}:{os.environ['PATH']}"}, check=True, timeout=120)
    assert (marks / "diff").read_text().strip() == "beside"
    (recorded,) = tracklet.Api(tmp_path / "data").runs("p")
    assert "environment_incomplete" not in recorded.metadata
    assert [entry["path"] for entry in recorded.metadata["code"]["files"]] == ["untracked_helper.py"]


def test_take_from_merges_as_merge_from_does_and_moves_the_repeated_messages():
    """The capture merges each part into its record by moving the part's messages (its package
    list: hundreds of them), not copying them: the record's bytes are the same as MergeFrom's."""
    from tracklet.core import wire

    def part() -> wire.Message:
        environment = wire.Message("Environment")
        environment.hostname, environment.cpu_count = "host", 8
        environment.gpus.extend(["a", "b"])
        for index in range(3):
            package = environment.packages.add()
            package.name, package.version = f"pkg{index}", "1.0"
        return environment

    copied, moved = wire.Record(), wire.Record()
    copied.environment.git_commit = moved.environment.git_commit = "abc"
    copied.environment.MergeFrom(part())
    taken = part()
    packages = list(taken.packages)
    moved.environment.TakeFrom(taken)
    assert moved.SerializeToString() == copied.SerializeToString()
    assert all(a is b for a, b in zip(moved.environment.packages, packages))  # the same messages
    assert [p.name for p in moved.environment.packages] == ["pkg0", "pkg1", "pkg2"]


@pytest.mark.parametrize("spawn", ["posix_spawnp", "subprocess"])
def test_git_state_is_the_same_through_posix_spawn_and_through_subprocess(tmp_path, monkeypatch, spawn):
    """git is started with ``os.posix_spawnp`` (the capture thread then imports no subprocess);
    where that is missing (Windows) through ``subprocess``: both read the same state, a git that
    fails reads as none, and neither leaves a descriptor or a child behind."""
    from tracklet.core import environment, wire

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "train.py").write_text("print('train')\n")
    for args in (["init", "-q", "-b", "main"], ["add", "train.py"],
                 ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x"],
                 ["remote", "add", "origin", "https://user:secret@example.com/r.git"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    (repo / "train.py").write_text("print('changed')\n")
    if spawn == "subprocess":
        monkeypatch.delattr(os, "posix_spawnp")
    descriptors = sorted(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    children = {child.pid for child in psutil.Process().children()}
    found = wire.Message("Environment")
    environment.capture_git(found, str(repo), tmp_path)
    assert (found.git_root, found.git_branch, len(found.git_commit)) == (str(repo), "main", 40)
    assert found.git_remote == "https://example.com/r.git" and found.git_dirty  # no credentials
    assert b"+print('changed')" in (tmp_path / "diff.patch").read_bytes()
    outside = wire.Message("Environment")
    environment.capture_git(outside, str(tmp_path), tmp_path)  # not a repository: git fails
    assert not outside.git_root and not outside.git_commit
    probe = environment.GitProbe(str(repo))
    probe.abandon()  # commands never read: stopped and reaped
    if descriptors is not None:
        assert sorted(os.listdir("/proc/self/fd")) == descriptors
    # No child left running or unreaped (children the test process had before, such as the test servers'
    # template, are not git's).
    assert {child.pid for child in psutil.Process().children()} == children


def test_the_packages_the_cache_answers_are_captured_before_init_returns(tmp_path):
    """A tight training loop lets the capture thread run once per switch interval after
    ``init()`` returns (the gate), so what it still had to do then ended up inside ``finish()``.
    The packages the inventory cache answers are read and captured before the gate: a capture
    held at the gate has them, and ``finish()`` records them even though nothing else was captured."""
    from tracklet.core import environment

    cache_dir = tmp_path / "cache"
    environment._save_inventory(cache_dir, environment._scan_packages()[1])
    queued: list = []
    capture = environment.EnvironmentCapture(str(tmp_path), tmp_path / "files", queued.append,
                                             lambda key, message: None, cache_dir=cache_dir)
    gate = threading.Event()  # init() never returns here
    capture.start(gate)
    deadline = time.monotonic() + 10
    while "packages" not in capture._done and capture._thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    capture.finish(0.01)
    gate.set()
    (record,) = queued
    assert list(record.environment.incomplete) == ["host", "git", "code"]
    assert "protobuf" in {package.name.lower() for package in record.environment.packages}
    assert "protobuf==" in (tmp_path / "files" / "requirements.txt").read_text()
