from pathlib import Path

from setuptools import find_packages, setup

requires = [
    "alembic>=1.13",
    "email-validator>=2.1",
    "jiter>=0.19",
    "orjson>=3.10",  # the JSON log lines (python-json-logger's OrjsonFormatter)
    "plaster_pastedeploy",
    "prometheus-client>=0.20",
    "psycopg[binary]>=3.1",
    "pydantic>=2.6",
    "pyramid>=2.0",
    "pyramid_retry>=2.1",
    "pyramid_tm>=2.5",
    "python-json-logger>=3.1",
    "sqlalchemy>=2.0",
    "openapi-ui-bundles>=0.3",  # Swagger UI 5 for GET /docs (OpenAPI 3.1), served offline
    "tqdm>=4.66",
    "transaction>=4.0",
    "waitress>=3.0",
    "zope.sqlalchemy>=3.1",
]

#: ``make bench`` only: the bare baseline's connection pool, and the peers
#: (bench/peers/): FastAPI on uvicorn with its standard extras (uvloop, httptools).
bench_require = [
    "fastapi>=0.115",
    "psycopg-pool>=3.2",
    "uvicorn[standard]>=0.30",
]

#: ``gunicorn --paste production.ini``: the multi-process alternative to pserve (gunicorn.conf.py).
gunicorn_require = [
    "gunicorn>=23",
]

tests_require = [
    *gunicorn_require,  # tests/test_gunicorn.py runs it
    "playwright>=1.50",  # drives Debian's chromium (the Makefile installs it), never its own
    "openapi-spec-validator>=0.7",  # tests/test_openapi.py: the document is valid OpenAPI 3.1
    "pytest>=8",
    "ruff",
    "schemathesis>=4.0",  # tests/test_fuzz.py: the server keeps to the document
    "webtest>=3.0",
]

setup(
    name="myservice",
    version="0.1.0",
    description="Users, groups and memberships as a Pyramid JSON service",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["myservice", "myservice.*"]),
    include_package_data=True,
    zip_safe=False,
    install_requires=requires,
    extras_require={
        "testing": tests_require,
        "bench": bench_require,
        "gunicorn": gunicorn_require,
    },
    entry_points={
        "paste.app_factory": ["main = myservice:paste_app"],
        "paste.server_runner": ["main = myservice.edge.runner:serve"],
        "console_scripts": [
            "myservice-import = myservice.cli.importer:main",
            "myservice-purge = myservice.cli.purge:main",
            "myservice-maintenance = myservice.cli.maintenance:main",
            "myservice-token = myservice.cli.tokens:main",
            "myservice-erase = myservice.cli.erase:main",
        ],
    },
)
