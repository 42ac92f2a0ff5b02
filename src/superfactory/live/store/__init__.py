"""The control plane's store: tables, Alembic migrations, engine set-up and repositories."""
