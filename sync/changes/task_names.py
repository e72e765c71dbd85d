"""Names of dbsync's Celery tasks: a leaf that the gate (which publishes) and the tasks share."""

REFLECT = "sync.tasks.reflect_db_objects"
IMPORT_NEW = "sync.tasks.import_new_databases"
IMPORT_ONE = "sync.tasks.import_registered_database"
RENEW = "sync.tasks.renew_databases"
POLL = "sync.tasks.poll_databases"
PURGE = "sync.tasks.purge_dropped"
DELIVER = "sync.tasks.deliver_webhooks"
# The one import task of earlier versions, which did either job by its arguments. Still
# consumed, so that messages queued before an upgrade are run, not dropped as unknown.
IMPORT_BEFORE_SPLIT = "sync.tasks.import_database"
