"""/docs renders offline: Swagger UI's HTML names no external URL and its assets are served here."""

from __future__ import annotations

import re

from tests.server_support import serving


def test_swagger_ui_uses_local_assets_only(tmp_path, tiny_backbone):
    with serving(tmp_path / "store", tiny_backbone) as client:
        page = client.get("/docs")
        assert page.status_code == 200 and "swagger-ui" in page.text
        urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
        assert urls and not [u for u in urls if "://" in u or u.startswith("//")], urls
        assert "http://" not in page.text and "https://" not in page.text
        for url in urls:
            answer = client.get(url)
            assert answer.status_code == 200 and answer.content, url
        assert client.get("/redoc").status_code == 404  # ReDoc would need a CDN
