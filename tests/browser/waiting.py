"""Waiting in a browser test: the page's events keep arriving while the test waits."""

from collections.abc import Callable

from playwright.sync_api import Page


def wait_in_page(
    page: Page, predicate: Callable[[], object], what: str, seconds: float = 15
) -> None:
    """Wait while letting the browser's events in (a sleep would hold them back)."""
    for _ in range(int(seconds * 20)):
        if predicate():
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")
