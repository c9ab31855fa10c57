from pathlib import Path

from setuptools import find_packages, setup

requires = [
    "alembic>=1.13",
    "email-validator>=2.1",
    "plaster_pastedeploy",
    "psycopg[binary]>=3.1",
    "pydantic>=2.6",
    "pyramid>=2.0",
    "pyramid_retry>=2.1",
    "pyramid_tm>=2.5",
    "sqlalchemy>=2.0",
    "tqdm>=4.66",
    "transaction>=4.0",
    "waitress>=3.0",
    "zope.sqlalchemy>=3.1",
]

#: ``make bench`` only: the bare baseline's connection pool and JSON encoder.
bench_require = [
    "orjson>=3.10",
    "psycopg-pool>=3.2",
]

tests_require = [
    "pytest>=8",
    "ruff",
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
    extras_require={"testing": tests_require, "bench": bench_require},
    entry_points={
        "paste.app_factory": ["main = myservice:main"],
        "paste.server_runner": ["main = myservice.server:serve"],
        "console_scripts": [
            "myservice-import = myservice.importer:main",
            "myservice-purge = myservice.purge:main",
            "myservice-maintenance = myservice.maintenance:main",
        ],
    },
)
