"""The Django app that mirrors a PostgreSQL database's schemas, tables and views.

Where to start reading: data flows one way, from a request to the user's catalog.

    views, pages, admin      the API, the web pages and the admin: they never reflect
      -> state               the one gate: recency, lease, back-off, dirty mark; queues tasks
                             (publisher, queues, task_names)
      -> tasks               Celery tasks: reflect a database, import, renew, poll, purge
      -> reflection          diff the catalog against the models by oid, apply in one transaction
      -> catalog             read the catalog in one snapshot (connections: engines, bounds)

Changes made behind dbsync's back reach the gate through the watch (event triggers, watch),
the listener process (listener, debounce) or the poll (polling). Columns and records are
read on the fly and never stored: table_reads -> live (relation_sql builds the SQL, values
renders what it reads). Who may read what: access; secrets at rest: encryption, credentials.
Each module's first line says its job.
"""
