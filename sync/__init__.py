"""The Django app that mirrors a PostgreSQL database's schemas, tables and views.

Where to start reading: data flows one way, from a request to the user's catalog.

    web/api, web/pages, admin   the API, the web pages and the admin: they never reflect
      -> changes/gate           the one gate: recency, lease, back-off, dirty mark; queues tasks
                                (publisher, queues, task_names; the Redis behind it: store)
      -> tasks                  Celery tasks: reflect a database, import, renew, poll, purge,
                                deliver webhooks
      -> reflection/runs        read, diff by oid (diff), write in one transaction (writes),
                                with its change events as one batch (events); the change feed
                                (feed) makes them events and webhooks owed, on its own queue
      -> remote/catalog         the user's catalog in one snapshot (connections: engines, bounds)

The packages, each importing only those below it (import-linter checks it, pyproject.toml):

    admin, apps, management, tasks, templatetags   entry points Django and Celery look for
    web/      api/ (viewsets, serializers, pagination, errors, OpenAPI), pages/ (views, forms,
              decorators, listing, table_rows, grid, freshness, changes, push: the Server-Sent
              Events stream), and what both use: access, query, table_listing (partitions
              folded, sorting, facts), table_reads, throttling, status, change_feed
    ops/      what operators call: health, metrics' scrape (views: /healthz, /metrics), the demo;
              webhooks' delivery (webhooks) and the URLs they may call (webhook_targets)
    changes/  how dbsync hears of changes and decides to reflect: gate, leases, recency, turns,
              listening, store; the watch (event triggers), listener (any number of them,
              sharing the databases: ownership), debounce, polling, importing, progress; the
              delivery task's queuing (deliveries); pushing (reflections published to the pages)
    reflection/  diff and write (runs, diff, writes; whole or targeted), the history of runs,
              change events (events) and the change feed that records them with the webhooks'
              outbox (feed), registry, retention, the name cache,
              signals (reflected: sent after a reflection commits)
    models    the registered databases, their schemas and tables, the history, change events,
              webhooks and their deliveries
    remote/   the user's database only (no ORM, cache, Redis or Celery): connections,
              credentials, catalog (whole or targeted), changelog (the watch's log read),
              relations (columns and records read on the fly), relation_sql, values, facts
              (rows, size, columns, comment of a page's relations)
    leaves    exceptions, metrics (the counters), breaker (Redis' circuit breaker),
              encryption (secrets at rest), checks

Each module's first line says its job.
"""
