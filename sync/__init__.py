"""The Django app that mirrors a PostgreSQL database's schemas, tables and views."""
