"""What ``make bench`` serves is production.ini edited, and edited in nothing but what the
variant says (bench/variants.py): the comparison app's factory, the baseline's server."""

import configparser
import difflib

import pytest
from paste.deploy import loadwsgi
from waitress.adjustments import Adjustments

from bench.auth import USE
from bench.variants import app_editor, baseline_editor, processes_editor
from tests.support.paths import DEVELOPMENT_INI, PRODUCTION_INI
from tests.support.processes import SetupError


def test_the_editor_changes_the_app_factory_and_nothing_else():
    text = DEVELOPMENT_INI.read_text(encoding="utf-8")
    edited = app_editor(USE)(text)
    changed = [
        line
        for line in difflib.ndiff(text.splitlines(), edited.splitlines())
        if line[:2] in ("- ", "+ ")
    ]
    assert changed == ["- use = egg:myservice", f"+ use = {USE}"]
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(edited)
    assert parser["app:main"]["use"] == USE
    assert parser["server:main"]["use"] == "egg:myservice"  # the same server


def test_the_editor_refuses_an_app_section_without_a_use_line():
    with pytest.raises(SetupError, match=r"\[app:main\] has no single 'use = \.\.\.' line"):
        app_editor(USE)("[app:main]\nfoo = 1\n\n[server:main]\nuse = egg:x\n")


def server_options(text):
    """The ``[server:main]`` options of an ini file's text, ``[DEFAULT]`` interpolated."""
    parser = configparser.ConfigParser(defaults={"here": "."})
    parser.read_string(text)
    return {k: v for k, v in parser.items("server:main") if k not in parser.defaults()}


def test_the_benchmarks_stock_waitress_takes_production_server_options():
    text = PRODUCTION_INI.read_text()
    production = server_options(text)
    server = server_options(baseline_editor("egg:waitress#main")(text))

    assert server.pop("use") == "egg:waitress#main"
    production.pop("use")
    assert server == {k: v for k, v in production.items() if k in server}  # values unchanged
    Adjustments(**server)  # raises ValueError on an option stock waitress does not know
    # Only what stock waitress refuses was left out: the baseline serves like production.
    for option in sorted(production.keys() - server.keys()):
        with pytest.raises(ValueError, match=option):
            Adjustments(**{option: production[option]})


def test_the_processes_editor_gives_the_server_runner_that_many_processes(tmp_path):
    edited = tmp_path / "production.ini"
    edited.write_text(processes_editor(2)(PRODUCTION_INI.read_text(encoding="utf-8")))
    server = loadwsgi.loadcontext(loadwsgi.SERVER, f"config:{edited}")
    assert server.local_conf["processes"] == "2"  # what myservice.edge.runner.serve receives
