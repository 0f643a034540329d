"""Local pages for cabinet tests: links that download a CSV, a real zip and an HTML file
(each served as an attachment), and an upload page whose file inputs show what they
received.

:func:`serve_cabinet_pages` serves them on loopback for a block and yields a
:class:`CabinetSite` with their URLs. The download links are ``#csv``, ``#csv2`` (a second
``report.csv`` with other bytes: the cabinet must name it ``report (2).csv``), ``#zip`` and
``#html`` on :attr:`CabinetSite.downloads`. On :attr:`CabinetSite.upload`, ``#file`` takes
one file and ``#files`` several; each change writes ``[{"name", "size"}, ...]`` as JSON
into ``#received`` (the last change of either input) and into ``#received-file`` or
``#received-files``; ``#submit`` does nothing.
"""

from __future__ import annotations

import contextlib
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

from tests.integration.pages import QuietHandler, serve_http

CSV_BYTES = b"id,amount\n1,10.50\n2,7.25\n"
CSV2_BYTES = b"id,amount\n3,99.00\n"
HTML_BYTES = b"<!doctype html><html><body><p>saved, not shown</p></body></html>"
ZIP_MEMBERS: dict[str, bytes] = {
    "export/summary.txt": b"two rows\n",
    "export/data/rows.csv": b"a,b\n1,2\n3,4\n",
}


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    """A deflated zip holding ``members`` (name to bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


ZIP_BYTES = _zip_bytes(ZIP_MEMBERS)

# Path (without query) to (file name, content type, bytes); ``?v=2`` of the CSV is CSV2.
_FILES: dict[str, tuple[str, str, bytes]] = {
    "/files/report.csv": ("report.csv", "text/csv", CSV_BYTES),
    "/files/export.zip": ("export.zip", "application/zip", ZIP_BYTES),
    "/files/page.html": ("page.html", "text/html; charset=utf-8", HTML_BYTES),
}

_DOWNLOADS_PAGE = """<!doctype html><html><head><title>Downloads</title></head><body>
<a id="csv" href="/files/report.csv">Report</a>
<a id="csv2" href="/files/report.csv?v=2">Report again</a>
<a id="zip" href="/files/export.zip">Export</a>
<a id="html" href="/files/page.html">Page</a>
</body></html>"""

_UPLOAD_PAGE = """<!doctype html><html><head><title>Upload</title></head><body>
<form id="form" onsubmit="return false;">
<input type="file" id="file" name="file">
<input type="file" id="files" name="files" multiple>
<button type="submit" id="submit">Send</button>
</form>
<pre id="received"></pre><pre id="received-file"></pre><pre id="received-files"></pre>
<script>
  for (const id of ['file', 'files']) {
    document.getElementById(id).addEventListener('change', (event) => {
      const text = JSON.stringify(
        Array.from(event.target.files, (f) => ({name: f.name, size: f.size})));
      document.getElementById('received').textContent = text;
      document.getElementById('received-' + id).textContent = text;
    });
  }
</script></body></html>"""

_PAGES = {"/downloads": _DOWNLOADS_PAGE, "/upload": _UPLOAD_PAGE}


class CabinetPageHandler(QuietHandler):
    """The download and upload pages, and the files their links download."""

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path in _PAGES:
            self.send_body(_PAGES[path].encode(), "text/html; charset=utf-8")
            return
        if path not in _FILES:
            self.send_body(b"not found", "text/plain", status=404)
            return
        name, content_type, body = _FILES[path]
        if name == "report.csv" and query == "v=2":
            body = CSV2_BYTES
        disposition = f'attachment; filename="{name}"'
        self.send_body(body, content_type, {"Content-Disposition": disposition})


@dataclass(frozen=True)
class CabinetSite:
    """Where the cabinet pages are served (base URL without a trailing slash)."""

    base: str

    @property
    def downloads(self) -> str:
        """The page with the ``#csv``, ``#csv2``, ``#zip`` and ``#html`` download links."""
        return f"{self.base}/downloads"

    @property
    def upload(self) -> str:
        """The page with the ``#file`` and ``#files`` inputs."""
        return f"{self.base}/upload"


@contextlib.contextmanager
def serve_cabinet_pages() -> Iterator[CabinetSite]:
    """The cabinet pages served on a free loopback port for the block."""
    with serve_http(CabinetPageHandler) as base:
        yield CabinetSite(base)
