"""S3 adapter for files: uploads and outputs under unguessable keys, served by presigned URL, never listed.

A file's public name is `surge/<token>/<name>` (what `/gradio_api/upload` answers and what output
`FileData` carry as `path`); its object key is `files/<token>/<name>`. The token is 192 random bits,
so knowing a name is the only way to a file. The template's lifecycle rule expires `files/`.
"""

from __future__ import annotations

import mimetypes
import re
import secrets
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import boto3
from botocore.config import Config

from surge.errors import NotFound
from surge.store.aws import BOTO_CONFIG, aws_errors

NAME_PATTERN = re.compile(r"^surge/([A-Za-z0-9_-]{32})/([^/\\\x00-\x1f\x7f]{1,200})$")
"""A file's public name: the prefix, a 32-character token (24 random bytes), the original file name."""
KEY_PREFIX = "files/"
PRESIGNED_TTL_S = 900


def new_name(file_name: str) -> str:
    """A fresh public name for a file called `file_name`: its name kept as Gradio keeps it (`résumé #1.txt`
    stays so, for the visitor who downloads it), folders and control characters dropped."""
    base = re.sub(r"[\x00-\x1f\x7f\\]", "_", Path(file_name).name).strip()[-200:].strip()
    return f"surge/{secrets.token_urlsafe(24)}/{base if base not in ('', '.', '..') else 'file'}"


def is_name(value: object) -> bool:
    return isinstance(value, str) and NAME_PATTERN.match(value) is not None


def object_key(name: str) -> str:
    match = NAME_PATTERN.match(name)
    if match is None:
        raise NotFound("No such file.")
    return f"{KEY_PREFIX}{match.group(1)}/{match.group(2)}"


def _no_continue_for_an_empty_body(request: Any, **_: Any) -> None:
    """The SDK asks S3 to say "100 Continue" before it sends a body; with none to send there is nothing to
    wait for (`Expect` is not signed). The local emulator's server answered an empty file's upload with the
    100 alone, and the upload failed after the read timeout (S3 answers it)."""
    if str(request.headers.get("Content-Length", "")) == "0" and "Expect" in request.headers:
        del request.headers["Expect"]


class FileStore:
    """Puts, gets and presigns files of one bucket. Safe to share between threads."""

    def __init__(self, bucket: str, client: Any = None) -> None:
        self.bucket = bucket
        if client is not None:
            self.__dict__["client"] = client

    @cached_property
    def client(self) -> Any:
        # SigV4 presigned URLs: boto3 may still sign S3 URLs with the deprecated V2 otherwise.
        client = boto3.client("s3", config=BOTO_CONFIG.merge(Config(signature_version="s3v4")))
        client.meta.events.register("before-send.s3.PutObject", _no_continue_for_an_empty_body)
        return client

    def put(self, body: BinaryIO, file_name: str) -> str:
        """Store a file; returns its public name."""
        name = new_name(file_name)
        # Its type as Gradio serves it (by the name), so a browser shows an image or plays a sound it is
        # sent to, where S3's default (binary/octet-stream) makes it a download.
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if kind.startswith("text/"):
            kind += "; charset=utf-8"  # as Gradio's FileResponse says it
        with aws_errors("Storing the file"):
            self.client.upload_fileobj(body, self.bucket, object_key(name), ExtraArgs={"ContentType": kind})
        return name

    def put_path(self, path: Path) -> str:
        with path.open("rb") as body:
            return self.put(body, path.name)

    def fetch(self, name: str, into: Path) -> Path:
        """Download a file by its public name into the folder `into`; returns the local path."""
        target = into / secrets.token_hex(8) / Path(name).name
        target.parent.mkdir(parents=True, exist_ok=True)
        with aws_errors("Fetching the input file"):
            self.client.download_file(self.bucket, object_key(name), str(target))
        return target

    def url(self, name: str) -> str:
        """A presigned GET of the file, valid `PRESIGNED_TTL_S` (no existence check: a missing key is S3's 404).

        It is answered as an attachment named as the file: the page's download link (`<a download>`) is
        followed to the bucket, another origin, where a browser ignores `download` and would leave the app
        for the file; an attachment is saved under its name and the page stays. `<img>`, `<audio>` and
        `<video>` show it all the same."""
        file_name = Path(name).name
        disposition = f"attachment; filename*=UTF-8''{quote(file_name)}"
        with aws_errors("Signing the file URL"):
            url: str = self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": object_key(name), "ResponseContentDisposition": disposition},
                ExpiresIn=PRESIGNED_TTL_S,
            )
        return url
