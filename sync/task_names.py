"""Names of dbsync's Celery tasks: a leaf that the gate (which publishes) and the tasks share."""

REFLECT = "sync.tasks.reflect_db_objects"
IMPORT = "sync.tasks.import_database"
RENEW = "sync.tasks.renew_databases"
POLL = "sync.tasks.poll_databases"
PURGE = "sync.tasks.purge_dropped"
