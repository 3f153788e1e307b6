"""The browser helper catches what the report test relies on it to catch."""

import pathlib

from tests.browser import Browser


def test_console_errors_and_exceptions_are_collected(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><p id=x>hi</p><script>console.error('boom');"
                    "undefinedFunction();</script>")
    with Browser() as browser:
        browser.load(page.as_uri())
        assert browser.evaluate("document.getElementById('x').textContent") == "hi"
        assert any("boom" in e for e in browser.errors), browser.errors
        assert any("undefinedFunction" in e for e in browser.errors), browser.errors
        shot = tmp_path / "shot.png"
        browser.screenshot(str(shot))
    assert pathlib.Path(shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_clean_page_has_no_errors(tmp_path):
    page = tmp_path / "ok.html"
    page.write_text("<!doctype html><title>ok</title><p>fine</p>")
    with Browser() as browser:
        browser.load(page.as_uri())
        assert browser.errors == []
