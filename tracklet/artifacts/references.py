"""References: artifact files recorded where they are, never copied (``Artifact.add_reference``).

What each scheme records in the manifest entry (``ref`` is the URI, ``extra`` the validators):

``file://``     a file, or every file under a directory: ``size`` and ``extra["mtime_ns"]`` (taken when
                the artifact is stored) and, with ``checksum``, the sha256 of the bytes as ``digest``.
``s3://``       an object, or every object under a prefix (``s3://bucket/dir``: the keys under
                ``dir/``): ``size``, ``extra["etag"]`` and, in a versioned bucket, ``extra["versionID"]``
                (W&B's names), through s3fs (endpoint and credentials: the usual ``AWS_*`` variables;
                W&B's ``AWS_S3_ENDPOINT_URL`` too).
``gs://``       the same through gcsfs (``etag``; ``versionID``: the object's generation). gcsfs is not
                a dependency of tracklet: without it a ``gs://`` reference is refused, naming it.
``http(s)://``  one URL: ``extra["etag"]``, ``extra["last_modified"]`` and ``extra["content_length"]``
                from the server's answer to a HEAD (a GET when HEAD is refused), through httpx.

Only a ``file://`` reference with ``checksum`` has the sha256 of its bytes as ``digest``; every
other reference's ``digest`` is the sha256 of its identity (URI and validators), so the manifest
keeps one shape and a changed object changes the version's digest (:func:`content_digest` tells
which is which). ``checksum=False`` records the URI alone (one entry, ``extra["checksum"] = False``)
and nothing is checked when it is fetched.

Listing a prefix happens in ``add_reference`` on the caller's thread, as in W&B (the names it
returns are the entries it made), on S3 a page of 1,000 keys at a time (gcsfs lists a prefix
whole), and stops with an error once there are more than ``max_objects`` objects. ``download()`` fetches each remote reference to a
temporary name beside its target, checks it against what was recorded (an object whose ETag,
version or size changed, a URL whose ETag, Last-Modified or length changed, a file whose size or
mtime changed) and renames it into place only when it matches; a reference that can't be reached
or changed is an ``ArtifactVerifyError`` naming the URI.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlparse

from tracklet.core import forksafe
from tracklet.artifacts.fsbuild import made
from tracklet.artifacts.entries import FileReference, Pending, uri_path
from tracklet.artifacts.manifest import ManifestEntry
from tracklet.artifacts.names import partial_path
from tracklet.core.filehash import sha256_hex
from tracklet.errors import ArtifactError, UnsupportedReference

DEFAULT_MAX_OBJECTS = 10_000_000  # W&B's default
SCHEMES = ("file", "s3", "gs", "http", "https")
_READ = 1 << 20
_HTTP_TIMEOUT = 30.0


def scheme_of(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else ""


def is_remote(entry: ManifestEntry) -> bool:
    """A reference whose bytes are fetched over the network (not ``file://``)."""
    return entry.ref is not None and scheme_of(entry.ref) != "file"


def content_digest(entry: ManifestEntry) -> bool:
    """Whether ``entry.digest`` is the sha256 of the file's bytes (stored files, and ``file://``
    references recorded with ``checksum``), rather than of a reference's identity."""
    return entry.ref is None or (not is_remote(entry) and entry.extra.get("checksum", True) is not False)


def known_size(entry: ManifestEntry) -> int | None:
    """The size a fetched reference must have, if one was recorded."""
    if entry.extra.get("checksum", True) is False and is_remote(entry):
        return None
    if entry.ref is not None and scheme_of(entry.ref) in ("http", "https") and "content_length" not in entry.extra:
        return None
    return entry.size


def identity_digest(uri: str, size: int, extra: dict[str, Any]) -> str:
    return sha256_hex(json.dumps([uri, size, extra], sort_keys=True).encode())


def _base_name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _join(name: str | None, relative: str) -> str:
    return f"{name.rstrip('/')}/{relative}" if name else relative


# ---------------------------------------------------------------- recording (add_reference)


def expand(artifact: str, uri: str, name: str | None, checksum: bool,
           max_objects: int | None) -> list[tuple[str, Pending]]:
    """The draft entries ``add_reference(uri, ...)`` adds, as ``(name in the artifact, item)``."""
    if not isinstance(uri, str) or not uri:
        raise ArtifactError(f"artifact {artifact!r}: add_reference() needs a URI string; got {uri!r}")
    limit = DEFAULT_MAX_OBJECTS if max_objects is None else int(max_objects)
    if limit < 1:
        raise ArtifactError(f"artifact {artifact!r}: max_objects must be at least 1; got {max_objects!r}")
    scheme = scheme_of(uri)
    if scheme not in SCHEMES:
        raise UnsupportedReference(
            f"artifact {artifact!r}: references with scheme {scheme or '(none)'!r} ({uri}) can't be recorded; "
            f"use one of {', '.join(s + '://' for s in SCHEMES)}")
    if scheme == "file":
        return _expand_file(artifact, uri, name, checksum, limit)
    if not checksum:  # W&B's rule: the URI alone, one entry, nothing looked up
        parsed = urlparse(uri)
        entry_name = name or _base_name(parsed.path) or parsed.netloc
        extra: dict[str, Any] = {"checksum": False}
        return [(entry_name, ManifestEntry(entry_name, identity_digest(uri, 0, extra), 0, ref=uri, extra=extra))]
    if scheme in ("http", "https"):
        return [_expand_http(artifact, uri, name)]
    return _ObjectStore.for_scheme(artifact, scheme).expand(uri, name, limit)


def _too_many(artifact: str, uri: str, limit: int, what: str) -> ArtifactError:
    return ArtifactError(f"artifact {artifact!r}: reference {uri} has more than max_objects={limit:,} {what}; "
                         "pass a larger max_objects to add_reference() to record them all")


def _expand_file(artifact: str, uri: str, name: str | None, checksum: bool,
                 limit: int) -> list[tuple[str, Pending]]:
    path = os.path.abspath(uri_path(uri))
    if os.path.isfile(path):
        return [(name if name is not None else os.path.basename(path), FileReference(uri, path, bool(checksum)))]
    if not os.path.isdir(path):
        raise ArtifactError(f"artifact {artifact!r}: reference {uri} can't be reached: {path} does not exist")
    added: list[tuple[str, Pending]] = []
    for base, directories, file_names in os.walk(path):
        directories.sort()
        for file_name in sorted(file_names):
            file_path = os.path.join(base, file_name)
            if len(added) >= limit:
                raise _too_many(artifact, uri, limit, "files")
            relative = Path(file_path).relative_to(path).as_posix()
            added.append((_join(name, relative), FileReference(Path(file_path).as_uri(), file_path, bool(checksum))))
    return added


def _http_client() -> Any:
    try:
        import httpx
    except ImportError:
        raise ArtifactError("http(s):// references need httpx: pip install httpx") from None
    from tracklet.client.http import proxy_mounts, ssl_context

    # The process's TLS context, built once in a fork section, whose handshake steps are sections
    # too (client/http.py): httpx's own, built for each client (~0.1 CPU s), and its handshakes ran
    # outside any, on the artifact worker's thread while the program may fork.
    return httpx.Client(follow_redirects=True, timeout=_HTTP_TIMEOUT, verify=ssl_context(), mounts=proxy_mounts())


def _http_validators(headers: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if headers.get("etag"):
        extra["etag"] = headers["etag"]
    if headers.get("last-modified"):
        extra["last_modified"] = headers["last-modified"]
    length = headers.get("content-length")
    if length is not None and length.strip().isdigit() and "content-encoding" not in headers:
        extra["content_length"] = int(length)
    return extra


def _expand_http(artifact: str, uri: str, name: str | None) -> tuple[str, Pending]:
    client = _http_client()
    import httpx

    entry_name = name or _base_name(unquote(urlparse(uri).path)) or urlparse(uri).netloc
    try:
        with client:
            response = client.head(uri)
            if response.status_code >= 400 and response.status_code not in (404, 410):
                # HEAD refused (405/501), or not signed for (a presigned GET URL answers 403):
                # the headers of a GET, its body unread
                with client.stream("GET", uri) as streamed:
                    response = streamed
    except httpx.HTTPError as error:
        raise ArtifactError(f"artifact {artifact!r}: reference {uri} can't be reached: {error}") from None
    if response.status_code >= 400:
        raise ArtifactError(f"artifact {artifact!r}: reference {uri} can't be reached: HTTP {response.status_code}")
    extra = _http_validators(response.headers)
    size = extra.get("content_length", 0)
    return entry_name, ManifestEntry(entry_name, identity_digest(uri, size, extra), size, ref=uri, extra=extra)


class _ObjectStore:
    """s3:// and gs:// through their fsspec file systems."""

    scheme = ""

    def __init__(self, artifact: str) -> None:
        self.artifact = artifact

    @staticmethod
    def for_scheme(artifact: str, scheme: str) -> _ObjectStore:
        return _S3(artifact) if scheme == "s3" else _GCS(artifact)

    def split(self, uri: str) -> tuple[str, str, str | None]:
        """(bucket, key, version in the URI's ``?versionId=``, if any)."""
        parsed = urlparse(uri)
        if not parsed.netloc:
            raise ArtifactError(f"artifact {self.artifact!r}: reference {uri} names no bucket")
        version = dict(parse_qsl(parsed.query)).get("versionId")
        return parsed.netloc, unquote(parsed.path).lstrip("/"), version

    def fs(self, version_aware: bool = False) -> Any:
        raise NotImplementedError

    def head(self, bucket: str, key: str, version: str | None) -> dict[str, Any] | None:
        """``{"size", "etag", "version"}`` of one object; None if there is none (a prefix, then)."""
        raise NotImplementedError

    def list_prefix(self, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
        """``{"key", "size", "etag", "version"}`` of every object under ``prefix``, in key order."""
        raise NotImplementedError

    def entry(self, name: str, uri: str, found: dict[str, Any]) -> tuple[str, Pending]:
        extra: dict[str, Any] = {"etag": found["etag"]}
        if found.get("version") not in (None, "", "null"):
            extra["versionID"] = str(found["version"])
        size = int(found["size"])
        return name, ManifestEntry(name, identity_digest(uri, size, extra), size, ref=uri, extra=extra)

    def reach(self, uri: str, call: Any) -> Any:
        try:
            return call()
        except ArtifactError:
            raise
        except Exception as error:  # OSError from s3fs/gcsfs, or the client's own (no credentials, ...)
            raise ArtifactError(f"artifact {self.artifact!r}: reference {uri} can't be reached: "
                                f"{_describe(error)}") from None

    def expand(self, uri: str, name: str | None, limit: int) -> list[tuple[str, Pending]]:
        bucket, key, version = self.split(uri)
        plain = f"{self.scheme}://{bucket}/{key}" if key else f"{self.scheme}://{bucket}"
        found = self.reach(uri, lambda: self.head(bucket, key, version)) if key and not key.endswith("/") else None
        if found is not None:
            return [self.entry(name if name is not None else _base_name(key), plain, found)]
        prefix = key.rstrip("/") + "/" if key else ""
        added: list[tuple[str, Pending]] = []

        def listed() -> None:
            for item in self.list_prefix(bucket, prefix):
                if len(added) >= limit:
                    raise _too_many(self.artifact, uri, limit, "objects")
                relative = item["key"][len(prefix):]
                added.append(self.entry(_join(name, relative), f"{self.scheme}://{bucket}/{item['key']}", item))

        self.reach(uri, listed)
        if not added:
            raise ArtifactError(f"artifact {self.artifact!r}: reference {uri} can't be reached: no object "
                                f"{key!r} and nothing under {prefix or 'the bucket'!r}")
        return added

    def open(self, bucket: str, key: str, version: str | None) -> tuple[Any, dict[str, Any]]:
        """A file object reading the object (the version asked for), and what it is now."""
        raise NotImplementedError


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


_s3_clients: dict[tuple, Any] = forksafe.cache()
_clients_lock = forksafe.lock()


def _strip_etag(etag: Any) -> str:
    return str(etag or "").strip('"')


class _S3(_ObjectStore):
    scheme = "s3"

    def fs(self, version_aware: bool = False) -> Any:
        # One client per configuration (making one costs ~0.1 s); a changed AWS_* variable makes a new one.
        key = (version_aware, *sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
        with _clients_lock:
            client = _s3_clients.get(key)
            if client is None:
                options: dict[str, Any] = {}
                if os.environ.get("AWS_S3_ENDPOINT_URL"):  # W&B's variable (botocore reads AWS_ENDPOINT_URL)
                    options["endpoint_url"] = os.environ["AWS_S3_ENDPOINT_URL"]

                # imported in the section too (artifacts/fsbuild.py); its IO loop starts
                # credential_process helpers (core/threads.py)
                def make() -> Any:
                    try:
                        import s3fs
                    except ImportError:
                        raise ArtifactError(f"artifact {self.artifact!r}: s3:// references need s3fs: pip install "
                                            "'tracklet[s3]'") from None
                    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False,
                                             version_aware=version_aware, **options)

                client = made(make)
                if len(_s3_clients) >= 8:
                    _s3_clients.clear()
                _s3_clients[key] = client
            return client

    def head(self, bucket: str, key: str, version: str | None) -> dict[str, Any] | None:
        fs = self.fs()
        request: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version:
            request["VersionId"] = version
        try:
            answer = fs.call_s3("head_object", **request)
        except FileNotFoundError:
            if version:
                raise
            return None
        if "x-directory" in str(answer.get("ContentType", "")):
            return None
        return {"size": answer["ContentLength"], "etag": _strip_etag(answer.get("ETag")),
                "version": answer.get("VersionId") or version}

    def list_prefix(self, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
        fs = self.fs()
        try:
            versioned = fs.call_s3("get_bucket_versioning", Bucket=bucket).get("Status") == "Enabled"
        except (OSError, ValueError):
            versioned = False
        token: str | None = None
        while True:
            request: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 1000}
            if token:
                request["ContinuationToken"] = token
            page = fs.call_s3("list_objects_v2", **request)
            for item in page.get("Contents") or []:
                if item["Key"].endswith("/") and not item.get("Size"):
                    continue  # a "directory" marker
                version = None
                if versioned:  # a listing names no versions: W&B also asks per object
                    version = fs.call_s3("head_object", Bucket=bucket, Key=item["Key"]).get("VersionId")
                yield {"key": item["Key"], "size": item["Size"], "etag": _strip_etag(item.get("ETag")),
                       "version": version}
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def open(self, bucket: str, key: str, version: str | None) -> tuple[Any, dict[str, Any]]:
        # Reads after the open are made with If-Match on the ETag opened: a change while reading fails.
        handle = self.fs(version_aware=bool(version)).open(f"{bucket}/{key}", "rb", version_id=version,
                                                           block_size=8 << 20, cache_type="none")
        details = handle.details
        return handle, {"etag": _strip_etag(details.get("ETag")), "size": details.get("size"),
                        "version": details.get("VersionId") or version}


class _GCS(_ObjectStore):
    """gs:// through gcsfs (not installed with tracklet; tested against gcp-storage-emulator where
    both are installed). GCS gives every object a generation, recorded as ``versionID``."""

    scheme = "gs"

    def fs(self, version_aware: bool = False) -> Any:
        def make() -> Any:  # google-auth may run gcloud here; its IO loop (core/threads.py); TLS (fsbuild.py)
            try:
                gcsfs = importlib.import_module("gcsfs")  # optional, and untyped
            except ImportError:
                raise ArtifactError(f"artifact {self.artifact!r}: gs:// references need gcsfs, which is not "
                                    "installed (pip install gcsfs)") from None
            return gcsfs.GCSFileSystem(skip_instance_cache=True, version_aware=version_aware)

        return made(make)

    @staticmethod
    def _found(info: dict[str, Any]) -> dict[str, Any]:
        return {"size": int(info["size"]), "etag": _strip_etag(info.get("etag")), "version": info.get("generation")}

    def head(self, bucket: str, key: str, version: str | None) -> dict[str, Any] | None:
        fs = self.fs(version_aware=bool(version))
        path = f"{bucket}/{key}" + (f"#{version}" if version else "")
        try:
            info = fs.info(path)
        except FileNotFoundError:
            if version:
                raise
            return None
        return self._found(info) if info.get("type") == "file" else None

    def list_prefix(self, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
        found = self.fs().find(f"{bucket}/{prefix}", detail=True)
        for path in sorted(found):
            info = found[path]
            key = path.split("/", 1)[1] if "/" in path else ""
            if info.get("type") == "file" and not key.endswith("/"):
                yield {"key": key, **self._found(info)}

    def open(self, bucket: str, key: str, version: str | None) -> tuple[Any, dict[str, Any]]:
        fs = self.fs(version_aware=bool(version))
        path = f"{bucket}/{key}" + (f"#{version}" if version else "")
        handle = fs.open(path, "rb")
        return handle, self._found(handle.details)


# ---------------------------------------------------------------- fetching (download)


class ReferenceChanged(ArtifactError):
    """A reference's object is not what was recorded, or can't be reached (the message says which)."""


class ReferenceMissing(ReferenceChanged):
    """A reference's object is gone (no such object; HTTP 404 or 410): what
    ``download(allow_missing_references=True)`` skips, as W&B does."""


def fetch(entry: ManifestEntry, target: Path) -> None:
    """Fetch a remote reference's bytes to ``target``: written to a temporary name beside it,
    checked against the recorded validators and size, then renamed into place.
    ``ReferenceChanged`` (naming the URI) if it can't be reached or is not what was recorded."""
    assert entry.ref is not None
    temporary = partial_path(target)
    try:
        with open(temporary, "xb") as out:
            written = _fetch_http(entry, out) if scheme_of(entry.ref) in ("http", "https") else _fetch_object(entry, out)
        size = known_size(entry)
        if size is not None and written != size:
            raise ReferenceChanged(f"{entry.ref} changed: {written:,} bytes fetched, {size:,} recorded")
        if target.is_dir() and not target.is_symlink():
            raise ArtifactError(f"can't download {entry.path}: {target} is a directory")
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def _copy(source: Any, out: Any) -> int:
    written = 0
    while block := source.read(_READ):
        out.write(block)
        written += len(block)
    return written


def _fetch_http(entry: ManifestEntry, out: Any) -> int:
    assert entry.ref is not None
    client = _http_client()
    import httpx

    checked = entry.extra.get("checksum", True) is not False
    try:
        with client, client.stream("GET", entry.ref) as response:
            if response.status_code >= 400:
                gone = ReferenceMissing if response.status_code in (404, 410) else ReferenceChanged
                raise gone(f"{entry.ref} can't be reached: HTTP {response.status_code}")
            if checked:
                now = _http_validators(response.headers)
                for key, label in (("etag", "ETag"), ("last_modified", "Last-Modified")):
                    if key in entry.extra and now.get(key) != entry.extra[key]:
                        raise ReferenceChanged(f"{entry.ref} changed: {label} is now {now.get(key)!r}, "
                                               f"{entry.extra[key]!r} was recorded")
                if "content_length" in entry.extra and now.get("content_length", entry.size) != entry.size:
                    raise ReferenceChanged(f"{entry.ref} changed: Content-Length is now {now['content_length']:,}, "
                                           f"{entry.size:,} was recorded")
            written = 0
            for block in response.iter_bytes(_READ):
                out.write(block)
                written += len(block)
            return written
    except httpx.HTTPError as error:
        raise ReferenceChanged(f"{entry.ref} can't be reached: {error}") from None


def _fetch_object(entry: ManifestEntry, out: Any) -> int:
    assert entry.ref is not None
    store = _ObjectStore.for_scheme("", scheme_of(entry.ref))
    bucket, key, _ = store.split(entry.ref)
    version = entry.extra.get("versionID")
    checked = entry.extra.get("checksum", True) is not False
    handle = None
    try:
        try:
            handle, now = store.open(bucket, key, version)
        except FileNotFoundError:
            if not version:
                raise
            # The version is gone (GCS records a generation even where the bucket keeps no old
            # ones, as W&B does): the current object will do if its ETag is the recorded one.
            handle, now = store.open(bucket, key, None)
    except FileNotFoundError:
        where = f" (version {version})" if version else ""
        raise ReferenceMissing(f"{entry.ref}{where} can't be reached: no such object") from None
    except Exception as error:  # OSError from s3fs/gcsfs, or the client's own (no credentials, ...)
        raise ReferenceChanged(f"{entry.ref} can't be reached: {_describe(error)}") from None
    with handle:
        if checked and now["etag"] != entry.extra.get("etag"):
            raise ReferenceChanged(f"{entry.ref} changed: its ETag is now {now['etag']!r}, {entry.extra.get('etag')!r} "
                                   "was recorded" + (f" (and version {version} is gone)" if version else ""))
        try:
            return _copy(handle, out)
        except Exception as error:  # fsspec's FileExpired: the object changed while it was read
            raise ReferenceChanged(f"{entry.ref} changed or can't be read while downloading: "
                                   f"{_describe(error)}") from None


def check_file_reference(entry: ManifestEntry, source: Path) -> str | None:
    """What is wrong with an unchecksummed ``file://`` reference's file now (its size or mtime
    changed), or None."""
    try:
        stat = source.stat()
    except OSError as error:
        return f"missing ({source}: {error.strerror or error})"
    recorded_mtime = entry.extra.get("mtime_ns")
    if stat.st_size != entry.size or (recorded_mtime is not None and stat.st_mtime_ns != recorded_mtime):
        return f"{entry.ref} changed: {stat.st_size:,} bytes, mtime_ns {stat.st_mtime_ns}; recorded " \
               f"{entry.size:,} bytes, mtime_ns {recorded_mtime}"
    return None
