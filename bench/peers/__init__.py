"""The peers myservice is measured against: the same three requests on the same ``users``
table, each built as its own documentation builds it and served by its conventional server.

- ``cookiecutter``: pyramid-cookiecutter-starter's SQLAlchemy backend (an ORM session per
  request from ``request.dbsession``, joined to pyramid_tm by zope.sqlalchemy, pyramid_retry),
  JSON views, on stock waitress (``egg:waitress#main``) from a paste ini, as the template ships.
- ``fastapi_app``: FastAPI's "SQL (Relational) Databases" tutorial with SQLAlchemy (a
  ``SessionLocal`` per request from a ``get_db`` dependency, ``def`` path operations, pydantic
  response models), on uvicorn with its standard extras (uvloop, httptools).

Neither authenticates: the peers are what a new user gets from each framework's guide.
"""
