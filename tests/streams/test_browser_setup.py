"""The browser tests' set-up: Debian's chromium is used where it is, installed where it can be,
and its absence is one clear line otherwise (never a skip)."""

from __future__ import annotations

import os

import pytest

from tests.support import browser


def test_an_installed_chromium_is_used_as_it_is(tmp_path, monkeypatch):
    executable = tmp_path / "chromium"
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    monkeypatch.setattr(browser, "CHROMIUM", str(executable))
    monkeypatch.setattr(browser.subprocess, "run", lambda *a, **k: pytest.fail("nothing to install"))
    assert browser.ensure_chromium() == str(executable)


def test_without_root_a_missing_chromium_is_one_line_saying_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(browser, "CHROMIUM", str(tmp_path / "absent"))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(browser.ChromiumMissing) as missing:
        browser.ensure_chromium()
    assert "apt-get install chromium" in str(missing.value)
    assert "\n" not in str(missing.value)


def test_as_root_a_missing_chromium_is_installed_with_apt_get(tmp_path, monkeypatch):
    executable = tmp_path / "chromium"
    commands: list[list[str]] = []

    def apt_get(command, **options):
        commands.append(command)
        assert options["env"]["DEBIAN_FRONTEND"] == "noninteractive"
        assert options["timeout"] == browser.CHROMIUM_INSTALL_TIMEOUT_S
        if command == browser.APT_INSTALL:
            executable.write_text("#!/bin/sh\n")
            executable.chmod(0o755)

    monkeypatch.setattr(browser, "CHROMIUM", str(executable))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(browser.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(browser.subprocess, "run", apt_get)
    assert browser.ensure_chromium() == str(executable)
    assert commands == [["apt-get", "update", "-q"], browser.APT_INSTALL]
